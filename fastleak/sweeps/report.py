"""Summaries of a sweep results file: tables grouped by the varied settings, and plots.

The varied settings are found in the records themselves: every setting (dict fields flattened
to ``field.key``) that takes more than one value among the jobs' last records. Jobs that differ
only in an averaged setting (``seed`` by default) form one row. Means are over ok jobs.
"""
from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastleak._files import write_atomically
from fastleak.errors import InvalidValueError
from fastleak.sweeps.grid import DICT_FIELDS
from fastleak.sweeps.results import JobResult, latest, read_results

AVERAGED = ("seed",)
# (metric key, column title, format)
COLUMNS = (("psnr", "PSNR (dB)", "{:.2f}"), ("ssim", "SSIM", "{:.3f}"), ("ln_acc", "LnAcc", "{:.2f}"),
           ("le_acc", "LeAcc", "{:.2f}"), ("exact", "exact", "{:.0%}"),
           ("recovered_fraction", "recovered exactly", "{:.1%}"), ("singleton_fraction", "alone in their bin", "{:.1%}"),
           ("recognisable_fraction", "recognisable", "{:.1%}"), ("wall_time_s", "time (s)", "{:.1f}"))
# Shown only when some job has them: the malicious threat's (fastleak.experiments.malicious.MaliciousOutcome.metrics).
OPTIONAL_COLUMNS = ("ssim", "recovered_fraction", "singleton_fraction", "recognisable_fraction")


