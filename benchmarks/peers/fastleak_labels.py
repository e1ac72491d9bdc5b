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
        record.update(public_counts=with_public.counts, public_method=with_public.method)
    path = out / f"{case['name']}.pt"
    torch.save(record, path)
    return path


def score(found: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """LnAcc and exact (0 or 1) of recovered counts against the true counts."""
    active = (truth > 0) | (found > 0)
    return float((found[active] == truth[active]).double().mean()), float(torch.equal(found, truth))


def _round(state: str) -> int:
    return -1 if state == "untrained" else int(state.removeprefix("round"))


def table(cases: Path, ours: Path, peer: Path) -> str:
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
        return
    out = start(args)
    for case_path in selected_cases(args.cases, args.only):
        result = load(run(case_path, out))
        print(f"{case_path.stem}: {result['method']}, {1e3 * result['seconds']:.1f} ms", flush=True)


if __name__ == "__main__":
    main()
