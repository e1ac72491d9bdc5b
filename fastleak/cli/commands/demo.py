"""fastleak demo: the main job on built-in real data."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import (
    model_options, resumed_spec, run_folder_options, shown_defaults, spec_from_args)
from fastleak.cli.commands.registry import command
from fastleak.cli.commands.running import execute


# Sized for two CPU cores: the ConvNet's double backward costs several training steps per iteration.
DEMO = {"dataset": "cifar10", "model": "convnet", "model_options": {"width": 16}, "batch": 4, "labels": "random",
        "mode": "fedsgd", "preset": "inverting", "restarts": 2, "iterations": 300, "seed": 0}
DEMO_FAST = {**DEMO, "model_options": {"width": 8}, "restarts": 1, "iterations": 20}


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="a smaller, shorter run")
    run_folder_options(p)
    model_options(p, shown_defaults(DEMO))
    p.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {DEMO['seed']})")


@command("demo", "Simulate a CIFAR-10 client (convnet, batch of 4, duplicate labels allowed), recover its "
         "labels and reconstruct its images with the inverting attack; writes runs/<timestamp>/.",
         "  fastleak demo\n  fastleak demo --fast --out /tmp/runs\n"
         "  fastleak demo --state-dict runs/train/lenet/round_005.pt", _configure_demo)
def demo(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return execute(resumed_spec(args, "demo"), Path(args.resume), args.thread_policy, created=False,
                        command="demo")
    spec = spec_from_args(args, DEMO_FAST if args.fast else DEMO)
    return execute(spec, new_run_dir(args.out), args.thread_policy, command="demo")