def flatten(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings with dict fields spread into ``field.key`` entries."""
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name in DICT_FIELDS and isinstance(value, dict):
            out.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            out[name] = value
    return out


def _id(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def _order(value: Any) -> tuple:
    if value is None:
        return (0, 0.0, "")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (1, float(value), "")
    return (2, 0.0, _id(value))


def show(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, str) else _id(value)


@dataclass(frozen=True)
class Row:
    """One setting of the varied keys: job counts and metric means (None without ok jobs)."""

    setting: dict[str, Any]
    ok: int
    failed: int
    means: dict[str, float | None]
    stds: dict[str, float | None]

    def label(self) -> str:
        return ", ".join(f"{k}={show(v)}" for k, v in self.setting.items() if v is not None) or "all jobs"


@dataclass(frozen=True)
class Summary:
    varied: tuple[str, ...]
    averaged: tuple[str, ...]
    rows: tuple[Row, ...]
    failures: tuple[JobResult, ...]

    def columns(self) -> tuple[tuple[str, str, str], ...]:
        return tuple(c for c in COLUMNS if c[0] not in OPTIONAL_COLUMNS
                     or any(row.means[c[0]] is not None for row in self.rows))

    def table(self) -> str:
        """The rows as a markdown table."""
        columns = self.columns()
        titles = [*self.varied, "jobs ok", *(title for _, title, _ in columns)]
        lines = ["| " + " | ".join(titles) + " |",
                 "|" + "|".join("---" if i < len(self.varied) else "---:" for i in range(len(titles))) + "|"]
        for row in self.rows:
            cells = [show(row.setting[k]) for k in self.varied] + [f"{row.ok}/{row.ok + row.failed}"]
            for key, _, fmt in columns:
                mean, std = row.means[key], row.stds[key]
                cell = "-" if mean is None else fmt.format(mean)
                if std is not None and key == "psnr":
                    cell += f" ± {fmt.format(std)}"
                cells.append(cell)
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def markdown(self, title: str) -> str:
        ok = sum(r.ok for r in self.rows)
        failed = sum(r.failed for r in self.rows)
        parts = [f"# {title}", "",
                 f"{ok + failed} jobs: {ok} ok, {failed} failed. Rows group the jobs by the varied settings"
                 + (f"; averaged over {', '.join(self.averaged)}" if self.averaged else "")
                 + ". Means over ok jobs; PSNR ± its standard deviation.", "", self.table()]
        if self.failures:
            parts += ["", "## Failed jobs", "", "| key | setting | attempts | error |", "|---|---|---:|---|"]
            for r in self.failures:
                setting = ", ".join(f"{k}={show(v)}" for k, v in flatten(r.settings).items()
                                    if k in self.varied or k in self.averaged)
                error = (r.error or "").replace("|", "\\|").replace("\n", " ")
                parts.append(f"| {r.key[:12]} | {setting} | {r.attempts} | {error} |")
        return "\n".join(parts) + "\n"


def _metric(result: JobResult, key: str) -> Any:
    return result.wall_time_s if key == "wall_time_s" else (result.metrics or {}).get(key)


def summarize(results: Iterable[JobResult], *, averaged: Sequence[str] = AVERAGED) -> Summary:
    """Group the last record of every key by the varied settings; see the module docstring."""
    records = list(latest(results).values())
    flat = [flatten(r.settings) for r in records]
    names = list(dict.fromkeys(k for f in flat for k in f))
    varied = tuple(k for k in names if len({_id(f.get(k)) for f in flat}) > 1 and k not in averaged)
    present_averaged = tuple(k for k in averaged if len({_id(f.get(k)) for f in flat}) > 1)
    groups: dict[tuple[str, ...], list[tuple[dict[str, Any], JobResult]]] = {}
    for f, r in zip(flat, records):
        groups.setdefault(tuple(_id(f.get(k)) for k in varied), []).append((f, r))
    rows = []
    for members in groups.values():
        setting = {k: members[0][0].get(k) for k in varied}
        ok = [r for _, r in members if r.ok]
        means, stds = {}, {}
        for key, _, _ in COLUMNS:
            values = [float(v) for v in (_metric(r, key) for r in ok) if v is not None]
            means[key] = statistics.fmean(values) if values else None
            stds[key] = statistics.stdev(values) if len(values) > 1 else None
        rows.append(Row(setting=setting, ok=len(ok), failed=len(members) - len(ok), means=means, stds=stds))
    rows.sort(key=lambda row: tuple(_order(row.setting[k]) for k in varied))
    return Summary(varied=varied, averaged=present_averaged, rows=tuple(rows),
                   failures=tuple(r for r in records if not r.ok))


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def numeric_keys(summary: Summary) -> tuple[str, ...]:
    """Varied settings with at least two distinct numeric values: candidates for an x axis."""
    return tuple(k for k in summary.varied
                 if len({row.setting[k] for row in summary.rows if _numeric(row.setting[k])}) > 1)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_by_setting(summary: Summary, path: str | os.PathLike) -> None:
    """Horizontal bars: mean PSNR of every row, with its standard deviation."""
    plt = _pyplot()
    rows = [row for row in summary.rows if row.means["psnr"] is not None]
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.35 * max(len(rows), 1)), dpi=100)
    ax.barh(range(len(rows)), [row.means["psnr"] for row in rows],
            xerr=[row.stds["psnr"] or 0.0 for row in rows], color="tab:blue", alpha=0.8)
    ax.set_yticks(range(len(rows)), [row.label() for row in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("mean PSNR (dB)")
    ax.set_title("PSNR per setting")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_against(summary: Summary, key: str, path: str | os.PathLike) -> None:
    """Mean PSNR and LnAcc against the numeric setting ``key``, one line per other setting."""
    plt = _pyplot()
    rows = [row for row in summary.rows if _numeric(row.setting[key])]
    others = [k for k in summary.varied if k != key and len({_id(row.setting[k]) for row in rows}) > 1]
    lines: dict[str, list[Row]] = {}
    for row in rows:
        lines.setdefault(", ".join(f"{k}={show(row.setting[k])}" for k in others) or "all", []).append(row)
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    for label, members in lines.items():
        members.sort(key=lambda row: row.setting[key])
        x = [row.setting[key] for row in members]
        for ax, metric in zip(axes, ("psnr", "ln_acc")):
            y = [math.nan if row.means[metric] is None else row.means[metric] for row in members]
            err = [row.stds[metric] or 0.0 for row in members]
            ax.errorbar(x, y, yerr=err, marker="o", capsize=3, label=label)
    values = [row.setting[key] for row in rows]
    for ax, title in zip(axes, ("mean PSNR (dB)", "mean LnAcc")):
        if min(values) > 0 and max(values) / min(values) >= 50:
            ax.set_xscale("log")
        ax.set_xlabel(key)
        ax.set_ylabel(title)
        ax.grid(alpha=0.3)
    axes[1].set_ylim(-0.05, 1.05)
    if len(lines) > 1:
        axes[0].legend(fontsize=7)
    fig.suptitle(f"against {key}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


@dataclass(frozen=True)
class ReportFiles:
    summary: Summary
    markdown: Path
    plots: tuple[Path, ...]


def default_report_dir(results_path: str | os.PathLike) -> Path:
    path = Path(results_path)
    return path.with_name(f"{path.stem}_report")


def write_report(results_path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> ReportFiles:
    """Write ``summary.md``, ``psnr_by_setting.png`` and ``psnr_vs_<setting>.png`` for every
    numeric varied setting into ``out_dir`` (default ``<results stem>_report`` beside it)."""
    if not Path(results_path).exists():
        raise InvalidValueError(f"results file {os.fspath(results_path)!r} does not exist")
    results = read_results(results_path)
    if not results:
        raise InvalidValueError(f"results file {os.fspath(results_path)!r} holds no job records")
    out = Path(out_dir) if out_dir is not None else default_report_dir(results_path)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(results)
    markdown = out / "summary.md"
    text = summary.markdown(f"Sweep report: {Path(results_path).name}")
    write_atomically(markdown, lambda tmp: Path(tmp).write_text(text))
    plots = []
    if any(row.means["psnr"] is not None for row in summary.rows):
        plots.append(out / "psnr_by_setting.png")
        plot_by_setting(summary, plots[-1])
        for key in numeric_keys(summary):
            plots.append(out / f"psnr_vs_{key.replace('.', '_')}.png")
            plot_against(summary, key, plots[-1])
    return ReportFiles(summary=summary, markdown=markdown, plots=tuple(plots))
