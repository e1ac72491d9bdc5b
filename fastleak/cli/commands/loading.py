"""The model and observation of the commands that read a captured observation (audit, labels, inspect)."""
from __future__ import annotations

import argparse
import os

from fastleak.cli.commands.options import constructor_options
from fastleak.cli.errors import CliError


def build_model(name: str, num_classes: int | None, in_shape: tuple[int, ...] | None, options: dict):
    """``models.build`` for a command: a model that cannot be built is one line and a fix."""
    from fastleak import models

    try:
        return models.build(name, num_classes, in_shape, **options)
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), "give MODULE:CLASS importable from the current directory, or a registered model "
                                 "with the options its constructor takes") from None


def user_model(args: argparse.Namespace, num_classes: int | None, in_shape: tuple[int, ...] | None):
    """``--model`` built with ``--model-option``s for an observation's sizes, with ``--state-dict`` loaded."""
    from fastleak import models

    if ":" not in args.model and (num_classes is None or in_shape is None):
        raise CliError("the observation does not record num_classes/input_shape, which a registered model needs",
                       "pass --num-classes, or use --model MODULE:CLASS")
    net = build_model(args.model, num_classes, in_shape, constructor_options(args))
    if args.state_dict:
        try:
            models.load_state(net, args.state_dict)
        except ValueError as exc:
            raise CliError(str(exc), "save it with torch.save(model.state_dict(), path) from the same model "
                                     "class and --model-option values") from None
    return net.eval()


def load_observation(args: argparse.Namespace):
    from fastleak import federated

    if not os.path.exists(args.observation):
        raise CliError(f"observation file {args.observation!r} does not exist",
                       "pass a file written by fastleak.federated.save")
    obs = federated.load(args.observation)
    net = user_model(args, args.num_classes or obs.num_classes, obs.input_shape)
    obs.check_against(net)
    return obs, net
