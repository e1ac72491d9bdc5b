"""Running an experiment from the command line: progress, run folder, summary."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

import torch

from fastleak.cli.errors import interrupted


class Progress:
    """A tqdm bar over attack steps, opened at the first report (so set-up errors print cleanly).
    ``total``: the number of steps, or a function that gives it, asked at the first report (when the
    attack has checked its options)."""

    def __init__(self, total: int | Callable[[], int | None], desc: str) -> None:
        self.total, self.desc, self.bar, self.last = total, desc, None, 0

    def __call__(self, step: int, losses: torch.Tensor) -> None:
        from tqdm import tqdm

        if self.bar is None:  # starting at the first report, the rate counts only steps timed by the bar
            total = self.total() if callable(self.total) else self.total
            self.bar = tqdm(total=total or None, desc=self.desc, unit="it", dynamic_ncols=True, initial=step)
        else:
            self.bar.update(step - self.last)
        self.last = step
        self.bar.set_postfix(loss=f"{float(losses.min()):.4g}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def execute(spec, run_dir: Path, thread_policy: str, created: bool = True, command: str = "attack") -> int:
    """Run ``spec`` into ``run_dir`` (``fastleak.reports.record_run``: the run, then its files), then print
    its summary; the one path of attack, demo and --resume, whatever the threat model."""
    from fastleak.experiments import attack_iterations
    from fastleak.reports import record_run

    progress = Progress(lambda: attack_iterations(spec), f"{spec.preset} on {spec.model}/{spec.dataset}")
    try:
        outcome = record_run(spec, run_dir, created=created, callback=progress)
    except KeyboardInterrupt:
        progress.close()
        saved = "checkpoint saved in" if (run_dir / "checkpoint.pt").exists() else "settings saved in"
        return interrupted(f"{saved} {run_dir}", f"resume with: fastleak {command} --resume {run_dir}")
    finally:
        progress.close()
    print("\n".join(summary(outcome, spec, run_dir, thread_policy)))
    return 0


def summary(outcome, spec, run_dir: Path, thread_policy: str) -> list[str]:
    """The lines the command line prints after a run, by the outcome's type: a plain sentence, then a table."""
    lines = _summaries().get(type(outcome))
    if lines is None:
        raise TypeError(f"no summary for a {type(outcome).__name__}")
    return lines(outcome, spec, run_dir, thread_policy)


@functools.cache
def _summaries() -> dict[type, Callable[..., list[str]]]:
    from fastleak.experiments import Outcome
    from fastleak.experiments.malicious import MaliciousOutcome

    return {Outcome: _honest_summary, MaliciousOutcome: _malicious_summary}


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max(len(k) for k, _ in rows)
    return [f"{key:<{width}}  {value}" for key, value in rows]


def _restarts(spec, res) -> str:
    from fastleak.attacks.search import default_restarts

    count = spec.restarts if spec.restarts is not None else default_restarts(getattr(res.config, "search", {}))
    return f"{count} restart{'s' if count > 1 else ''}{' per candidate' if res.search else ''}"


def _honest_summary(outcome, spec, run_dir: Path, thread_policy: str) -> list[str]:
    from fastleak import models

    ev, res = outcome.evaluation, outcome.result
    options = " ".join(f"{k}={v}" for k, v in spec.model_options.items())
    batchnorm = f", BatchNorm in {spec.client_bn} mode" if models.has_batchnorm(outcome.scenario.model) else ""
    return [headline(outcome.scenario.observation.kind, ev.psnr_per_image, ev.labels.ln_acc), "", *_table([
        ("attack", f"{spec.preset} ({spec.mode}), {_restarts(spec, res)}, {res.iterations} iterations"),
        ("model / data", f"{spec.model}{f' ({options})' if options else ''} / {spec.dataset}, batch {spec.batch} "
                         f"({spec.labels}){batchnorm}"),
        ("labels", f"true {sorted(outcome.scenario.labels.tolist())}  recovered {sorted(res.labels.tolist())}"
                   f"  [{res.label_method}]"),
        ("label accuracy", f"LnAcc {ev.labels.ln_acc:.2f}  LeAcc {ev.labels.le_acc:.2f}  "
                           f"exact {'yes' if ev.labels.exact else 'no'}"),
        *_search_rows(res.search),
        ("PSNR", f"{ev.psnr:.2f} dB (per image: {', '.join(f'{p:.1f}' for p in ev.psnr_per_image)})"),
        ("SSIM", f"{ev.ssim:.3f}"),
        ("speed", f"{res.iterations_per_second:.1f} it/s, {res.wall_time:.1f} s on {spec.device}, {thread_policy}"),
        ("outputs", str(run_dir))])]


