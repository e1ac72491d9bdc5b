"""fastleak labels: the label counts of a simulated or saved observation."""
from __future__ import annotations

import argparse
from typing import Any

import torch

from fastleak.cli.commands.loading import load_observation
from fastleak.cli.commands.options import model_options, scenario_options, shown_defaults, spec_from_args
from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError

# "random" draws labels with replacement, so the default works at every batch size.
LABELS_BASE = {"batch": 8, "labels": "random"}
PUBLIC_IMAGES = 1000


def _configure_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--observation", default=None,
                   help="a saved observation instead of a simulated client (default: simulate one)")
    p.add_argument("--num-classes", type=int, default=None, help="with --observation: classes (default: the "
                   "observation's)")
    p.add_argument("--method", default="auto", help="label recovery method: auto, " + ", ".join(_label_methods()))
    p.add_argument("--public-data", default=None, metavar="NAME[:SPLIT]",
                   help="the server's labelled public data, e.g. mnist:train, read from --data-root like --dataset "
                        "(default: the other split of --dataset when it can be read, as the malicious presets do; "
                        "'none': no public data)")
    p.add_argument("--public-images", type=int, default=PUBLIC_IMAGES, metavar="N",
                   help=f"at most this many public images (default: {PUBLIC_IMAGES})")
    shown = shown_defaults(LABELS_BASE)
    model_options(p, shown)
    p.add_argument("--model-class", dest="model", help=argparse.SUPPRESS)  # the former name of --model
    scenario_options(p, shown)


def _label_methods() -> list[str]:
    from fastleak.labels import METHODS

    return [name for name in METHODS if name != "auto"]


def _public_data(args: argparse.Namespace, dataset: str | None, split: str, data_root: str | None,
                 obs, net) -> tuple[Any, str]:
    """(PublicData or None, a line describing it): ``labels.public.server_public`` for the options."""
    from fastleak.data import DatasetError
    from fastleak.labels.public import server_public
    from fastleak.models import final_linear

    if args.public_data is None and dataset is None:
        return None, "public data: none (pass --public-data NAME[:SPLIT])"
    if args.public_images < 2:
        raise CliError(f"--public-images must be at least 2, got {args.public_images}", "e.g. --public-images 1000")
    try:
        return server_public(args.public_data, dataset, split, root=data_root, images=args.public_images,
                             num_classes=final_linear(net).out_features, input_shape=obs.input_shape)
    except DatasetError as exc:
        raise CliError(f"--public-data {args.public_data!r}: {str(exc).splitlines()[0]}",
                       "name a dataset and split that exist, e.g. mnist:train, or pass --data-root DIR") from None
    except ValueError as exc:
        raise CliError(str(exc), "name public data of the model's task (classes and image size), or pass "
                                 "--public-data none") from None


@command("labels", "Recover the label counts of a simulated or saved observation and print the count table.",
         "  fastleak labels --dataset mnist --batch 32 --model convnet --state-dict runs/mnist/round_005.pt\n"
         "  fastleak labels --observation client7.obs --model convnet --method ilrg --public-data mnist:train",
         _configure_labels)
def labels_command(args: argparse.Namespace) -> int:
    from fastleak import labels
    from fastleak.metrics import label_scores

    if args.observation:
        if not args.model:
            raise CliError("--observation needs the model it was computed with",
                           "add --model NAME|MODULE:CLASS (and --state-dict, --model-option as needed)")
        obs, net = load_observation(args)
        truth = None
        dataset, split, root = args.dataset, args.split or "test", args.data_root
    else:
        from fastleak.experiments import simulate

        spec = spec_from_args(args, LABELS_BASE)
        scenario = simulate(spec)
        obs, net, truth = scenario.observation, scenario.model, scenario.labels
        dataset, split, root = spec.dataset, spec.split, spec.data_root
    public, public_line = _public_data(args, dataset, split, root, obs, net)
    found = labels.counts(obs, net, args.method, public=public)
    rec = found.counts.cpu()
    true_counts = torch.bincount(truth, minlength=rec.numel()) if truth is not None else None
    print(f"method: {found.method}   batch size: {obs.num_samples}   {public_line}")
    level = f"{round(100 * found.level)}%"
    header = f"{'class':>6} {'estimate':>9} {'count':>6}"
    if found.interval is not None:
        header += f" {level + ' range':>10} {'P(count)':>9}"
    print(header + (f" {'true':>5}" if truth is not None else ""))
    band = found.interval.cpu() if found.interval is not None else None
    for c in range(rec.numel()):
        shown = rec[c] > 0 or (true_counts is not None and true_counts[c] > 0) or (band is not None and band[c, 1] > 0)
        if not shown:
            continue
        line = f"{c:>6} {float(found.estimates[c]):>9.2f} {int(rec[c]):>6}"
        if band is not None:
            line += f" {f'{int(band[c, 0])}-{int(band[c, 1])}':>10} {float(found.probability[c]):>9.2f}"
        if true_counts is not None:
            line += f" {int(true_counts[c]):>5}" + ("" if true_counts[c] == rec[c] else "  *")
        print(line)
    if found.interval is not None:
        source = ("the count posterior" if found.uncertainty == "posterior"
                  else "the method's errors on public batches simulated at this model state")
        print(f"{level} range: holds the true count with probability {found.level:.2f}, from {source}; "
              "P(count): the probability that the count is exact")
    if truth is not None:
        s = label_scores(found.labels, truth)
        print(f"LnAcc {s.ln_acc:.3f}  LeAcc {s.le_acc:.3f}  exact multiset: {'yes' if s.exact else 'no'}")
    return 0
