"""Simulated FedAvg (or centralised SGD) on a real dataset, resumable round by round."""
from __future__ import annotations

import copy
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fastleak import data, models
from fastleak.errors import InvalidValueError
from fastleak.training.config import TrainConfig
from fastleak.training.partition import partition
from fastleak.training.rundir import (RoundRecord, read_checkpoint, save_round, write_checkpoint,
                                      write_summary)

log = logging.getLogger(__name__)

EVAL_CHUNK = 500


@dataclass(frozen=True)
class TrainResult:
    out: Path
    history: tuple[RoundRecord, ...]
    model: nn.Module          # the final global model, in eval mode

    @property
    def final_accuracy(self) -> float:
        return self.history[-1].test_accuracy


def _batches(shard: np.ndarray, steps: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``steps`` mini-batches from consecutive shuffles of ``shard`` (no image twice in a batch)."""
    size = min(batch_size, len(shard))
    passes = -(-steps * size // len(shard))
    stream = np.concatenate([rng.permutation(shard) for _ in range(passes)])
    return [stream[i * size:(i + 1) * size] for i in range(steps)]


def _pixels(split: data.Split, indices: np.ndarray, device: torch.device) -> torch.Tensor:
    return split.pixels(indices).to(device).float().div_(255)


def _shifted(x: torch.Tensor, shift: int, rng: np.random.Generator) -> torch.Tensor:
    """Each image translated by its own random (dy, dx) in [-shift, shift]^2, zero-filled."""
    n, c, h, w = x.shape
    offsets = torch.from_numpy(rng.integers(0, 2 * shift + 1, size=(2, n))).to(x.device)
    rows = (offsets[0, :, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (offsets[1, :, None] + torch.arange(w, device=x.device))[:, None, None, :]
    padded = F.pad(x, (shift, shift, shift, shift))
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def _local_update(local: nn.Module, global_state: dict[str, torch.Tensor], split: data.Split,
                  batches: list[np.ndarray], config: TrainConfig, round_number: int, rng: np.random.Generator,
                  device: torch.device) -> list[float]:
    local.load_state_dict(global_state)
    local.train()
    opt = torch.optim.SGD(local.parameters(), lr=config.lr_of(round_number), momentum=config.momentum)
    losses = []
    for indices in batches:
        x, y = _pixels(split, indices, device), torch.from_numpy(split.labels[indices]).to(device)
        if config.shift:
            x = _shifted(x, config.shift, rng)
        loss = F.cross_entropy(local(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.detach())
    return [float(v) for v in torch.stack(losses).cpu()]


def _average(states: list[dict[str, torch.Tensor]], weights: list[int]) -> dict[str, torch.Tensor]:
    """The weighted mean of floating-point entries; integer entries (BatchNorm's step counters) from
    the first client, since every client took the same number of steps."""
    total = float(sum(weights))
    out = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            acc = torch.zeros_like(first, dtype=torch.float64)
            for state, w in zip(states, weights):
                acc.add_(state[key].double(), alpha=w / total)
            out[key] = acc.to(first.dtype)
        else:
            out[key] = first.clone()
    return out


def _evaluation_indices(available: int, wanted: int | None, seed: int) -> np.ndarray:
    """All test images, or a fixed seeded subset of ``wanted`` of them."""
    if wanted is None or wanted >= available:
        return np.arange(available)
    return np.sort(np.random.default_rng([seed, 0xE7A1]).choice(available, wanted, replace=False))


@torch.no_grad()
def evaluate(model: nn.Module, split: data.Split, indices: np.ndarray, device: torch.device) -> float:
    """Top-1 accuracy of ``model`` (eval mode) on the images of ``split`` at ``indices``."""
    model.eval()
    correct = 0
    for start in range(0, len(indices), EVAL_CHUNK):
        chunk = indices[start:start + EVAL_CHUNK]
        logits = model(_pixels(split, chunk, device))
        correct += int((logits.argmax(1).cpu() == torch.from_numpy(split.labels[chunk])).sum())
    return correct / len(indices)


def train(config: TrainConfig, out: str | os.PathLike, *,
          callback: Callable[[RoundRecord], None] | None = None) -> TrainResult:
    """Train ``config.model`` on the train split of ``config.dataset`` for ``config.rounds`` rounds.

    Writes ``out`` as ``fastleak.training.rundir`` documents. When ``out`` holds a checkpoint of the
    same configuration (``rounds`` and ``save_rounds`` may differ), the run resumes after its last
    finished round and repeats exactly what an uninterrupted run would have done: every random
    choice of round r derives from (seed, r, client). A run that already has ``rounds`` rounds or
    more trains no further and returns its last state. ``callback(record)`` follows every round.
    """
    out = Path(out)
    device = torch.device(config.device)
    train_split = data.open_split(config.dataset, root=config.data_root, split="train")
    test_split = data.open_split(config.dataset, root=config.data_root, split="test")
    traits = train_split.traits
    if test_split.traits.num_classes != traits.num_classes:
        raise InvalidValueError(f"the train and test splits of {config.dataset} disagree on the number of classes "
                                f"({traits.num_classes} vs {test_split.traits.num_classes})")
    in_shape = (traits.channels, traits.size, traits.size)
    model_args = {"name": config.model, "num_classes": traits.num_classes, "in_shape": list(in_shape),
                  "seed": config.seed, **config.model_options}
    model = models.build(config.model, traits.num_classes, in_shape=in_shape, seed=config.seed,
                         **config.model_options).to(device)
    shards = partition(train_split.labels, config.clients, config.partition, config.alpha, config.seed)
    eval_indices = _evaluation_indices(len(test_split), config.eval_samples, config.seed)
    root = data.resolve_root(config.data_root)
    data_info = {"dataset": config.dataset, "root": None if root is None else str(root),
                 "train_images": len(train_split), "test_images": len(eval_indices), "origin": train_split.origin}

    checkpoint = read_checkpoint(out) if out.exists() else None
    if checkpoint is not None:
        changed = config.differences(checkpoint.config)
        if changed:
            raise InvalidValueError(f"{out} holds a training run with other settings ({', '.join(changed)} differ); "
                                    "pass another --out, or the same settings to resume it")
        model.load_state_dict(checkpoint.state)
        history = list(checkpoint.history)
        log.info("resuming %s after round %d of %d", out, history[-1].round, config.rounds)
    else:
        out.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        history = [RoundRecord(0, evaluate(model, test_split, eval_indices, device), None,
                               time.perf_counter() - started)]
        _finish_round(out, config, model, model_args, data_info, history, callback)
    empty = [k for k, shard in enumerate(shards) if not len(shard)]
    if empty:
        log.warning("clients %s hold no training images under the %s partition and take no part", empty,
                    config.partition)

    local = copy.deepcopy(model)
    for r in range(history[-1].round + 1, config.rounds + 1):
        started = time.perf_counter()
        global_state = {k: v.clone() for k, v in model.state_dict().items()}
        states, weights, losses = [], [], []
        for k, shard in enumerate(shards):
            if not len(shard):
                continue
            rng = np.random.default_rng([config.seed, r, k])
            batches = _batches(shard, config.local_steps, config.local_batch_size, rng)
            losses += _local_update(local, global_state, train_split, batches, config, r, rng, device)
            states.append({key: v.detach().clone() for key, v in local.state_dict().items()})
            weights.append(len(shard))
        model.load_state_dict(_average(states, weights))
        loss = float(np.mean(losses))
        if not np.isfinite(loss):
            raise FloatingPointError(f"training diverged in round {r} (mean local loss {loss}); lower the lr "
                                     f"({config.lr}); rounds up to {r - 1} are saved in {out}")
        accuracy = evaluate(model, test_split, eval_indices, device)
        history.append(RoundRecord(r, accuracy, loss, time.perf_counter() - started))
        log.info("round %d: train loss %.4f, test accuracy %.4f", r, loss, accuracy)
        _finish_round(out, config, model, model_args, data_info, history, callback)
    return TrainResult(out, tuple(history), model.eval())


def _finish_round(out: Path, config: TrainConfig, model: nn.Module, model_args: dict, data_info: dict,
                  history: list[RoundRecord], callback: Callable[[RoundRecord], None] | None) -> None:
    if config.saves(history[-1].round):
        save_round(out, history[-1].round, model)
    write_summary(out, config, model_args, data_info, history)
    write_checkpoint(out, config, model, history)
    if callback is not None:
        callback(history[-1])
