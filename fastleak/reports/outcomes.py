"""An experiment run into its folder: config.json, the run, then the report files of its outcome.

``record_run`` is the one path of a run from the command line (attack, demo, --resume), whatever
the threat model; ``write_outcome`` writes the files of any ``RunOutcome``, chosen by its type
(the files are listed in ``fastleak.reports.rundir``).
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Callable

import torch

from fastleak import experiments
from fastleak.errors import InvalidTypeError
from fastleak.experiments import ExperimentSpec, Outcome, RunOutcome
from fastleak.experiments.malicious import MaliciousOutcome
from fastleak.reports.figures import loss_plot, reconstruction_grid
from fastleak.reports.rundir import removed_if_it_fails_empty, write_config, write_json

GRID_SAMPLES = 32  # the malicious grid shows the first true samples over their matched recoveries


def _row_names(result) -> list[str] | None:
    """With a search, each row's candidate setting ("tv=0.001", and "#k" for its k-th restart)."""
    if result.search is None:
        return None
    per = result.history.shape[1] // len(result.search.candidates)
    return [", ".join(f"{k}={v:g}" for k, v in c.values.items()) + (f" #{r}" if per > 1 else "")
            for c in result.search.candidates for r in range(per)]


def record_run(spec: ExperimentSpec, run_dir: Path, *, created: bool = True,
               callback: Callable[[int, torch.Tensor], None] | None = None) -> RunOutcome:
    """Run ``spec`` into ``run_dir``: config.json first (what ``--resume`` reads), then
    ``fastleak.experiments.run`` (``callback`` gets the attack's progress; its checkpoint is
    ``run_dir/checkpoint.pt``), then every report file of the outcome. A failure removes a folder
    ``created`` for the run that holds nothing but config.json; Ctrl-C keeps it, checkpoint included."""
    write_config(run_dir, spec.as_dict())
    with removed_if_it_fails_empty(run_dir, created):
        outcome = experiments.run(spec, callback=callback, checkpoint=run_dir / "checkpoint.pt")
    write_outcome(run_dir, spec.as_dict(), outcome)
    return outcome


def write_outcome(run_dir: Path, spec_dict: dict[str, Any], outcome: RunOutcome) -> dict[str, Any]:
    """Write every report file of a finished run, by the outcome's type; returns the metrics.json payload."""
    return _write(outcome, run_dir, spec_dict)


@functools.singledispatch
def _write(outcome: RunOutcome, run_dir: Path, spec_dict: dict[str, Any]) -> dict[str, Any]:
    raise InvalidTypeError(f"no report files for a {type(outcome).__name__}; register a writer in "
                           "fastleak.reports.outcomes")


@_write.register
def _honest(outcome: Outcome, run_dir: Path, spec_dict: dict[str, Any]) -> dict[str, Any]:
    result, ev, scenario = outcome.result, outcome.evaluation, outcome.scenario
    write_config(run_dir, spec_dict, result.config.as_dict())
    metrics = {**ev.as_dict(), "wall_time_s": result.wall_time, "iterations": result.iterations,
               "iterations_per_second": result.iterations_per_second, "best_restart": result.best_restart,
               "restart_losses": result.restart_losses.tolist(), "resets": result.resets,
               "search": None if result.search is None else result.search.as_dict()}
    write_json(run_dir / "metrics.json", metrics)
    num_classes = int(max(scenario.labels.max(), result.labels.max()) + 1)
    true_counts = torch.bincount(scenario.labels, minlength=num_classes)
    rec_counts = torch.bincount(result.labels.cpu(), minlength=num_classes)
    counts = {str(c): [int(true_counts[c]), int(rec_counts[c])] for c in range(num_classes)
              if true_counts[c] or rec_counts[c]}
    write_json(run_dir / "labels.json", {"method": result.label_method, "true": sorted(scenario.labels.tolist()),
                                         "recovered": sorted(result.labels.tolist()), "counts": counts})
    order = torch.tensor(ev.order)
    captions = [f"{p:.1f} dB" for p in ev.psnr_per_image]
    reconstruction_grid(scenario.images, result.images[order], captions, run_dir / "grid.png")
    loss_plot(result.history_steps, result.history, run_dir / "loss.png",
              title=f"{result.config.name}: objective per restart", names=_row_names(result))
    return metrics


@_write.register
def _malicious(outcome: MaliciousOutcome, run_dir: Path, spec_dict: dict[str, Any]) -> dict[str, Any]:
    scenario, recovery, score = outcome.scenario, outcome.recovery, outcome.score
    write_config(run_dir, spec_dict)
    metrics = {**outcome.metrics(), "psnr_per_image": list(score.psnr),
               "bins": {"status": list(recovery.status), "failed_checks": [list(f) for f in recovery.failed_checks]}}
    write_json(run_dir / "metrics.json", metrics)
    recovered = recovery.labels.cpu() if recovery.labels is not None else None
    write_json(run_dir / "labels.json", {"method": spec_dict.get("label_method") if recovered is not None else None,
                                         "true": sorted(scenario.labels.tolist()),
                                         "recovered": sorted(recovered.tolist()) if recovered is not None else None})
    torch.save({"images": recovery.images.cpu(), "bins": recovery.bins}, run_dir / "recovered.pt")
    shown = min(len(scenario.images), GRID_SAMPLES)
    blank = torch.zeros_like(scenario.images[0])
    matches = torch.stack([recovery.images[m].cpu() if m >= 0 else blank for m in score.matched[:shown]])
    captions = [f"{p:.0f} dB" if p == p else "none" for p in score.psnr[:shown]]
    reconstruction_grid(scenario.images[:shown], matches, captions, run_dir / "grid.png")
    return metrics
