"""fastleak's side of the label comparison (``auto`` label counts), and the table of both.

    python -m benchmarks.peers.fastleak_labels [--cases runs/peers/labels/cases] [--only convnet_] [--threads 1]
        [--out runs/peers/labels/fastleak]
    python -m benchmarks.peers.fastleak_labels --table [--peer runs/peers/labels/breaching]
        [--out runs/peers/labels/fastleak]

Runs in fastleak's venv on the case files of ``label_cases``: ``fastleak.labels.counts`` with
method ``auto`` on an observation that carries the case's own gradient, the very tensors
breaching is given, and its batch size; for MNIST cases also with the server's public data, the
1,000 train digits of ``bench_labels.public_data`` (``fastleak auto+public``), one ``PublicData``
for all cases so that each model state and batch size is fitted once. ``--table`` scores both sides against the true labels as
bench_labels does, over the classes present in the truth or in the recovery: LnAcc is the share
of them whose count is exact, exact the share of batches whose whole label multiset is exact. One
markdown row per model, state and batch size, averaged over the trials; a cell reads
exact / LnAcc ("failed" where the strategy raised on every trial). A strategy that raised on every
case has no column; every error is listed under the table.
"""
from __future__ import annotations

import time
import math
from collections import defaultdict
from pathlib import Path

import torch

from benchmarks.peers.common import load, options, paired_results, run_record, selected_cases, start
from benchmarks.peers.fastleak_side import observation


PUBLIC = {"mnist": "mnist:train"}
_public_cache: dict[str, object] = {}


def public_for(dataset: str):
    """The server's public data for cases on ``dataset`` (None where its other split is not shipped)."""
    from benchmarks.bench_labels import public_data

    if dataset not in PUBLIC:
        return None
    if dataset not in _public_cache:
        _public_cache[dataset] = public_data(PUBLIC[dataset], 1000)
    return _public_cache[dataset]


def fitted(obs, model, public) -> dict:
    """What the public data fitted at this case's model state and batch size (cached by the call
    before): the miss probability per sample of the presence test, the noise model, and whether
    the case's evidence lies beyond the public batches' largest residual."""
    from fastleak.labels import LabelConfig, bayes
    from fastleak.labels.evidence import gather

    ev = gather([obs], model)
    cal = bayes.calibrate(ev, 0, LabelConfig(public=public), public)
    stats = cal.statistics
    g = stats.vectors(ev.grad_w, ev.grad_b if stats.has_bias else None, ev.num_samples)
    residual = float(bayes.best_residual(*stats.terms(g, ev.num_samples))[0])
    return {"miss_probability": math.exp(cal.log_miss), "noise": bayes.noise_name(cal.dof, cal.temperature),
            "residual": residual, "residual_limit": cal.residual_limit}


def calibration_table(cases: Path, ours: Path) -> str:
    """Per model, state and batch size with public data: the fitted miss probability per sample of the
    presence test, the noise model, and the share of cases whose evidence lay beyond the public
    batches' largest residual (their counts then rest on presence and the prior)."""
    rows: dict[tuple, list[dict]] = defaultdict(list)
    for path in sorted(ours.glob("*.pt")):
        mine = load(path)
        if "miss_probability" in mine:
            truth = load(cases / path.name)
            rows[(truth["model"], _round(truth["state"]), truth["batch"])].append(mine)
    lines = ["| model | state | B | cases | miss probability per sample | noise | beyond the public residuals |",
             "|---|---|---:|---:|---|---|---|"]
    for (model, rnd, batch), found in sorted(rows.items()):
        outside = sum(f["residual"] > f["residual_limit"] for f in found)
        lines.append(f"| {model} | round{rnd} | {batch} | {len(found)} | {found[0]['miss_probability']:.3f} | "
                     f"{found[0]['noise']} | {outside} of {len(found)} |")
    return "\n".join(lines)


def run(case_path: Path, out: Path) -> Path:
    from fastleak import labels

    case = load(case_path)
    model, obs = observation(case)
    start = time.perf_counter()
    found = labels.counts(obs, model, "auto", num_samples=case["batch"])
    seconds = time.perf_counter() - start
    record = {"case": case["name"], "labels": found.labels, "counts": found.counts, "method": found.method,
              "seconds": seconds, **run_record()}
    public = public_for(case["dataset"])
    if public is not None:
        with_public = labels.counts(obs, model, "auto", num_samples=case["batch"], public=public)
        record.update(public_counts=with_public.counts, public_method=with_public.method, **fitted(obs, model, public))
    path = out / f"{case['name']}.pt"
    torch.save(record, path)
    return path


