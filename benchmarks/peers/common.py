"""What the peer comparisons share: their options, case files and results, the models both sides rebuild,
and breaching's side of the set-up.

Both venvs import this module: fastleak's, and breaching's (``make_venv.sh``), which has torch but
not fastleak's compiled extension. Imports beyond torch and the standard library are made inside
the functions that need them: ``fastleak.models`` (pure PyTorch) and ``fastleak.federated`` on
either side, breaching and omegaconf on breaching's side only.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import io
import statistics
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch


def options(description: str, cases: str, out: str, peer: str | None = None) -> argparse.ArgumentParser:
    """``--cases``, ``--only``, ``--threads`` and ``--out``; given the ``peer``'s result folder (fastleak's
    side, which tabulates both), also ``--peer`` and ``--table``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--cases", default=cases)
    ap.add_argument("--only", default="", help="comma-separated prefixes of case names")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=out)
    if peer is not None:
        ap.add_argument("--peer", default=peer, help="the other side's results")
        ap.add_argument("--table", action="store_true", help="print the table of both sides and exit")
    return ap


def attack_options(description: str, out: str, peer: str | None = None) -> argparse.ArgumentParser:
    """``options`` for the optimisation attacks, with their budget and an optional profile."""
    ap = options(description, "runs/peers/cases", out, peer)
    ap.add_argument("--iterations", type=int, default=300)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--seed", type=int, default=None,
                    help="the attack's seed (fastleak: attack(seed=...), default 0; breaching: torch.manual_seed before "
                         "its run, default none: torch's own start); give each seed its own --out")
    ap.add_argument("--profile", action="store_true",
                    help="run under torch.profiler and write its table of ops beside each result (slower)")
    return ap


def writer_options(description: str, out: str) -> argparse.ArgumentParser:
    """The options of a script that writes case files: ``--out``."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--out", default=out)
    return ap


def output_folder(path: str | Path) -> Path:
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def start(args: argparse.Namespace) -> Path:
    """Set torch's threads to ``--threads``; the ``--out`` folder, created."""
    torch.set_num_threads(args.threads)
    return output_folder(args.out)


def selected_cases(cases: str | Path, only: str = "") -> list[Path]:
    prefixes = [p for p in only.split(",") if p]
    return [path for path in sorted(Path(cases).glob("*.pt"))
            if not prefixes or any(path.stem.startswith(p) for p in prefixes)]


def load(path: str | Path) -> dict:
    """A case or result file (plain tensors and Python values, written by these scripts)."""
    return torch.load(path, weights_only=False)


def paired_results(ours: Path, peer: Path) -> Iterator[tuple[Path, dict, dict]]:
    """Each result file of ``ours`` with the peer's file of the same name, both loaded (those without one
    are left out)."""
    for path in sorted(ours.glob("*.pt")):
        if (peer / path.name).exists():
            yield path, load(path), load(peer / path.name)


def run_record(peer: bool = False) -> dict[str, Any]:
    """What a result depends on: torch's threads and version, and on breaching's side its version."""
    record = {"threads": torch.get_num_threads(), "torch": str(torch.__version__)}
    if peer:
        record["peer"] = f"breaching {importlib.metadata.version('breaching')}"
    return record


@contextlib.contextmanager
def profiled(enabled: bool, path: Path):
    """Profile the block's CPU ops when ``enabled`` and write the table, by self time, to ``path``."""
    if not enabled:
        yield
        return
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        yield
    path.write_text(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=30) + "\n")


def median_seconds(call: Callable[..., Any], repeat: int,
                   fresh_arguments: Callable[[], Sequence[Any]] = tuple) -> tuple[float, list[float], Any]:
    """One untimed ``call``, then ``repeat`` timed ones: their median, all of them and the last result.
    Each call takes new arguments from ``fresh_arguments``, made outside the timed part."""
    result = call(*fresh_arguments())
    seconds = []
    for _ in range(repeat):
        arguments = fresh_arguments()
        started = time.perf_counter()
        result = call(*arguments)
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), seconds, result


def model_of(case: dict) -> torch.nn.Module:
    """The case's model rebuilt from ``fastleak.models`` (the registry only: pure PyTorch, no compiled
    extension) with its state dict, in the case's BatchNorm mode."""
    from fastleak import models

    model = models.build(case["model"], case["num_classes"], in_shape=case["in_shape"], seed=case["seed"],
                         **case["options"])
    model.load_state_dict(case["state_dict"])
    return model.train(case["bn_train"])


def with_gradients(observation, gradients: Sequence[torch.Tensor]):
    """A FedSGD ``observation`` whose shared tensors are ``gradients``: bit for bit what the peer is given."""
    import dataclasses

    from fastleak.federated import Pair

    pair = Pair(state=observation.pairs[0].state, shared=tuple(gradients))
    return dataclasses.replace(observation, pairs=(pair,))


@contextlib.contextmanager
def quiet():
    """breaching prints its configuration and warns on import and set-up; keep both out of the output."""
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def breaching_attacker(model: torch.nn.Module, loss: torch.nn.Module, attack: str, overrides: Sequence[str] = ()):
    """breaching's attacker with ``attack``'s stock configuration and ``overrides``, on the CPU in float32."""
    import breaching

    with quiet():
        cfg = breaching.get_attack_config(attack, overrides=list(overrides))
    return breaching.attacks.prepare_attack(model, loss, cfg, dict(device=torch.device("cpu"), dtype=torch.float))


def breaching_payloads(model: torch.nn.Module, shape: Sequence[int], classes: int, gradients: Sequence[torch.Tensor],
                       batch: int, labels: torch.Tensor | None,
                       buffers: bool = False) -> tuple[list[dict], list[dict]]:
    """breaching's server and user payloads: the model's parameters (and its buffers when ``buffers``),
    metadata without mean/std (identity normalisation: images stay in [0, 1]), the shared
    ``gradients`` with no buffers, the batch size, and ``labels`` (None: breaching recovers them)."""
    from omegaconf import OmegaConf  # breaching reads metadata both as attributes and as keys

    metadata = OmegaConf.create({"shape": list(shape), "modality": "vision", "task": "classification",
                                 "classes": classes})
    server = [{"parameters": [p.detach().clone() for p in model.parameters()],
               "buffers": [b.clone() for b in model.buffers()] if buffers else None, "metadata": metadata}]
    user = [{"gradients": [g.clone() for g in gradients], "buffers": None,
             "metadata": {"num_data_points": batch, "labels": None if labels is None else labels.clone(),
                          "local_hyperparams": None}}]
    return server, user
