"""fastleak attack: simulate a client and attack it."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import (
    attack_options, model_options, read_config_file, resumed_spec, run_folder_options, scenario_options,
    shown_defaults, spec_from_args)
from fastleak.cli.commands.registry import command
from fastleak.cli.commands.running import execute


def _configure_attack(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="a TOML file with the same options, the command line winning (default: none)")
    run_folder_options(p)
    shown = shown_defaults({})
    model_options(p, shown)
    scenario_options(p, shown)
    attack_options(p, shown)


@command("attack", "Simulate a client under any model, data, label pattern, FL mode and defense, and attack it.",
         "  fastleak attack --model lenet --batch 1 --preset dlg\n"
         "  fastleak attack --mode fedavg --local-steps 4 --preset geng --width 16 --option tv=1e-4 --restarts 2 "
         "--iterations 300\n"
         "  fastleak attack --defense gaussian --defense-param sigma=0.01 --width 16 --iterations 300\n"
         "  fastleak attack --model mypkg.nets:Net --model-option hidden=128 --dataset mnist\n"
         "  fastleak attack --config sweep.toml\n  fastleak attack --resume runs/20261125-101500",
         _configure_attack)
def attack_command(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return execute(resumed_spec(args, "attack"), Path(args.resume), args.thread_policy, created=False)
    base = read_config_file(args.config) if args.config else {}
    return execute(spec_from_args(args, base), new_run_dir(args.out), args.thread_policy)
