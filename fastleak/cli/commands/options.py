"""Options shared by several commands, and the experiment spec they describe."""
from __future__ import annotations

import argparse
import inspect
import json
from pathlib import Path
from typing import Any

from fastleak._keyvalue import key_values, named_key_values
from fastleak._toml import read_toml
from fastleak.cli.errors import CliError


def shown_defaults(base: dict[str, Any]) -> dict[str, Any]:
    """The values a run gets for options left out: ``base`` over ExperimentSpec's defaults."""
    from fastleak.attacks.presets import PRESETS
    from fastleak.experiments import ExperimentSpec

    shown = {**ExperimentSpec().as_dict(), **base}
    if shown["iterations"] is None:
        shown["iterations"] = (f"the preset's, {PRESETS.get(shown['preset']).iterations} for {shown['preset']}"
                               if shown["preset"] in PRESETS.names() else "none: the malicious presets are closed-form")
    if shown["restarts"] is None:
        from fastleak.attacks.search import RESTARTS

        preset = PRESETS.get(shown["preset"]) if shown["preset"] in PRESETS.names() else None
        shown["restarts"] = (f"one per candidate of the preset's search, {RESTARTS} without one"
                             + (f"; {len(preset.search['tv'])} TV weights for {shown['preset']}"
                                if preset is not None and "tv" in preset.search else ""))
    options = shown["model_options"] or {}
    if "width" not in options and ":" not in shown["model"]:
        from fastleak import models

        width = inspect.signature(models.MODELS.get(shown["model"])).parameters.get("width")
        options = {**options, **({"width": width.default} if width is not None else {})}
    shown["model_options"] = " ".join(f"{k}={v}" for k, v in options.items()) or "none"
    return shown


def model_options(p: argparse.ArgumentParser, shown: dict[str, Any], required: bool = False,
                   simulated: bool = True) -> None:
    from fastleak import models

    g = p.add_argument_group("model")
    g.add_argument("--model", default=None, required=required, metavar="NAME|MODULE:CLASS",
                   help=f"{', '.join(models.names())}, or your own nn.Module class importable from the current "
                        f"directory" + ("" if required else f" (default: {shown['model']})"))
    g.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help=f"a keyword of the model's constructor, repeatable (default: {shown['model_options']})")
    g.add_argument("--width", type=int, default=None, metavar="N",
                   help="shorthand for --model-option width=N (default: as --model-option)")
    g.add_argument("--state-dict", default=None, metavar="CKPT",
                   help="a torch.save'd state dict to load into the model (default: the model as built)"
                        + ("; a round_NNN.pt of 'fastleak train' also supplies --model, --model-option, --dataset "
                           "and --data-root" if simulated else ""))
    if simulated:
        from fastleak.experiments.spec import CLIENT_BN

        g.add_argument("--client-bn", default=None, choices=CLIENT_BN,
                       help="BatchNorm as the client runs it: train (batch statistics, as in local training) or "
                            f"eval (running statistics) (default: {shown['client_bn']})")
    g.add_argument("--device", default=None, help=f"cpu or cuda (default: {shown['device']})")


def constructor_options(args: argparse.Namespace) -> dict[str, Any]:
    """--model-option pairs, with --width."""
    options = key_values(getattr(args, "model_option", None), "--model-option", "width=32")
    if getattr(args, "width", None) is not None:
        options["width"] = args.width
    return options


def defense_names(*stages: str) -> str:
    """The registered defenses (acting at ``stages``), each with the modes it is limited to."""
    from fastleak import defenses

    every = tuple(defenses.PROTOCOLS)
    return ", ".join(d.name + ("" if d.protocols == every else f" ({' and '.join(d.protocols)} only)")
                     for d in map(defenses.get, defenses.names(*stages)))


def scenario_options(p: argparse.ArgumentParser, shown: dict[str, Any]) -> None:
    g = p.add_argument_group("simulated client")
    g.add_argument("--dataset", default=None,
                   help="cifar10, cifar100, mnist, fashion_mnist, imagenet (shipped samples, or from --data-root), "
                        f"folder, npz (from --data-root) (default: {shown['dataset']})")
    g.add_argument("--data-root", default=None, metavar="DIR",
                   help="a dataset on disk in torchvision's layout (default: $FASTLEAK_DATA, else the shipped "
                        "samples); see the README's 'Datasets on disk'")
    g.add_argument("--split", default=None, choices=("test", "train"),
                   help=f"the private batch's split, test (held out) or train (default: {shown['split']})")
    g.add_argument("--batch", type=int, default=None, help=f"private batch size (default: {shown['batch']})")
    g.add_argument("--labels", default=None,
                   help=f"label pattern: unique, random, repeat:K (default: {shown['labels']})")
    g.add_argument("--mode", default=None, help=f"fedsgd, fedavg or multi-pair (default: {shown['mode']})")
    g.add_argument("--local-steps", type=int, default=None,
                   help=f"FedAvg local SGD steps (default: {shown['local_steps']})")
    g.add_argument("--local-lr", type=float, default=None,
                   help=f"FedAvg local learning rate (default: {shown['local_lr']})")
    g.add_argument("--local-batch-size", type=int, default=None,
                   help="FedAvg mini-batch size (default: the whole batch)")
    g.add_argument("--pairs", type=int, default=None,
                   help=f"multi-pair: number of model states (default: {shown['pairs']})")
    g.add_argument("--defense", default=None,
                   help=f"a defense on every client: {defense_names('client', 'shared')}; secure aggregation is "
                        "--clients (default: none)")
    g.add_argument("--clients", type=int, default=None, metavar="K",
                   help="secure aggregation: K clients with a batch each, the server sees only their mean "
                        f"(default: {shown['clients']})")
    g.add_argument("--defense-param", action="append", metavar="KEY=VALUE",
                   help="e.g. sigma=0.01, repeatable (default: the defense's)")
    g.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {shown['seed']})")


