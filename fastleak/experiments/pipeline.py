"""Simulate a client on real data, recover its labels, attack, and evaluate the reconstruction."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from fastleak import data
from fastleak.attacks import AttackResult, attack
from fastleak.experiments.outcome import RunOutcome
from fastleak.experiments.scenario import Scenario, simulate
from fastleak.experiments.spec import ExperimentSpec
from fastleak.metrics.images import Evaluation, evaluate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Outcome(RunOutcome):
    """The honest threat's outcome: the attack's result and its evaluation against the true batch."""

    scenario: Scenario
    result: AttackResult
    evaluation: Evaluation

    def metrics(self) -> dict[str, Any]:
        """Image and label metrics, attack speed."""
        ev, res = self.evaluation, self.result
        labels = ev.labels
        return {"psnr": ev.psnr, "ssim": ev.ssim, "mse": ev.mse,
                "ln_acc": labels.ln_acc if labels else None, "le_acc": labels.le_acc if labels else None,
                "exact": labels.exact if labels else None, "label_method": res.label_method,
                "iterations": res.iterations, "attack_time_s": res.wall_time,
                "iterations_per_second": res.iterations_per_second}


def attack_iterations(spec: ExperimentSpec) -> int | None:
    """The optimisation steps ``run(spec)`` takes; None under the malicious threat (closed form)."""
    if spec.threat == "malicious":
        return None
    from fastleak.attacks.presets import configure

    return configure(spec.preset, spec.iterations, priors=spec.priors, **spec.attack_options)[0].iterations


def label_public_data(spec: ExperimentSpec, scenario):
    """The server's public data for recovered labels (``fastleak.labels.public.server_public``:
    ``spec.public_data``, by default the other split of the dataset where it can be used)."""
    from fastleak.labels.public import server_public
    from fastleak.models import final_linear

    public, line = server_public(spec.public_data, spec.dataset, spec.split, root=spec.data_root,
                                 num_classes=final_linear(scenario.model).out_features,
                                 input_shape=tuple(scenario.images.shape[1:]))
    if public is None:
        log.info("labels: %s", line)
    return public


def run(spec: ExperimentSpec, *, callback=None, checkpoint=None) -> RunOutcome:
    """Simulate, attack and evaluate; ``callback``/``checkpoint`` are passed to the attack.

    An ``Outcome``, or under the malicious threat a ``MaliciousOutcome`` (closed-form recovery: no
    iterations, so ``callback`` and ``checkpoint`` are not used).
    """
    if spec.threat == "malicious":
        from fastleak.experiments.malicious import run_malicious

        return run_malicious(spec)
    scenario = simulate(spec)
    labels = {"recover": "recover", "optimize": "optimize", "true": scenario.labels}[spec.attack_labels]
    options = {"label_method": spec.label_method, **spec.attack_options}
    public = label_public_data(spec, scenario) if spec.attack_labels == "recover" else None
    result = attack(scenario.observation, scenario.model, spec.preset,
                    labels=labels, label_public=public, restarts=spec.restarts, iterations=spec.iterations,
                    seed=spec.seed, device=spec.device, callback=callback, checkpoint=checkpoint, priors=spec.priors,
                    **options)
    evaluation = evaluate(result.images, scenario.images, result.labels, scenario.labels,
                          num_classes=data.num_classes(spec.dataset, root=spec.data_root))
    log.info("attack %s on %s/%s B=%d: PSNR %.2f dB, SSIM %.3f, LnAcc %.2f", spec.preset, spec.model, spec.dataset,
             spec.batch, evaluation.psnr, evaluation.ssim, evaluation.labels.ln_acc if evaluation.labels else -1)
    return Outcome(scenario=scenario, result=result, evaluation=evaluation)
