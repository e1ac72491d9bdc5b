"""Experiments under the malicious threat: the server's closed-form recovery, scored, per defense.

``run_malicious(spec)`` simulates the round with the server's modified model
(``ExperimentSpec.threat == "malicious"``), recovers the clients' inputs with
``fastleak.malicious.recover`` and scores them against the true batch. ``protection_table`` runs
the same round under each of several protections (``Protection``) and reports, per row, how much
of the batch the server still recovers:

* exactly: matched PSNR >= ``EXACT_PSNR`` (60 dB) among the inputs the server judged single;
* recognisably: matched PSNR >= ``RECOGNISABLE_PSNR`` among the inputs of every occupied bin,
  judged or not (what a server that looks at all its candidates sees, e.g. under noise, which
  moves every value off the pixel grid so that no bin passes the checks).
"""
from __future__ import annotations

import logging
import math
import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from fastleak import data, defenses
from fastleak.errors import InvalidValueError
from fastleak.experiments.outcome import RunOutcome
from fastleak.experiments.scenario import Scenario, simulate
from fastleak.experiments.spec import ExperimentSpec
from fastleak.malicious import Recovery, RecoveryConfig, RecoveryScore, evaluate, recover
from fastleak.metrics.images import RECOGNISABLE_PSNR

log = logging.getLogger(__name__)

EVERY_BIN = RecoveryConfig(checks=(), snap_to_grid=False, labels=None)


@dataclass(frozen=True)
class MaliciousOutcome(RunOutcome):
    """The round (``scenario``: all ``clients * batch`` true samples), what the server recovered, its
    score, and ``recognisable``: per true sample, the PSNR of its best match among the inputs of every
    occupied bin (``EVERY_BIN``)."""

    scenario: Scenario
    recovery: Recovery
    score: RecoveryScore
    recognisable: tuple[float, ...]

    @property
    def recognisable_fraction(self) -> float:
        return sum(p >= RECOGNISABLE_PSNR for p in self.recognisable) / len(self.recognisable)

    def metrics(self) -> dict[str, Any]:
        """How much of the batch was recovered, exactly and recognisably; the bins; labels; recovery time."""
        score, rec = self.score, self.recovery
        matched = [p for p in score.psnr if not math.isnan(p)]
        return {"recovered_fraction": score.recovered_fraction, "singleton_fraction": score.singleton_fraction,
                "recognisable_fraction": self.recognisable_fraction, "samples": len(score.psnr),
                "recovered_images": len(rec.images), "false_images": score.false_singles,
                "psnr": statistics.mean(matched) if matched else None,
                "single_bins": rec.count("single"), "peeled_bins": rec.count("peeled"),
                "mixed_bins": rec.count("mixed"), "empty_bins": rec.count("empty"),
                "ln_acc": score.labels.ln_acc if score.labels else None,
                "le_acc": score.labels.le_acc if score.labels else None,
                "exact": score.labels.exact if score.labels else None, "recovery_time_s": rec.seconds}


def run_malicious(spec: ExperimentSpec) -> MaliciousOutcome:
    """Simulate ``spec`` (threat "malicious"), recover and score (module docs)."""
    if spec.threat != "malicious":
        raise InvalidValueError(f"spec.threat must be 'malicious' for run_malicious, got {spec.threat!r}")
    scenario = simulate(spec)
    config = RecoveryConfig(labels=None if spec.attack_labels == "true" else spec.label_method)
    recovery = recover(scenario.observation, scenario.model, config)
    num_classes = data.num_classes(spec.dataset, root=spec.data_root)
    score = evaluate(recovery, scenario.model, scenario.images, scenario.labels, num_classes=num_classes)
    every = evaluate(recover(scenario.observation, scenario.model, EVERY_BIN), scenario.model, scenario.images)
    recognisable = tuple(0.0 if math.isnan(p) else p for p in every.psnr)
    log.info("malicious %s on %s/%s B=%d x %d clients: %.3f recovered exactly, %.3f alone in their bins",
             spec.preset, spec.model, spec.dataset, spec.batch, spec.clients, score.recovered_fraction,
             score.singleton_fraction)
    return MaliciousOutcome(scenario=scenario, recovery=recovery, score=score, recognisable=recognisable)


@dataclass(frozen=True)
class Protection:
    """One row of the defenses table: ``defense`` ("none" or a ``fastleak.defenses`` name: a
    transform, dp_sgd, secure_aggregation) and its parameters (``clients`` for secure aggregation)."""

    defense: str
    params: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        known = ("none",) + defenses.names()
        if self.defense not in known:
            raise InvalidValueError(f"protection must be one of {', '.join(known)}, got {self.defense!r}")
        if self.defense != "none":
            defenses.get(self.defense).check_params(self.params)

    @property
    def label(self) -> str:
        return self.defense + "".join(f" {k}={v}" for k, v in self.params.items())

    def applies_to(self, spec: ExperimentSpec) -> bool:
        """Whether the defense applies to the spec's mode (the defenses registry says)."""
        return self.defense == "none" or defenses.get(self.defense).applies_to(spec.mode)

    def applied_to(self, spec: ExperimentSpec) -> ExperimentSpec:
        return spec if self.defense == "none" else spec.with_defense(self.defense, dict(self.params))


# Strengths chosen to show each defense's regime on MNIST with LeNet at B = 64 (RESULTS.md, "The
# malicious server"): noise and DP-SGD at a level the image survives and one it does not. A table
# leaves out the rows whose defense does not apply to its mode (DP-SGD under FedAvg).
DEFAULT_PROTECTIONS = (
    Protection("none"),
    Protection("clip", {"max_norm": 1.0}),
    Protection("prune", {"ratio": 0.5}),
    Protection("prune", {"ratio": 0.9}),
    Protection("quantize", {"bits": 8}),
    Protection("gaussian", {"sigma": 1e-6}),
    Protection("gaussian", {"sigma": 1e-5}),
    Protection("gaussian", {"sigma": 1e-4}),
    Protection("dp_sgd", {"clip": 1.0, "sigma": 0.0}),
    Protection("dp_sgd", {"clip": 1.0, "sigma": 1e-3}),
    Protection("dp_sgd", {"clip": 1.0, "sigma": 1.0}),
    Protection("secure_aggregation", {"clients": 4}),
    Protection("secure_aggregation", {"clients": 8}),
)


@dataclass(frozen=True)
class ProtectionRow:
    protection: Protection
    metrics: Mapping[str, Any]
    seconds: float


def protection_table(spec: ExperimentSpec, protections: Sequence[Protection] = DEFAULT_PROTECTIONS, *,
                     callback: Callable[[ProtectionRow], None] | None = None) -> tuple[ProtectionRow, ...]:
    """``run_malicious`` of ``spec`` under each protection (module docs) that applies to its mode (the
    others are left out, with a log message); ``callback`` gets each row."""
    if spec.threat != "malicious":
        raise InvalidValueError(f"spec.threat must be 'malicious' for a protection table, got {spec.threat!r}")
    rows = []
    for protection in protections:
        if not protection.applies_to(spec):
            log.info("protection %s left out: it does not apply to mode %r", protection.label, spec.mode)
            continue
        started = time.perf_counter()
        outcome = run_malicious(protection.applied_to(spec))
        row = ProtectionRow(protection, outcome.metrics(), time.perf_counter() - started)
        if callback:
            callback(row)
        rows.append(row)
    return tuple(rows)

