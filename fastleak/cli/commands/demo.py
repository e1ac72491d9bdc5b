"""fastleak demo: the main job on built-in real data."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import (
    model_options, resumed_spec, run_folder_options, shown_defaults, spec_from_args)
from fastleak.cli.commands.registry import command
from fastleak.cli.commands.running import execute


# A FedSGD client as it trains (BatchNorm on batch statistics), sized for about 20 s on two CPU cores.
DEMO = {"dataset": "cifar10", "model": "plainconv", "model_options": {"width": 16, "depth": 3}, "client_bn": "train",
        "batch": 4, "labels": "random", "mode": "fedsgd", "preset": "inverting", "restarts": 2, "iterations": 300,
        "seed": 0}
DEMO_FAST = {**DEMO, "batch": 1, "restarts": 1, "iterations": 200}


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="a smaller, shorter run")
    run_folder_options(p)
    model_options(p, shown_defaults(DEMO))
    p.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {DEMO['seed']})")


@command("demo", "Simulate a CIFAR-10 FedSGD client (plainconv, BatchNorm in train mode, batch of 4, duplicate "
         "labels allowed), recover its labels and reconstruct its images with the inverting attack from its one "
         "gradient; writes runs/<timestamp>/.",
         "  fastleak demo\n  fastleak demo --fast --out /tmp/runs\n"
         "  fastleak demo --state-dict runs/train/lenet/round_005.pt", _configure_demo)
def demo(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return execute(resumed_spec(args, "demo"), Path(args.resume), args.thread_policy, created=False,
                        command="demo")
    spec = spec_from_args(args, DEMO_FAST if args.fast else DEMO)
    return execute(spec, new_run_dir(args.out), args.thread_policy, command="demo")
