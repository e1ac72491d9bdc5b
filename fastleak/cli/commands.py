"""The subcommands, registered by decorator."""
from __future__ import annotations

import argparse
import ast
import inspect
import json
import os
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from fastleak._toml import read_toml
from fastleak.cli.errors import CliError


@dataclass(frozen=True)
class Command:
    help: str
    examples: str
    configure: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, examples: str, configure: Callable[[argparse.ArgumentParser], None]):
    def register(run: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = Command(help=help, examples="examples:\n" + examples, configure=configure, run=run)
        return run
    return register


# ----------------------------------------------------------------------------- option parsing

def _value(text: str) -> Any:
    """A Python literal, true/false in any case, or else the text itself."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def _pairs(items: list[str] | None, option: str) -> dict[str, Any]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"{option} expects KEY=VALUE, got {item!r}", f"write e.g. {option} sigma=0.01")
        out[key.replace("-", "_")] = _value(value)
    return out


def _shown_defaults(base: dict[str, Any]) -> dict[str, Any]:
    """The values a run gets for options left out: ``base`` over ExperimentSpec's defaults."""
    from fastleak.attacks.presets import PRESETS
    from fastleak.experiments import ExperimentSpec

    shown = {**ExperimentSpec().as_dict(), **base}
    if shown["iterations"] is None:
        shown["iterations"] = f"the preset's, {PRESETS.get(shown['preset']).iterations} for {shown['preset']}"
    options = shown["model_options"] or {}
    if "width" not in options and ":" not in shown["model"]:
        from fastleak import models

        width = inspect.signature(models.MODELS.get(shown["model"])).parameters.get("width")
        options = {**options, **({"width": width.default} if width is not None else {})}
    shown["model_options"] = " ".join(f"{k}={v}" for k, v in options.items()) or "none"
    return shown


def _model_options(p: argparse.ArgumentParser, shown: dict[str, Any], required: bool = False,
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
    g.add_argument("--device", default=None, help=f"cpu or cuda (default: {shown['device']})")


def _model_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """--model-option pairs, with --width."""
    options = _pairs(getattr(args, "model_option", None), "--model-option")
    if getattr(args, "width", None) is not None:
        options["width"] = args.width
    return options


def _scenario_options(p: argparse.ArgumentParser, shown: dict[str, Any]) -> None:
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
    g.add_argument("--defense", default=None, help="gaussian, laplace, clip, topk, prune, quantize (default: none)")
    g.add_argument("--defense-param", action="append", metavar="KEY=VALUE",
                   help="e.g. sigma=0.01, repeatable (default: the defense's)")
    g.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {shown['seed']})")


def _attack_options(p: argparse.ArgumentParser, shown: dict[str, Any]) -> None:
    g = p.add_argument_group("attack")
    g.add_argument("--preset", default=None,
                   help=f"dlg, idlg, inverting, gradinversion, geng (default: {shown['preset']})")
    g.add_argument("--restarts", type=int, default=None,
                   help=f"random initialisations, optimised together (default: {shown['restarts']})")
    g.add_argument("--iterations", type=int, default=None, help=f"optimisation steps (default: {shown['iterations']})")
    g.add_argument("--attack-labels", default=None,
                   help=f"recover, optimize or true (default: {shown['attack_labels']})")
    g.add_argument("--label-method", default=None,
                   help=f"label recovery method, see 'fastleak labels' (default: {shown['label_method']})")
    g.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. tv=0.1, repeatable (default: the preset's)")


_SPEC_KEYS = ("dataset", "data_root", "split", "model", "state_dict", "batch", "labels", "mode", "local_steps",
              "local_lr", "local_batch_size", "pairs", "defense", "seed", "preset", "restarts", "iterations",
              "attack_labels", "label_method", "device")


def _spec_from_args(args: argparse.Namespace, base: dict[str, Any]):
    from fastleak.experiments import ExperimentSpec

    values = dict(base)
    state_dict = getattr(args, "state_dict", None) or values.get("state_dict")
    if state_dict:
        values.update(_trained_setting(state_dict))
    if getattr(args, "model", None) not in (None, values.get("model")):
        values["model_options"] = {}  # the base's options belong to the base's model
    for key in _SPEC_KEYS:
        if getattr(args, key, None) is not None:
            values[key] = getattr(args, key)
    model_kwargs = _model_kwargs(args)
    if model_kwargs:
        values["model_options"] = {**values.get("model_options", {}), **model_kwargs}
    if getattr(args, "defense_param", None):
        values["defense_params"] = {**values.get("defense_params", {}), **_pairs(args.defense_param, "--defense-param")}
    if getattr(args, "option", None):
        values["attack_options"] = {**values.get("attack_options", {}), **_pairs(args.option, "--option")}
    return ExperimentSpec.from_dict(values)


def _trained_setting(state_dict: str) -> dict[str, Any]:
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


def _read_toml(path: str) -> dict[str, Any]:
    try:
        values = read_toml(path, "config file")
    except FileNotFoundError as exc:
        raise CliError(str(exc), "pass the path of an existing .toml file") from None
    except ValueError as exc:
        raise CliError(str(exc), "fix the file's syntax") from None
    return {k.replace("-", "_"): v for k, v in values.items()}


# ----------------------------------------------------------------------------- running and reporting

class _Progress:
    """A tqdm bar over attack steps, opened at the first report (so set-up errors print cleanly)."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.bar, self.last = total, desc, None, 0

    def __call__(self, step: int, losses: torch.Tensor) -> None:
        from tqdm import tqdm

        if self.bar is None:  # starting at the first report, the rate counts only steps timed by the bar
            self.bar = tqdm(total=self.total or None, desc=self.desc, unit="it", dynamic_ncols=True, initial=step)
        else:
            self.bar.update(step - self.last)
        self.last = step
        self.bar.set_postfix(loss=f"{float(losses.min()):.4g}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _execute(spec, run_dir: Path, thread_policy: str, created: bool = True, command: str = "attack") -> int:
    from fastleak.attacks.presets import PRESETS
    from fastleak.experiments import run
    from fastleak.reports import write_outcome
    from fastleak.reports.rundir import removed_if_it_fails_empty, write_config

    write_config(run_dir, spec.as_dict())
    progress = _Progress(0, f"{spec.preset} on {spec.model}/{spec.dataset}")
    try:
        with removed_if_it_fails_empty(run_dir, created):
            progress.total = spec.iterations or PRESETS.get(spec.preset).replace(**spec.attack_options).iterations
            outcome = run(spec, callback=progress, checkpoint=run_dir / "checkpoint.pt")
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted; checkpoint saved in {run_dir}\n  resume with: fastleak {command} --resume {run_dir}",
              file=sys.stderr)
        return 130
    finally:
        progress.close()
    metrics = write_outcome(run_dir, spec.as_dict(), outcome)
    _summary(spec, outcome, metrics, run_dir, thread_policy)
    return 0


def _summary(spec, outcome, metrics: dict[str, Any], run_dir: Path, thread_policy: str) -> None:
    ev, res = outcome.evaluation, outcome.result
    n = spec.batch
    print(_headline(outcome.scenario.observation.kind, ev.psnr_per_image, ev.labels.ln_acc) + "\n")
    options = " ".join(f"{k}={v}" for k, v in spec.model_options.items())
    rows = [("attack", f"{spec.preset} ({spec.mode}), {spec.restarts} restarts, {res.iterations} iterations"),
            ("model / data", f"{spec.model}{f' ({options})' if options else ''} / {spec.dataset}, batch {n} "
                             f"({spec.labels})"),
            ("labels", f"true {sorted(outcome.scenario.labels.tolist())}  recovered {sorted(res.labels.tolist())}"
                       f"  [{res.label_method}]"),
            ("label accuracy", f"LnAcc {ev.labels.ln_acc:.2f}  LeAcc {ev.labels.le_acc:.2f}  "
                               f"exact {'yes' if ev.labels.exact else 'no'}"),
            ("PSNR", f"{ev.psnr:.2f} dB (per image: {', '.join(f'{p:.1f}' for p in ev.psnr_per_image)})"),
            ("SSIM", f"{ev.ssim:.3f}"),
            ("speed", f"{res.iterations_per_second:.1f} it/s, {res.wall_time:.1f} s on {spec.device}, "
                      f"{thread_policy}"),
            ("outputs", str(run_dir))]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")


RECOGNISABLE_PSNR = 18.0  # dB; below it a CIFAR-size reconstruction rarely shows its object


def _headline(kind: str, psnr_per_image: list[float], ln_acc: float) -> str:
    """One plain sentence: what the server got from this client."""
    n = len(psnr_per_image)
    good = sum(p >= RECOGNISABLE_PSNR for p in psnr_per_image)
    mean = sum(psnr_per_image) / n
    right = round(ln_acc * n)
    start = f"From one {'gradient' if kind == 'gradient' else 'model update'}, the server recovered"
    if good == n:
        labels = ("its label" if n == 1 else "all their labels") if right == n else f"{right} of their {n} labels"
        return (f"{start} {'this private image' if n == 1 else f'these {n} private images'} (PSNR {mean:.1f} dB) "
                f"and {labels}.")
    labels = (("the label" if n == 1 else f"all {n} labels") if right == n
              else ("no label" if n == 1 else f"{right} of the {n} labels"))
    if good:
        return f"{start} {labels}, and {good} of the {n} images recognisably (PSNR >= {RECOGNISABLE_PSNR:.0f} dB)."
    return (f"{start} {labels}, but {'not the image' if n == 1 else f'none of the {n} images'} recognisably "
            f"(mean PSNR {mean:.1f} dB; recognisable starts near {RECOGNISABLE_PSNR:.0f} dB).")


def _resumed_spec(args: argparse.Namespace, command: str):
    """The spec stored in ``args.resume``'s config.json, with the options given now on top."""
    run_dir = Path(args.resume)
    config = run_dir / "config.json"
    if not config.exists():
        raise CliError(f"{run_dir} holds no config.json", f"pass a run directory written by 'fastleak {command}'")
    return _spec_from_args(args, json.loads(config.read_text())["spec"])


def _configure_run_folder(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs", help="directory for the run folders")
    p.add_argument("--resume", default=None, metavar="RUN_DIR",
                   help="continue an interrupted run from its checkpoint (default: start a new run)")


# ----------------------------------------------------------------------------- demo

# Sized for two CPU cores: the ConvNet's double backward costs several training steps per iteration.
DEMO = {"dataset": "cifar10", "model": "convnet", "model_options": {"width": 16}, "batch": 4, "labels": "random",
        "mode": "fedsgd", "preset": "inverting", "restarts": 2, "iterations": 300, "seed": 0}
DEMO_FAST = {**DEMO, "model_options": {"width": 8}, "restarts": 1, "iterations": 20}


def _configure_demo(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fast", action="store_true", help="a smaller, shorter run")
    _configure_run_folder(p)
    _model_options(p, _shown_defaults(DEMO))
    p.add_argument("--seed", type=int, default=None, help=f"data, model and attack seed (default: {DEMO['seed']})")


@command("demo", "Simulate a CIFAR-10 client (convnet, batch of 4, duplicate labels allowed), recover its "
         "labels and reconstruct its images with the inverting attack; writes runs/<timestamp>/.",
         "  fastleak demo\n  fastleak demo --fast --out /tmp/runs\n"
         "  fastleak demo --state-dict runs/train/lenet/round_005.pt", _configure_demo)
def demo(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return _execute(_resumed_spec(args, "demo"), Path(args.resume), args.thread_policy, created=False,
                        command="demo")
    spec = _spec_from_args(args, DEMO_FAST if args.fast else DEMO)
    return _execute(spec, new_run_dir(args.out), args.thread_policy, command="demo")


# ----------------------------------------------------------------------------- attack

def _configure_attack(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=None,
                   help="a TOML file with the same options, the command line winning (default: none)")
    _configure_run_folder(p)
    shown = _shown_defaults({})
    _model_options(p, shown)
    _scenario_options(p, shown)
    _attack_options(p, shown)


@command("attack", "Simulate a client under any model, data, label pattern, FL mode and defense, and attack it.",
         "  fastleak attack --model lenet --batch 1 --preset dlg\n"
         "  fastleak attack --mode fedavg --local-steps 4 --preset geng --width 16 --restarts 2 --iterations 300\n"
         "  fastleak attack --defense gaussian --defense-param sigma=0.01 --width 16 --restarts 1 --iterations 300\n"
         "  fastleak attack --model mypkg.nets:Net --model-option hidden=128 --dataset mnist\n"
         "  fastleak attack --config sweep.toml\n  fastleak attack --resume runs/20261125-101500",
         _configure_attack)
def attack_command(args: argparse.Namespace) -> int:
    from fastleak.reports import new_run_dir

    if args.resume:
        return _execute(_resumed_spec(args, "attack"), Path(args.resume), args.thread_policy, created=False)
    base = _read_toml(args.config) if args.config else {}
    return _execute(_spec_from_args(args, base), new_run_dir(args.out), args.thread_policy)


# ----------------------------------------------------------------------------- train

_TRAIN_FLAGS = {  # option -> (TrainConfig field, type, help)
    "--model": ("model", str, "lenet, convnet, resnet18, resnet20, mlp, or your own nn.Module class as "
                              "MODULE:CLASS, importable from the current directory"),
    "--dataset": ("dataset", str, "cifar10, cifar100, mnist, fashion_mnist, imagenet, folder, npz; needs a train "
                                  "split: the shipped MNIST digits (4,000 train / 1,000 held out) or --data-root"),
    "--data-root": ("data_root", str, "a dataset on disk (default: $FASTLEAK_DATA, else the shipped samples)"),
    "--rounds": ("rounds", int, "communication rounds"),
    "--clients": ("clients", int, "clients, all taking part in every round (1: centralised SGD)"),
    "--local-steps": ("local_steps", int, "SGD steps per client and round"),
    "--local-batch-size": ("local_batch_size", int, "images per local SGD step"),
    "--lr": ("lr", float, "local SGD learning rate (the default suits the sigmoid LeNet; ConvNet: 0.05)"),
    "--lr-decay": ("lr_decay", float, "factor on the learning rate after every round"),
    "--momentum": ("momentum", float, "local SGD momentum (reset every round)"),
    "--shift": ("shift", int, "augmentation: random translation of each image by up to this many pixels"),
    "--partition": ("partition", str, "iid or dirichlet"),
    "--alpha": ("alpha", float, "Dirichlet concentration of the non-IID partition"),
    "--eval-samples": ("eval_samples", int, "held-out images scored after every round (default: all)"),
    "--seed": ("seed", int, "model initialisation, partition and mini-batches"),
    "--device": ("device", str, "cpu or cuda"),
}


def _configure_train(p: argparse.ArgumentParser) -> None:
    from fastleak.training import TrainConfig

    defaults = TrainConfig()
    for flag, (field, kind, text) in _TRAIN_FLAGS.items():
        default = getattr(defaults, field)
        shown = "" if default is None or field == "eval_samples" else f" (default {default})"
        p.add_argument(flag, type=kind, default=None, help=text + shown)
    p.add_argument("--model-option", action="append", metavar="KEY=VALUE",
                   help="a keyword of the model's constructor, repeatable (default: the constructor's)")
    p.add_argument("--width", type=int, default=None, metavar="N",
                   help="shorthand for --model-option width=N (default: as --model-option)")
    p.add_argument("--save-rounds", default=None, metavar="R,R,...",
                   help="the rounds whose global model is written (default: every round; 0 = the initial model)")
    p.add_argument("--out", default=None, help="the run folder (default: runs/train/<timestamp>)")
    p.add_argument("--resume", default=None, metavar="OUT",
                   help="continue an interrupted run; --rounds may extend it (default: start a new run)")


def _train_config(args: argparse.Namespace):
    from fastleak.training import TrainConfig, read_summary
    from fastleak.training.config import RESUMABLE_CHANGES

    given = {field: getattr(args, flag[2:].replace("-", "_")) for flag, (field, _, _) in _TRAIN_FLAGS.items()}
    given = {k: v for k, v in given.items() if v is not None}
    if _model_kwargs(args):
        given["model_options"] = _model_kwargs(args)
    if args.save_rounds is not None:
        try:
            given["save_rounds"] = tuple(int(r) for r in args.save_rounds.split(",") if r.strip())
        except ValueError:
            raise CliError(f"--save-rounds expects comma-separated round numbers, got {args.save_rounds!r}",
                           "write e.g. --save-rounds 0,1,5,20") from None
    if not args.resume:
        return TrainConfig.from_dict(given)
    try:
        stored = TrainConfig.from_dict(read_summary(args.resume)["config"])
    except ValueError as exc:
        raise CliError(str(exc), "pass the --out folder of an interrupted 'fastleak train'") from None
    changed = sorted(k for k in given if k not in RESUMABLE_CHANGES and given[k] != getattr(stored, k))
    if changed:
        raise CliError(f"--resume continues the stored settings; {', '.join(changed)} cannot change",
                       "give only --rounds or --save-rounds with --resume, or start a new run with --out")
    return stored.replace(**{k: v for k, v in given.items() if k in RESUMABLE_CHANGES})


class _RoundProgress:
    """A tqdm bar over training rounds, showing the last round's loss and held-out accuracy."""

    def __init__(self, total: int, desc: str) -> None:
        self.total, self.desc, self.bar = total, desc, None

    def __call__(self, record) -> None:
        from tqdm import tqdm

        if self.bar is None:
            self.bar = tqdm(total=self.total, initial=record.round, desc=self.desc, unit="round", dynamic_ncols=True)
        else:
            self.bar.update(record.round - self.bar.n)
        loss = "-" if record.train_loss is None else f"{record.train_loss:.4f}"
        self.bar.set_postfix_str(f"round {record.round}, loss {loss}, test acc {record.test_accuracy:.4f}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@command("train", "Train a model with simulated FedAvg (or centralised SGD) on a dataset's train split, scoring "
         "the held-out split after every round; writes OUT/round_NNN.pt and OUT/train.json.",
         "  fastleak train --model lenet --dataset mnist --out runs/train/lenet\n"
         "  fastleak train --model convnet --width 16 --rounds 5 --clients 5 --local-steps 40 --lr 0.05 "
         "--out runs/train/convnet\n"
         "  fastleak train --dataset cifar10 --data-root ~/data --model convnet --partition dirichlet --alpha 0.3\n"
         "  fastleak train --resume runs/train/lenet --rounds 200\n"
         "  fastleak attack --state-dict runs/train/lenet/round_100.pt --preset idlg --batch 1",
         _configure_train)
def train_command(args: argparse.Namespace) -> int:
    from fastleak.reports import fresh_run_path
    from fastleak.training import round_path, train

    config = _train_config(args)
    out = Path(args.resume or args.out or fresh_run_path(Path("runs") / "train"))
    progress = _RoundProgress(config.rounds, f"train {config.model}/{config.dataset}")
    try:
        result = train(config, out, callback=progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted; finished rounds are saved in {out}\n  resume with: fastleak train --resume {out}",
              file=sys.stderr)
        return 130
    except FloatingPointError as exc:
        raise CliError(str(exc), "train again with a smaller --lr and another --out") from None
    finally:
        progress.close()
    last = result.history[-1]
    best = max(result.history, key=lambda r: r.test_accuracy)
    saved = [r.round for r in result.history if config.saves(r.round)]
    print(f"rounds          {last.round} ({sum(r.seconds for r in result.history):.1f} s of training and "
          f"evaluation)\nheld-out acc.   {last.test_accuracy:.4f} after round {last.round} (best "
          f"{best.test_accuracy:.4f}, round {best.round})\noutputs         {out}/train.json and "
          f"round_NNN.pt for rounds {_ranges(saved)}")
    if saved:
        print(f"attack it with  fastleak attack --state-dict {round_path(out, saved[-1])}")
    return 0


def _ranges(rounds: list[int]) -> str:
    if len(rounds) > 6:
        return f"{rounds[0]}, {rounds[1]}, ..., {rounds[-1]}"
    return ", ".join(map(str, rounds)) or "none"


# ----------------------------------------------------------------------------- model loading (audit, labels)

def _user_model(args: argparse.Namespace, num_classes: int | None, in_shape: tuple[int, ...] | None):
    """``--model`` built with ``--model-option``s for an observation's sizes, with ``--state-dict`` loaded."""
    from fastleak import models

    if ":" not in args.model and (num_classes is None or in_shape is None):
        raise CliError("the observation does not record num_classes/input_shape, which a registered model needs",
                       "pass --num-classes, or use --model MODULE:CLASS")
    try:
        net = models.build(args.model, num_classes, in_shape, **_model_kwargs(args))
    except (ValueError, TypeError) as exc:
        raise CliError(str(exc), "give MODULE:CLASS importable from the current directory, or a registered model "
                                 "with the options its constructor takes") from None
    if args.state_dict:
        try:
            models.load_state(net, args.state_dict)
        except ValueError as exc:
            raise CliError(str(exc), "save it with torch.save(model.state_dict(), path) from the same model "
                                     "class and --model-option values") from None
    return net.eval()


def _load_observation(args: argparse.Namespace):
    from fastleak import federated

    if not os.path.exists(args.observation):
        raise CliError(f"observation file {args.observation!r} does not exist",
                       "pass a file written by fastleak.federated.save")
    obs = federated.load(args.observation)
    net = _user_model(args, args.num_classes or obs.num_classes, obs.input_shape)
    federated.check_against_model(obs, net)
    return obs, net


def _configure_audit(p: argparse.ArgumentParser) -> None:
    from fastleak.attacks.presets import PRESETS

    p.add_argument("observation", help="observation file (fastleak.federated.save format)")
    _model_options(p, {"device": "cpu", "model_options": "the constructor's"}, required=True, simulated=False)
    p.add_argument("--num-classes", type=int, default=None, help="classes (default: the observation's)")
    g = p.add_argument_group("attack")
    g.add_argument("--preset", default="inverting", help="dlg, idlg, inverting, gradinversion, geng")
    g.add_argument("--restarts", type=int, default=4, help="random initialisations, optimised together")
    g.add_argument("--iterations", type=int, default=None,
                   help=f"optimisation steps (default: the preset's, {PRESETS.get('inverting').iterations} for "
                        f"inverting)")
    g.add_argument("--attack-labels", default="recover", help="recover or optimize")
    g.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="override a preset field, e.g. tv=0.1, repeatable (default: the preset's)")
    g.add_argument("--seed", type=int, default=0, help="seed of the random initialisations")
    _configure_run_folder(p)


def _without_option(argv: list[str], name: str) -> list[str]:
    """``argv`` less ``name VALUE`` and ``name=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip or arg.startswith(name + "="):
            skip = False
            continue
        if arg == name:
            skip = True
            continue
        out.append(arg)
    return out


@command("audit", "Attack an observation captured from a real FL system (saved with fastleak.federated.save).",
         "  fastleak audit client7.obs --model convnet --model-option width=32\n"
         "  fastleak audit client7.obs --model mypkg.nets:Net --state-dict global.pt --iterations 500",
         _configure_audit)
def audit(args: argparse.Namespace) -> int:
    from fastleak.attacks import attack
    from fastleak.attacks.presets import PRESETS
    from fastleak.reports import image_rows, loss_plot, new_run_dir
    from fastleak.reports.rundir import removed_if_it_fails_empty, write_json

    obs, net = _load_observation(args)
    options = _pairs(args.option, "--option")
    if args.resume:
        run_dir = Path(args.resume)
        if not (run_dir / "checkpoint.pt").exists():
            raise CliError(f"{run_dir} holds no checkpoint.pt", "pass the run directory an interrupted audit printed")
    else:
        run_dir = new_run_dir(args.out)
    progress = _Progress(0, f"audit {Path(args.observation).name}")
    try:
        with removed_if_it_fails_empty(run_dir, created=not args.resume):
            progress.total = args.iterations or PRESETS.get(args.preset).replace(**options).iterations
            res = attack(obs, net, args.preset, labels=args.attack_labels, restarts=args.restarts,
                         iterations=args.iterations, seed=args.seed, device=args.device, callback=progress,
                         checkpoint=run_dir / "checkpoint.pt", **options)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted; checkpoint saved in {run_dir}\n  resume with: fastleak "
              f"{shlex.join(_without_option(args.argv, '--resume'))} --resume {run_dir}", file=sys.stderr)
        return 130
    finally:
        progress.close()
    write_json(run_dir / "config.json", {"observation": os.path.abspath(args.observation), "model": args.model,
                                         "model_options": _model_kwargs(args), "state_dict": args.state_dict, "attack_config": res.config.as_dict(),
                                         "restarts": args.restarts, "seed": args.seed})
    write_json(run_dir / "labels.json", {"method": res.label_method, "recovered": sorted(res.labels.tolist())})
    write_json(run_dir / "metrics.json", {"restart_losses": res.restart_losses.tolist(), "wall_time_s": res.wall_time,
                                          "iterations": res.iterations, "best_restart": res.best_restart})
    torch.save(res.images, run_dir / "reconstruction.pt")
    image_rows([res.images.cpu()], [[f"label {c}" for c in res.labels.tolist()]], run_dir / "grid.png")
    loss_plot(res.history_steps, res.history, run_dir / "loss.png", title="audit: objective per restart")
    print(f"recovered labels {sorted(res.labels.tolist())} [{res.label_method}]; best restart loss "
          f"{float(res.restart_losses.min()):.4g}\nspeed: {res.iterations / max(res.wall_time, 1e-9):.1f} it/s, "
          f"{res.wall_time:.1f} s, {args.thread_policy}\noutputs: {run_dir}")
    return 0


# ----------------------------------------------------------------------------- labels

LABELS_BASE = {"batch": 8, "labels": "repeat:2"}


def _configure_labels(p: argparse.ArgumentParser) -> None:
    p.add_argument("--observation", default=None,
                   help="a saved observation instead of a simulated client (default: simulate one)")
    p.add_argument("--num-classes", type=int, default=None, help="with --observation: classes (default: the "
                   "observation's)")
    p.add_argument("--method", default="auto", help="label recovery method: auto, " + ", ".join(_label_methods()))
    shown = _shown_defaults(LABELS_BASE)
    _model_options(p, shown)
    p.add_argument("--model-class", dest="model", help=argparse.SUPPRESS)  # the former name of --model
    _scenario_options(p, shown)


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
        obs, net = _load_observation(args)
        truth = None
    else:
        from fastleak.experiments import simulate

        scenario = simulate(_spec_from_args(args, LABELS_BASE))
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


# ----------------------------------------------------------------------------- bench

def _configure_bench(p: argparse.ArgumentParser) -> None:
    p.add_argument("--suite", default="ops", help="ops, labels or attack")
    p.add_argument("--json", default=None, help="where to save the results (default runs/bench/<suite>.json)")
    p.add_argument("rest", nargs=argparse.REMAINDER, help="further options for the benchmark script")


@command("bench", "Run a benchmark suite from a source checkout and save its tables.",
         "  fastleak bench\n  fastleak bench --suite labels -- --quick", _configure_bench)
def bench(args: argparse.Namespace) -> int:
    root = Path(__file__).resolve().parents[2] / "benchmarks"
    script = root / f"bench_{args.suite}.py"
    if not script.exists():
        raise CliError(f"benchmark script {script} not found",
                       "run from a source checkout of fastleak (benchmarks/ is not installed with the package)")
    out = Path(args.json or Path("runs") / "bench" / f"{args.suite}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rest = [a for a in args.rest if a != "--"]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}  # the thread policy's choice
    code = subprocess.call([sys.executable, str(script), "--json", str(out), *rest], env=env)
    if code == 0:
        print(f"results: {out}")
    return code


# ----------------------------------------------------------------------------- sweep

def _configure_sweep(p: argparse.ArgumentParser) -> None:
    p.add_argument("sweep", nargs="?", help="sweep file (TOML: output, retries, [fixed], [grid], [[cases]])")
    p.add_argument("--output", default=None, help="results file (default: the file's 'output', else "
                   "runs/sweeps/<name>.jsonl)")
    p.add_argument("--backend", default="auto", help="auto (ray if installed), ray or serial")
    p.add_argument("--workers", type=int, default=None, help="parallel jobs of a local Ray (default: CPUs)")
    p.add_argument("--address", default=None, help="an existing Ray cluster, e.g. ray://head:10001 "
                   "(default: $RAY_ADDRESS, else a local Ray)")
    p.add_argument("--cpus-per-job", type=int, default=None, help="CPUs and torch threads per job (Ray default 1)")
    p.add_argument("--retry-failed", action="store_true", help="run jobs recorded as failed again")
    p.add_argument("--dry-run", action="store_true", help="list the jobs still to run and exit")
    p.add_argument("--report", default=None, metavar="RESULTS",
                   help="summarise a results file instead (default: run the sweep file)")
    p.add_argument("--report-dir", default=None, help="where --report writes (default: <results>_report/)")


@command("sweep", "Run a grid of attack experiments from a TOML file on Ray (or serially), streaming results "
         "into a resumable JSONL file; or summarise such a file with --report.",
         "  fastleak sweep examples/sweep_defenses.toml\n"
         "  fastleak sweep grid.toml --address ray://head:10001 --output runs/grid.jsonl\n"
         "  fastleak sweep grid.toml --backend serial --retry-failed\n"
         "  fastleak sweep --report runs/sweep_defenses.jsonl\n"
         "a rerun skips the jobs already in the results file; the sweep file schema is documented in\n"
         "fastleak/sweeps/grid.py and the results format in fastleak/sweeps/results.py",
         _configure_sweep)
def sweep_command(args: argparse.Namespace) -> int:
    from fastleak import sweeps

    if bool(args.sweep) == bool(args.report):
        raise CliError("give either a sweep file or --report RESULTS", "see 'fastleak sweep --help'")
    fix = "fix the sweep file or options; see 'fastleak sweep --help'"
    try:
        if args.report:
            files = sweeps.write_report(args.report, args.report_dir)
            print(files.summary.table())
            print(f"\nreport: {files.markdown}" + "".join(f"\n        {p}" for p in files.plots))
            return 0
        sweep = sweeps.load(args.sweep)
        output = Path(args.output or sweep.output or sweeps.default_output(args.sweep))
        if args.dry_run:
            every = sweep.jobs()
            jobs = sweeps.pending_jobs(every, output, retry_failed=args.retry_failed)
            for job in jobs:
                print(job.key[:12], ", ".join(f"{k}={v}" for k, v in job.varied.items()))
            print(f"{len(jobs)} of {len(every)} jobs to run; results go to {output}")
            return 0
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc), fix) from None
    progress = _SweepProgress()
    try:
        summary = sweeps.run_sweep(sweep, output, backend=args.backend, workers=args.workers,
                                   address=args.address, cpus_per_job=args.cpus_per_job,
                                   retry_failed=args.retry_failed, callback=progress)
    except KeyboardInterrupt:
        progress.close()
        print(f"\ninterrupted; finished jobs are saved in {output}\n  resume with the same command", file=sys.stderr)
        return 130
    except (ValueError, RuntimeError) as exc:
        raise CliError(str(exc), fix) from None
    finally:
        progress.close()
    print(f"{summary.total} jobs: {summary.skipped} already done, {summary.ok} ok, {summary.failed} failed "
          f"({summary.backend} backend)\nresults: {summary.output}\n  summarise with: fastleak sweep --report "
          f"{summary.output}")
    return 1 if summary.failed else 0


class _SweepProgress:
    """A tqdm bar over the jobs a sweep runs."""

    def __init__(self) -> None:
        self.bar, self.ok, self.failed = None, 0, 0

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.result is None:
            print(f"{event.pending + event.skipped} jobs, {event.skipped} already done", file=sys.stderr)
            self.bar = tqdm(total=event.pending, desc="sweep", unit="job", dynamic_ncols=True)
            return
        self.ok, self.failed = self.ok + event.result.ok, self.failed + (not event.result.ok)
        self.bar.update(1)
        self.bar.set_postfix(ok=self.ok, failed=self.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
