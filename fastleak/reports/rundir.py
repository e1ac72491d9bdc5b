"""The run directory and its JSON files (format documented in the README).

runs/<timestamp>/
  config.json   {"version", "spec": ExperimentSpec fields, "attack_config": AttackConfig fields,
                 "torch", "fastleak"}: everything needed to reproduce the run
  metrics.json  {"version", "psnr", "ssim", "mse", "psnr_per_image", "ssim_per_image", "order",
                 "lpips", "labels": {"ln_acc", "le_acc", "exact"}, "wall_time_s",
                 "iterations", "iterations_per_second", "best_restart", "restart_losses", "resets"}
  labels.json   {"version", "method", "true": [...], "recovered": [...],
                 "counts": {"class": [true, recovered], ...}}
  grid.png      ground truth (top) and matched reconstructions (bottom) with PSNR captions
  loss.png      objective per restart against the step
  checkpoint.pt the attack checkpoint (used by --resume)

Under the malicious threat (closed-form recovery, no iterations) metrics.json holds
``fastleak.experiments.malicious.outcome_metrics`` plus "psnr_per_image" (per true sample),
"bins" ({"status", "failed_checks"} per bin), grid.png shows the first 32 true samples over
their matched recoveries (black: none), recovered.pt holds the recovered inputs and their bins,
and there is no loss.png or checkpoint.pt.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch

import fastleak
from fastleak._files import write_atomically
from fastleak.reports.figures import loss_plot, reconstruction_grid

REPORT_VERSION = 1


def fresh_run_path(root: str | os.PathLike = "runs") -> Path:
    """``root/<timestamp>`` (with a suffix when taken), not yet created."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(root) / stamp
    suffix = 1
    while path.exists():
        path = Path(root) / f"{stamp}-{suffix}"
        suffix += 1
    return path


def new_run_dir(root: str | os.PathLike = "runs") -> Path:
    path = fresh_run_path(root)
    path.mkdir(parents=True)
    return path


@contextmanager
def removed_if_it_fails_empty(run_dir: Path, created: bool) -> Iterator[Path]:
    """Remove ``run_dir`` when the run inside fails (Ctrl-C excepted) while the folder holds
    nothing but its config.json and was ``created`` for this run: a mistyped option leaves no
    folder behind, and a checkpoint or a result is never removed."""
    try:
        yield run_dir
    except Exception:
        if created and run_dir.is_dir() and {p.name for p in run_dir.iterdir()} <= {"config.json"}:
            shutil.rmtree(run_dir, ignore_errors=True)
        raise


def write_json(path: Path, payload: dict[str, Any]) -> None:
    text = json.dumps({"version": REPORT_VERSION, **payload}, indent=2, sort_keys=True) + "\n"
    write_atomically(path, lambda tmp: Path(tmp).write_text(text))


def write_config(run_dir: Path, spec_dict: dict[str, Any], attack_config: dict[str, Any] | None = None) -> None:
    write_json(run_dir / "config.json", {"spec": spec_dict, "attack_config": attack_config,
                                         "torch": torch.__version__, "fastleak": fastleak.__version__})


def write_outcome(run_dir: Path, spec_dict: dict[str, Any], outcome) -> dict[str, Any]:
    """Write every report file of a finished run; returns the metrics dictionary."""
    result, ev, scenario = outcome.result, outcome.evaluation, outcome.scenario
    write_config(run_dir, spec_dict, result.config.as_dict())
    metrics = {**ev.as_dict(), "wall_time_s": result.wall_time, "iterations": result.iterations,
               "iterations_per_second": result.iterations_per_second, "best_restart": result.best_restart,
               "restart_losses": result.restart_losses.tolist(), "resets": result.resets}
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
              title=f"{result.config.name}: objective per restart")
    return metrics


GRID_SAMPLES = 32


def write_malicious_outcome(run_dir: Path, spec_dict: dict[str, Any], outcome) -> dict[str, Any]:
    """Write the report files of a run under the malicious threat (module docs); returns the metrics."""
    from fastleak.experiments.malicious import outcome_metrics

    scenario, recovery, score = outcome.scenario, outcome.recovery, outcome.score
    write_config(run_dir, spec_dict)
    metrics = {**outcome_metrics(outcome), "psnr_per_image": list(score.psnr),
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