def _search_rows(report) -> list[tuple[str, str]]:
    """What a search chose and the gradient distance every candidate reached (none without a search)."""
    if report is None:
        return []

    def values(v) -> str:
        return " ".join(f"{k}={x:g}" for k, x in v.items())

    tried = ", ".join(f"{values(c.values)}: {c.score:.3g}" + ("" if c.dropped_at is None else f" (to {c.dropped_at})")
                      for c in report.candidates)
    return [("chosen", f"{values(report.chosen)} of {len(report.candidates)} candidates, by {report.select}"),
            ("candidates", tried)]


def _malicious_summary(outcome, spec, run_dir: Path, thread_policy: str) -> list[str]:
    from fastleak.malicious import EXACT_PSNR
    from fastleak.metrics.images import RECOGNISABLE_PSNR

    metrics = outcome.metrics()
    n = metrics["samples"]
    exact = round(metrics["recovered_fraction"] * n)
    batches = f"{spec.clients} clients' batches of {spec.batch}" if spec.clients > 1 else f"a batch of {spec.batch}"
    options = " ".join(f"{k}={v}" for k, v in spec.attack_options.items())
    block = outcome.scenario.model.block
    defense = spec.defense + "".join(f" {k}={v}" for k, v in spec.defense_params.items()) if spec.defense else "none"
    return [f"From {batches}, the malicious server recovered {exact} of the {n} private images exactly "
            f"(PSNR >= {EXACT_PSNR:.0f} dB) in closed form.", "", *_table([
                ("attack", f"{spec.preset}{f' ({options})' if options else ''}: {len(outcome.recovery.status)} "
                           f"{'bins' if hasattr(block, 'bin_intervals') else 'trap rows'} in front of {spec.model}, "
                           f"{spec.mode}"
                           + (f", secure aggregation over {spec.clients} clients" if spec.clients > 1 else "")),
                ("data", f"{spec.dataset}, {n} images ({spec.labels} labels)"),
                ("defense", defense),
                ("bins", f"{metrics['single_bins']} single, "
                         + (f"{metrics['peeled_bins']} peeled, " if metrics.get("peeled_bins") else "")
                         + f"{metrics['mixed_bins']} mixed, "
                         f"{metrics['empty_bins']} empty"),
                ("recovered", f"{exact} exact of {n} ({metrics['recovered_fraction']:.1%}); alone in their bin: "
                              f"{metrics['singleton_fraction']:.1%}; recognisable (>= {RECOGNISABLE_PSNR:.0f} dB) "
                              f"among every bin's input: {metrics['recognisable_fraction']:.1%}; false: "
                              f"{metrics['false_images']}"),
                ("labels", "not recovered" if metrics["ln_acc"] is None else
                 f"LnAcc {metrics['ln_acc']:.2f}  LeAcc {metrics['le_acc']:.2f} [{spec.label_method}]"),
                ("speed", f"recovery {metrics['recovery_time_s']:.3f} s on {spec.device}, {thread_policy}"),
                ("outputs", str(run_dir))])]


def headline(kind: str, psnr_per_image: list[float], ln_acc: float) -> str:
    """One plain sentence: what the server got from this client."""
    from fastleak.metrics.images import RECOGNISABLE_PSNR

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