def score(found: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """LnAcc and exact (0 or 1) of recovered counts against the true counts."""
    active = (truth > 0) | (found > 0)
    return float((found[active] == truth[active]).double().mean()), float(torch.equal(found, truth))


def _round(state: str) -> int:
    return -1 if state == "untrained" else int(state.removeprefix("round"))


def breaching_best(cases: Path, ours: Path, peer: Path) -> dict[tuple, tuple[float, str]]:
    """Per (model, round, label pattern, B) of the trained MNIST cases: the mean LnAcc of breaching's
    best strategy over the trials, and its name."""
    rows, _, strategies, _ = collect(cases, ours, peer)
    best = {}
    for (model, trained, rnd, dataset, pattern, batch), row in rows.items():
        peers = [(sum(v[0] for v in row[s]) / len(row[s]), s) for s in strategies if row.get(s)]
        if trained and peers:
            best[(model, rnd, pattern, batch)] = max(peers)
    return best


def table(cases: Path, ours: Path, peer: Path) -> str:
    return _table(*collect(cases, ours, peer))


def collect(cases: Path, ours: Path, peer: Path):
    """Per row key, each side's (LnAcc, exact) per trial; the methods auto chose; breaching's
    strategies; their errors."""
    rows: dict[tuple, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    chose: dict[tuple, set[str]] = defaultdict(set)
    strategies: list[str] = []
    errors: dict[str, list[str]] = defaultdict(list)
    for path, mine, other in paired_results(ours, peer):
        truth = load(cases / path.name)
        key = (truth["model"], truth["state"] != "untrained", _round(truth["state"]), truth["dataset"],
               truth.get("pattern", "random"), truth["batch"])
        counts = torch.bincount(truth["labels"], minlength=truth["num_classes"])
        rows[key]["fastleak auto"].append(score(mine["counts"].long(), counts))
        chose[key].add(mine["method"])
        if "public_counts" in mine:
            rows[key]["fastleak auto+public"].append(score(mine["public_counts"].long(), counts))
            chose[key].add(f"{mine['public_method']} (public)")
        strategies += [s for s in other["strategies"] if s not in strategies]
        for strategy, found in other["labels"].items():
            rows[key][strategy].append(score(torch.bincount(found, minlength=truth["num_classes"]), counts))
        for strategy, error in other["errors"].items():
            errors[strategy].append(error.splitlines()[0])
    return rows, chose, strategies, errors


def _table(rows, chose, strategies, errors) -> str:
    ran = [s for s in strategies if any(s in row for row in rows.values())]
    ours = ["fastleak auto+public", "fastleak auto"]
    columns = [*ours, *(f"breaching {s}" for s in ran), "best of breaching"]
    lines = ["| model | state (images) | labels | B | trials | " + " | ".join(columns) + " | auto chose |",
             "|---|---|---|---:|---:|" + "---|" * len(columns) + "---|"]
    for key in sorted(rows):
        model, _, rnd, dataset, pattern, batch = key
        state = "untrained" if rnd < 0 else f"round{rnd}"
        cells = []
        means = {}
        for strategy in [*ours, *ran]:
            scores = rows[key].get(strategy, [])
            ln, exact = (sum(v) / len(scores) for v in zip(*scores)) if scores else (None, None)
            means[strategy] = ln
            cells.append("-" if ln is None and strategy in ours else "failed" if ln is None else
                         f"{exact:.2f} / {ln:.2f}")
        peers = [(means[s], s) for s in ran if means[s] is not None]
        best = max(peers) if peers else None
        cells.append(f"{best[0]:.2f} {best[1]}" if best else "-")
        trials = len(rows[key]["fastleak auto"])
        lines.append(f"| {model} | {state} ({dataset}) | {pattern} | {batch} | {trials} | " + " | ".join(cells) +
                     f" | {', '.join(sorted(chose[key]))} |")
    if errors:
        lines += ["", "breaching strategies that raised (cases; the first error):", ""]
        for strategy in [s for s in strategies if s in errors]:
            first = errors[strategy][0]
            lines.append(f"- {strategy} ({len(errors[strategy])}): {first[:200]}{'...' if len(first) > 200 else ''}")
    return "\n".join(lines)


def main() -> None:
    args = options(__doc__.split("\n\n")[0], "runs/peers/labels/cases", "runs/peers/labels/fastleak",
                   peer="runs/peers/labels/breaching").parse_args()
    if args.table:
        print(table(Path(args.cases), Path(args.out), Path(args.peer)))
        fits = calibration_table(Path(args.cases), Path(args.out))
        if fits.count("\n") > 1:
            print("\nWhat the public data fitted (fastleak auto+public):\n")
            print(fits)
        return
    out = start(args)
    for case_path in selected_cases(args.cases, args.only):
        result = load(run(case_path, out))
        print(f"{case_path.stem}: {result['method']}, {1e3 * result['seconds']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
