"""The training run directory: what ``train`` writes, and reading it back.

OUT/
  round_NNN.pt   the global ``state_dict`` after round NNN (000: the initial model), for the saved rounds
  train.json     {"format", "version", "rounds": [{"round", "test_accuracy", "train_loss", "seconds"}, ...],
                  "config": TrainConfig fields, "model": fastleak.models.build arguments,
                  "data": {"dataset", "root", "train_images", "test_images", "origin"}, "torch", "fastleak"}
  checkpoint.pt  the last finished round, its global state and history: what a resumed run starts from

Every file is replaced atomically, and checkpoint.pt last, so a run killed at any point resumes
from its last finished round and writes the same files again.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastleak.errors import InvalidValueError
import fastleak
from fastleak._checks import first_line
from fastleak._files import write_atomically
from fastleak.training.config import TrainConfig

FORMAT = "fastleak.training"
VERSION = 1
CHECKPOINT = "checkpoint.pt"
SUMMARY = "train.json"


@dataclass(frozen=True)
class RoundRecord:
    round: int
    test_accuracy: float
    train_loss: float | None    # mean loss of the clients' local steps; None for round 0
    seconds: float              # wall time of the round (training and evaluation)

    def as_dict(self) -> dict[str, Any]:
        return {"round": self.round, "test_accuracy": self.test_accuracy, "train_loss": self.train_loss,
                "seconds": self.seconds}


def round_path(out: str | os.PathLike, round_number: int) -> Path:
    return Path(out) / f"round_{round_number:03d}.pt"


def _cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def save_round(out: Path, round_number: int, model: nn.Module) -> None:
    state = _cpu_state(model)
    write_atomically(round_path(out, round_number), lambda tmp: torch.save(state, tmp))


def write_summary(out: Path, config: TrainConfig, model_args: dict[str, Any], data: dict[str, Any],
                  history: list[RoundRecord]) -> None:
    payload = {"format": FORMAT, "version": VERSION, "rounds": [r.as_dict() for r in history],
               "config": config.as_dict(), "model": model_args, "data": data,
               "torch": torch.__version__, "fastleak": fastleak.__version__}
    text = json.dumps(payload, indent=2) + "\n"
    write_atomically(out / SUMMARY, lambda tmp: Path(tmp).write_text(text))


def write_checkpoint(out: Path, config: TrainConfig, model: nn.Module, history: list[RoundRecord]) -> None:
    blob = {"format": FORMAT, "version": VERSION, "config": config.as_dict(), "round": history[-1].round,
            "state": _cpu_state(model),
            "history": [r.as_dict() for r in history]}
    write_atomically(out / CHECKPOINT, lambda tmp: torch.save(blob, tmp))


@dataclass(frozen=True)
class Checkpoint:
    config: TrainConfig
    state: dict[str, torch.Tensor]
    history: list[RoundRecord]


def read_checkpoint(out: Path) -> Checkpoint | None:
    """The last finished round of the run in ``out``, or None when there is none."""
    path = out / CHECKPOINT
    if not path.exists():
        return None
    try:
        blob = torch.load(path, map_location="cpu", weights_only=True)
        if blob.get("format") != FORMAT or blob.get("version") != VERSION:
            raise InvalidValueError(f"format {blob.get('format')!r} version {blob.get('version')!r}")
        history = [RoundRecord(**r) for r in blob["history"]]
        return Checkpoint(TrainConfig.from_dict(blob["config"]), blob["state"], history)
    except Exception as exc:
        raise InvalidValueError(f"{path} is not a fastleak training checkpoint ({first_line(exc)}); "
                                "pass another --out, or delete it to start over") from None


def read_summary(out: str | os.PathLike) -> dict[str, Any]:
    """The parsed train.json of a run directory; ValueError naming the file when it is unreadable."""
    path = Path(out) / SUMMARY
    try:
        summary = json.loads(path.read_text())
    except FileNotFoundError:
        raise InvalidValueError(f"{path} does not exist: {out} holds no training run") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise InvalidValueError(f"{path} is not readable JSON ({exc})") from None
    if summary.get("format") != FORMAT:
        raise InvalidValueError(f"{path} is not a fastleak training summary")
    return summary


def run_of_state_dict(path: str | os.PathLike) -> dict[str, Any] | None:
    """The train.json beside a ``round_NNN.pt`` written by ``train``, or None for any other file."""
    path = Path(path)
    if not (path.parent / SUMMARY).exists():
        return None
    return read_summary(path.parent)


def load_round(out: str | os.PathLike, round_number: int) -> nn.Module:
    """The global model of a training run after ``round_number`` rounds, in eval mode."""
    from fastleak import models

    summary = read_summary(out)
    model = models.build(**{**summary["model"], "in_shape": tuple(summary["model"]["in_shape"])})
    models.load_state(model, round_path(out, round_number))
    return model.eval()
