"""fastleak inspect: is the model a client received built to leak its batch? Exit status 0 (honest) or 3."""
from __future__ import annotations

import argparse
import os

from fastleak.cli.commands.loading import build_model
from fastleak.cli.commands.options import constructor_options
from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError

MALICIOUS_EXIT = 3


def _configure_inspect(p: argparse.ArgumentParser) -> None:
    from fastleak import models

    g = p.add_argument_group("the received model")
    g.add_argument("--model", required=True, metavar="NAME|MODULE:CLASS",
                   help=f"its class: {', '.join(models.names())}, or your own nn.Module class importable from the "
                        "current directory")
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="a keyword of the model's constructor, repeatable (default: the constructor's)")
    g.add_argument("--width", type=int, default=None, metavar="N",
                   help="shorthand for --model-option width=N (default: the model's own)")
    g.add_argument("--state-dict", default=None, metavar="CKPT",
                   help="the weights received, a torch.save'd state dict (a round_NNN.pt of 'fastleak train' also "
                        "supplies the model's options, classes, input shape and dataset) (default: the model as built)")
    g.add_argument("--observation", default=None, metavar="OBS",
                   help="a captured observation (fastleak.federated.save) instead of --state-dict: its model state "
                        "is the one received (default: none)")
    g.add_argument("--num-classes", type=int, default=None, help="the model's classes (default: the dataset's, the "
                   "observation's or the training run's)")
    g.add_argument("--in-shape", default=None, metavar="C,H,W", help="one input's shape (default: the dataset's, the "
                   "observation's or the training run's)")
    d = p.add_argument_group("your own data (optional: how much of a batch the model would give away)")
    d.add_argument("--dataset", default=None, help="cifar10, cifar100, mnist, fashion_mnist, imagenet, folder, npz "
                   "(default: none, no estimate from your data)")
    d.add_argument("--data-root", default=None, help="the dataset on disk (default: the shipped samples)")
    d.add_argument("--split", default="test", help="the split your images come from")
    d.add_argument("--samples", type=int, default=1000, help="images of it to use (at most the split's)")
    d.add_argument("--batch", type=int, default=64, help="your batch size: the estimate is for batches of it")


def _in_shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise CliError(f"--in-shape expects positive sizes separated by commas, got {text!r}", "write e.g. 1,28,28")
    return shape


def _received(args: argparse.Namespace, shape: tuple[int, ...] | None, num_classes: int | None):
    """The model, its received weights loaded."""
    import torch

    from fastleak import federated, models
    from fastleak.training import run_of_state_dict

    build = {"num_classes": num_classes, "in_shape": shape, **constructor_options(args)}
    state = None
    if args.observation:
        if not os.path.exists(args.observation):
            raise CliError(f"observation file {args.observation!r} does not exist",
                           "pass a file written by fastleak.federated.save")
        obs = federated.load(args.observation)
        build["num_classes"] = build["num_classes"] or obs.num_classes
        build["in_shape"] = build["in_shape"] or obs.input_shape
        state = dict(obs.pairs[0].state)
    elif args.state_dict:
        run = _trained_run(args)
        if run is not None:
            trained = {k: v for k, v in run["model"].items() if k not in ("name", "seed")}
            trained["in_shape"] = tuple(trained["in_shape"])
            build = {**trained, **run["config"]["model_options"], **{k: v for k, v in build.items() if v is not None}}
    if ":" not in args.model and (build["num_classes"] is None or build["in_shape"] is None):
        raise CliError(f"the size of model {args.model!r} is unknown",
                       "pass --dataset (or --num-classes and --in-shape), or a round_NNN.pt of 'fastleak train'")
    net = build_model(args.model, build.pop("num_classes"), build.pop("in_shape"), build)
    if state is not None:
        try:
            net.load_state_dict(state)
        except RuntimeError as exc:
            raise CliError(f"the observation's model state does not fit {args.model}: {str(exc).splitlines()[0]}",
                           "pass the --model (and --model-option) the observation was computed with") from None
    elif args.state_dict:
        try:
            models.load_state(net, args.state_dict)
        except ValueError as exc:
            raise CliError(str(exc), "pass the class the weights were saved from (--model, --model-option); "
                                     "weights that do not fit your model's class are themselves a warning sign")
    return net.to(torch.float32).eval()


@command("inspect", "Say whether a model you received carries an imprint, trap-weight or similar structure built to "
         "leak your batch to the server, and why; with your own data, how much of a batch it would give away. "
         f"Exit status 0: honest, {MALICIOUS_EXIT}: malicious.",
         "  fastleak inspect --model mlp --state-dict received.pt --dataset mnist\n"
         "  fastleak inspect --model lenet --state-dict runs/train/lenet/round_100.pt\n"
         "  fastleak inspect --model mypkg.nets:Net --state-dict net.pt --dataset folder --data-root ~/photos "
         "--batch 32\n"
         "  fastleak inspect --observation client7.obs --model convnet && echo honest", _configure_inspect)
def inspect_command(args: argparse.Namespace) -> int:
    import fastleak
    from fastleak import data

    if args.state_dict and args.observation:
        raise CliError("--state-dict and --observation both give the received weights", "pass one of them")
    shape = _in_shape(args.in_shape)
    num_classes = args.num_classes
    x = None
    dataset = (args.dataset, args.data_root) if args.dataset else None
    run = _trained_run(args)
    if dataset is None and run is not None:
        dataset = run["config"]["dataset"], run["config"]["data_root"]
    if dataset is not None:
        name, root = dataset
        size = len(data.open_split(name, root=root, split=args.split).labels)
        x, _ = data.load(name, min(args.samples, size), seed=0, root=root, split=args.split)
        shape = shape or tuple(x.shape[1:])
        num_classes = num_classes or data.num_classes(name, root=root)
    net = _received(args, shape, num_classes)
    verdict = fastleak.inspect(net, x, batch_size=args.batch)
    print(verdict.summary())
    for e in verdict.evidence:
        print(f"  {'!' if e.alarming else '-'} {e.layer}: {e.summary}")
    if x is None:
        print("  (no data given: add --dataset to estimate how much of a batch it would give away)")
    if not verdict.layers:
        print("  (closed-form imprint and trap attacks need a fully connected layer; attacks by optimisation, "
              "'fastleak attack', apply to every model)")
    return MALICIOUS_EXIT if verdict.malicious else 0


def _trained_run(args: argparse.Namespace) -> dict | None:
    """The summary of the 'fastleak train' run that wrote --state-dict for this --model, else None."""
    from fastleak.training import run_of_state_dict

    if not args.state_dict or args.observation:
        return None
    run = run_of_state_dict(args.state_dict)
    return run if run is not None and run["model"]["name"] == args.model else None
