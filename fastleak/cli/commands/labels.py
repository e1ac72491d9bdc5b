"""fastleak labels: the label counts of a simulated or saved observation."""
from __future__ import annotations

import argparse

import torch

from fastleak.cli.commands.loading import load_observation
from fastleak.cli.commands.options import model_options, scenario_options, shown_defaults, spec_from_args
from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError


LABELS_BASE = {"batch": 8, "labels": "repeat:2"}


def _configure_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--observation", default=None,
                   help="a saved observation instead of a simulated client (default: simulate one)")
    p.add_argument("--num-classes", type=int, default=None, help="with --observation: classes (default: the "
                   "observation's)")
    p.add_argument("--method", default="auto", help="label recovery method: auto, " + ", ".join(_label_methods()))
    shown = shown_defaults(LABELS_BASE)
    model_options(p, shown)
    p.add_argument("--model-class", dest="model", help=argparse.SUPPRESS)  # the former name of --model
    scenario_options(p, shown)


def _label_methods() -> list[str]:
    from fastleak.labels import METHODS

    return [name for name in METHODS if name != "auto"]


@command("labels", "Recover the label counts of a simulated or saved observation and print the count table.",
         "  fastleak labels --batch 32 --labels repeat:4 --model convnet\n"
         "  fastleak labels --observation client7.obs --model convnet --method ilrg", _configure_labels)
def labels_command(args: argparse.Namespace) -> int:
    from fastleak import labels
    from fastleak.metrics import label_scores

    if args.observation:
        if not args.model:
            raise CliError("--observation needs the model it was computed with",
                           "add --model NAME|MODULE:CLASS (and --state-dict, --model-option as needed)")
        obs, net = load_observation(args)
        truth = None
    else:
        from fastleak.experiments import simulate

        scenario = simulate(spec_from_args(args, LABELS_BASE))
        obs, net, truth = scenario.observation, scenario.model, scenario.labels
    found = labels.counts(obs, net, args.method)
    rec = found.counts.cpu()
    true_counts = torch.bincount(truth, minlength=rec.numel()) if truth is not None else None
    print(f"method: {found.method}   batch size: {obs.num_samples}")
    print(f"{'class':>6} {'estimate':>9} {'count':>6}" + (f" {'true':>5}" if truth is not None else ""))
    for c in range(rec.numel()):
        shown = rec[c] > 0 or (true_counts is not None and true_counts[c] > 0)
        if shown:
            line = f"{c:>6} {float(found.estimates[c]):>9.2f} {int(rec[c]):>6}"
            if true_counts is not None:
                line += f" {int(true_counts[c]):>5}" + ("" if true_counts[c] == rec[c] else "  *")
            print(line)
    if truth is not None:
        s = label_scores(found.labels, truth)
        print(f"LnAcc {s.ln_acc:.3f}  LeAcc {s.le_acc:.3f}  exact multiset: {'yes' if s.exact else 'no'}")
    return 0
