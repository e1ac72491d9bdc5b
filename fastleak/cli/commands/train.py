"""fastleak train: a model trained with simulated FedAvg, one state dict per round."""
from __future__ import annotations

import argparse
from pathlib import Path

from fastleak.cli.commands.options import constructor_options
from fastleak.cli.commands.registry import command
from fastleak.cli.errors import CliError, interrupted


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
    if constructor_options(args):
        given["model_options"] = constructor_options(args)
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
        return interrupted(f"finished rounds are saved in {out}", f"resume with: fastleak train --resume {out}")
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
