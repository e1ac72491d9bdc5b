"""What the server does with the recorded updates: label recovery, an attack, and the round report.

Per round, in the round's directory (see ``fastleak.integrations.flower.strategy``):

* ``leakage.json``: ``{"version", "round", "labels_method", "attack": AttackConfig fields | null,
  "clients": [{"row", "cid", "file", "num_samples",
  "labels": {"method", "recovered": [...], "estimates": [...]} | {"error"} (absent without label recovery),
  "attack": {"loss", "labels", "label_method", "iterations", "wall_time_s"} | {"error"}
  (absent without an attack; ``label_method`` is the recovery method whose labels the attack kept
  fixed, or the preset's own label rule without label recovery)}]}``. The server has no ground
  truth, so an attack is scored by its final objective (``loss``: gradient distance plus priors,
  lower is a closer match).
* ``reconstructions.pt`` (with an attack; ``torch.load(weights_only=True)``):
  ``{"format": "fastleak.flower.reconstructions", "version": 1, "round": int,
  "clients": {cid: {"images": [B, C, H, W] in [0, 1], "labels": [B]}}}``.
* ``reconstructions.png`` (with an attack): one row per client (``row`` above), its
  reconstructions captioned ``#row y=label``.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from fastleak._checks import positive_int
from fastleak._files import write_atomically
from fastleak.attacks import AttackConfig, Execution, attack
from fastleak.attacks.presets import configure
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.federated import Observation
from fastleak.labels import METHODS, counts
from fastleak.reports import image_rows
from fastleak.reports.rundir import write_json

log = logging.getLogger(__name__)

RECONSTRUCTIONS_FORMAT = "fastleak.flower.reconstructions"
RECONSTRUCTIONS_VERSION = 1


@dataclass(frozen=True)
class AuditConfig:
    """The analysis run on every recorded update, in a background worker.

    ``labels``: the label-recovery method (``fastleak.labels.METHODS``, "auto" by default) or
    None to skip it. ``attack``: an attack preset (``fastleak.attacks.PRESETS``) or None (the
    default) for no attack; it runs ``iterations`` steps with ``restarts`` restarts from ``seed``,
    with ``attack_options`` overriding fields of the preset's ``AttackConfig``, and with the
    recovered labels fixed when label recovery is on.
    """

    labels: str | None = "auto"
    attack: str | None = None
    iterations: int = 200
    restarts: int = 1
    seed: int = 0
    attack_options: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.labels is not None and self.labels not in METHODS:
            raise InvalidValueError(f"AuditConfig.labels must be None or one of {', '.join(METHODS)}, got "
                                    f"{self.labels!r}")
        positive_int(self.iterations, "AuditConfig.iterations")
        positive_int(self.restarts, "AuditConfig.restarts")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise InvalidTypeError(f"AuditConfig.seed must be an int, got {self.seed!r}")
        if not isinstance(self.attack_options, Mapping):
            raise InvalidTypeError("AuditConfig.attack_options must be a mapping, got "
                                   f"{type(self.attack_options).__name__}")
        object.__setattr__(self, "attack_options", dict(self.attack_options))
        if self.attack is not None:
            self.attack_config()
        elif self.attack_options:
            raise InvalidValueError("AuditConfig.attack_options are given but no attack preset is set (attack=None)")

    def attack_config(self) -> AttackConfig | None:
        """The attack's full configuration (None without an attack)."""
        return None if self.attack is None else self.attack_settings()[0]

    def attack_settings(self) -> tuple[AttackConfig, Execution]:
        """The attack's configuration and execution settings (``attack_options`` may set both)."""
        return configure(self.attack, self.iterations, **self.attack_options)

    def as_dict(self) -> dict[str, Any]:
        return {"labels": self.labels, "attack": self.attack, "iterations": self.iterations,
                "restarts": self.restarts, "seed": self.seed, "attack_options": dict(self.attack_options)}

    @property
    def enabled(self) -> bool:
        return self.labels is not None or self.attack is not None


@dataclass(frozen=True)
class Recorded:
    """One recorded client update of a round: its row in the round index, Flower id and file name."""

    row: int
    cid: str
    file: str
    observation: Observation


def _recover_labels(entry: Recorded, model: nn.Module, method: str) -> tuple[dict[str, Any], torch.Tensor | None]:
    try:
        found = counts(entry.observation, model, method)
    except Exception as exc:  # one client's failure must not stop the audit of the others
        log.exception("round audit: label recovery failed for client %s", entry.cid)
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    return {"method": found.method, "recovered": found.labels.tolist(),
            "estimates": [round(v, 4) for v in found.estimates.tolist()]}, found.labels


def _attack(entry: Recorded, model: nn.Module, config: AuditConfig, labels: torch.Tensor | None,
            label_method: str | None) -> tuple[dict[str, Any], Any]:
    try:
        algorithm, execution = config.attack_settings()
        result = attack(entry.observation, model, algorithm, labels=labels, restarts=config.restarts,
                        seed=config.seed, execution=execution)
    except Exception as exc:  # one client's failure must not stop the audit of the others
        log.exception("round audit: the attack failed for client %s", entry.cid)
        return {"error": f"{type(exc).__name__}: {exc}"}, None
    return {"loss": float(result.restart_losses[result.best_restart]), "labels": result.labels.tolist(),
            "label_method": label_method if labels is not None else result.label_method,
            "iterations": result.iterations,
            "wall_time_s": result.wall_time}, result


def _save_reconstructions(path: Path, server_round: int, results: Mapping[str, Any]) -> None:
    payload = {"format": RECONSTRUCTIONS_FORMAT, "version": RECONSTRUCTIONS_VERSION, "round": server_round,
               "clients": {cid: {"images": r.images.cpu(), "labels": r.labels.cpu()} for cid, r in results.items()}}
    write_atomically(path, lambda tmp: torch.save(payload, tmp))


def audit_round(round_dir: Path, server_round: int, recorded: Sequence[Recorded], model: nn.Module,
                config: AuditConfig) -> dict[str, Any]:
    """Analyse the recorded updates of one round and write its report files; returns leakage.json's content.

    Works on its own copy of ``model``, so audits may run in several threads at once."""
    model = copy.deepcopy(model)
    clients, attacked = [], {}
    for entry in recorded:
        item: dict[str, Any] = {"row": entry.row, "cid": entry.cid, "file": entry.file,
                                "num_samples": entry.observation.num_samples}
        labels = None
        if config.labels is not None:
            item["labels"], labels = _recover_labels(entry, model, config.labels)
        if config.attack is not None:
            item["attack"], result = _attack(entry, model, config, labels, item.get("labels", {}).get("method"))
            if result is not None:
                attacked[entry.cid] = (entry.row, result)
        clients.append(item)
    attack_config = config.attack_config()
    report = {"round": server_round, "labels_method": config.labels,
              "attack": None if attack_config is None else attack_config.as_dict(), "clients": clients}
    write_json(round_dir / "leakage.json", report)
    if attacked:
        _save_reconstructions(round_dir / "reconstructions.pt", server_round,
                              {cid: result for cid, (_, result) in attacked.items()})
        rows = [result.images for _, result in attacked.values()]
        captions = [[f"#{row} y={int(c)}" for c in result.labels] for row, result in attacked.values()]
        image_rows(rows, captions, round_dir / "reconstructions.png")
    log.info("round %d audited: %d client update(s)%s", server_round, len(recorded),
             ", grid in " + str(round_dir / "reconstructions.png") if attacked else "")
    return report
