"""fastleak demo: the main job on built-in real data."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import (
    model_options, resumed_spec, run_folder_options, shown_defaults, spec_from_args)
from fastleak.cli.commands.registry import command
from fastleak.cli.commands.running import execute


# A FedSGD client as it trains (BatchNorm on batch statistics). Its wall times in seconds on two idle CPU cores
# with the default threads, as `python -m benchmarks.cli_timings --only demo` measures them (RESULTS.md, "Presets
# that tune themselves": 17.0 s and 9.8 s), are the figures the help and the README quote (tests/test_readme.py
# holds the README to them).
DEMO_SECONDS = 17
DEMO_FAST_SECONDS = 10
DEMO = {"dataset": "cifar10", "model": "plainconv", "model_options": {"width": 16, "depth": 3}, "client_bn": "train",
        "batch": 4, "labels": "random", "mode": "fedsgd", "preset": "inverting", "restarts": None, "iterations": 300,
        "seed": 0}
DEMO_FAST = {**DEMO, "batch": 1, "iterations": 200}


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help=f"a smaller, shorter run: one image, "
                   f"{DEMO_FAST['iterations']} iterations (about {DEMO_FAST_SECONDS} s on two CPU cores)")
    run_folder_options(p)
    model_options(p, shown_defaults(DEMO))
    p.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {DEMO['seed']})")


@command("demo", "Simulate a CIFAR-10 FedSGD client (plainconv, BatchNorm in train mode, batch of 4, duplicate "
         "labels allowed), recover its labels and reconstruct its images with the inverting attack from its one "
         f"gradient; about {DEMO_SECONDS} s on two CPU cores; writes runs/<timestamp>/.",
         "  fastleak demo\n  fastleak demo --fast --out /tmp/runs\n"
         "  fastleak demo --state-dict runs/train/lenet/round_005.pt", _configure_demo)
def demo(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return execute(resumed_spec(args, "demo"), Path(args.resume), args.thread_policy, created=False,
                        command="demo")
    spec = spec_from_args(args, DEMO_FAST if args.fast else DEMO)
    return execute(spec, new_run_dir(args.out), args.thread_policy, command="demo")