def attack_options(p: argparse.ArgumentParser, shown: dict[str, Any]) -> None:
    from fastleak.experiments.spec import THREATS

    g = p.add_argument_group("attack")
    g.add_argument("--threat", default=None, choices=THREATS,
                   help="honest: the server follows the protocol and optimises dummy inputs; malicious: it sends a "
                        f"modified model and reads inputs off it in closed form (default: {shown['threat']})")
    g.add_argument("--preset", default=None,
                   help="honest: dlg, idlg, inverting, gradinversion, geng; malicious: imprint, trap "
                        f"(default: {shown['preset']}; imprint under --threat malicious)")
    g.add_argument("--restarts", type=int, default=None,
                   help=f"random initialisations per candidate setting, optimised together (default: "
                        f"{shown['restarts']})")
    g.add_argument("--iterations", type=int, default=None, help=f"optimisation steps (default: {shown['iterations']})")
    g.add_argument("--attack-labels", default=None,
                   help=f"recover, optimize or true (default: {shown['attack_labels']})")
    g.add_argument("--label-method", default=None,
                   help=f"label recovery method, see 'fastleak labels' (default: {shown['label_method']})")
    g.add_argument("--public-data", default=None, metavar="NAME[:SPLIT]",
                   help="the server's labelled public data for recovered labels, read from --data-root like "
                        "--dataset; 'none' for none (default: the other split of --dataset when it can be read)")
    g.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. tv=0.1, repeatable (default: the preset's)")
    g.add_argument("--prior", action="append", metavar="NAME[:KEY=VALUE,...]",
                   help="change or add a prior of the preset, e.g. tv:weight=1e-4 or group:weight=0.01,every=50; "
                        "weight=0 removes one; a prior of your own as MODULE.NAME, importable from the current "
                        "directory; repeatable (default: the preset's priors)")


MALICIOUS_PRESET = "imprint"
_SPEC_KEYS = ("dataset", "data_root", "split", "model", "client_bn", "state_dict", "batch", "labels", "mode",
              "local_steps", "local_lr", "local_batch_size", "pairs", "defense", "seed", "preset", "restarts",
              "iterations", "attack_labels", "label_method", "public_data", "device", "threat", "clients")


def spec_from_args(args: argparse.Namespace, base: dict[str, Any]):
    from fastleak.experiments import ExperimentSpec

    values = dict(base)
    state_dict = getattr(args, "state_dict", None) or values.get("state_dict")
    if state_dict:
        values.update(trained_setting(state_dict))
    if getattr(args, "model", None) not in (None, values.get("model")):
        values["model_options"] = {}  # the base's options belong to the base's model
    for key in _SPEC_KEYS:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    model_kwargs = constructor_options(args)
    if model_kwargs:
        values["model_options"] = {**values.get("model_options", {}), **model_kwargs}
    if getattr(args, "defense_param", None):
        values["defense_params"] = {**values.get("defense_params", {}),
                                    **key_values(args.defense_param, "--defense-param", "sigma=0.01")}
    if getattr(args, "option", None):
        values["attack_options"] = {**values.get("attack_options", {}), **key_values(args.option, "--option", "tv=0.1")}
    for text in getattr(args, "prior", None) or ():
        name, params = named_key_values(text, "--prior", "tv:weight=1e-4")
        values["priors"] = {**values.get("priors", {}), name: {**values.get("priors", {}).get(name, {}), **params}}
    if values.get("threat") == "malicious" and getattr(args, "preset", None) is None and "preset" not in base:
        values["preset"] = MALICIOUS_PRESET
    return ExperimentSpec.from_dict(values)


def trained_setting(state_dict: str) -> dict[str, Any]:
    """The model and data of the ``fastleak train`` run that wrote ``state_dict``, when it did."""
    from fastleak.training import run_of_state_dict

    try:
        run = run_of_state_dict(state_dict)
    except ValueError as exc:
        raise CliError(str(exc), "pass a round_NNN.pt from a complete 'fastleak train' output folder") from None
    if run is None:
        return {}
    config = run["config"]
    return {"dataset": config["dataset"], "data_root": config["data_root"], "model": config["model"],
            "model_options": config["model_options"]}


def read_config_file(path: str) -> dict[str, Any]:
    try:
        values = read_toml(path, "config file")
    except FileNotFoundError as exc:
        raise CliError(str(exc), "pass the path of an existing .toml file") from None
    except ValueError as exc:
        raise CliError(str(exc), "fix the file's syntax") from None
    return {k.replace("-", "_"): v for k, v in values.items()}


def resumed_spec(args: argparse.Namespace, command: str):
    """The spec stored in ``args.resume``'s config.json, with the options given now on top."""
    run_dir = Path(args.resume)
    config = run_dir / "config.json"
    if not config.exists():
        raise CliError(f"{run_dir} holds no config.json", f"pass a run directory written by 'fastleak {command}'")
    spec = json.loads(config.read_text())["spec"]
    spec.setdefault("client_bn", "eval")  # runs written before the option existed simulated eval mode
    return spec_from_args(args, spec)


def run_folder_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs", help="directory for the run folders")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its checkpoint (default: start a new run)")
