"""fastleak's side of the label comparison (``auto`` label counts), and the table of both.

    python -m benchmarks.peers.fastleak_labels [--cases runs/peers/labels/cases] [--only convnet_] [--threads 1]
        [--out runs/peers/labels/fastleak]
    python -m benchmarks.peers.fastleak_labels --table [--peer runs/peers/labels/breaching]
        [--out runs/peers/labels/fastleak]

Runs in fastleak's venv on the case files of ``label_cases``: ``fastleak.labels.counts`` with
method ``auto`` on an observation that carries the case's own gradient, the very tensors
breaching is given, and its batch size. ``--table`` scores both sides against the true labels as
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


def run(case_path: Path, out: Path) -> Path:
    from fastleak import labels

    case = load(case_path)
    model, obs = observation(case)
    start = time.perf_counter()
    found = labels.counts(obs, model, "auto", num_samples=case["batch"])
    seconds = time.perf_counter() - start
    path = out / f"{case['name']}.pt"
    torch.save({"case": case["name"], "labels": found.labels, "counts": found.counts, "method": found.method,
                "seconds": seconds, **run_record()}, path)
    return path


def score(found: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    """LnAcc and exact (0 or 1) of recovered counts against the true counts."""
    active = (truth > 0) | (found > 0)
    return float((found[active] == truth[active]).double().mean()), float(torch.equal(found, truth))


def table(cases: Path, ours: Path, peer: Path) -> str:
    rows: dict[tuple, dict[str, list[tuple[float, float]]]] = defaultdict(lambda: defaultdict(list))
    chose: dict[tuple, set[str]] = defaultdict(set)
    strategies: list[str] = []
    errors: dict[str, list[str]] = defaultdict(list)
    for path, mine, other in paired_results(ours, peer):
        truth = load(cases / path.name)
        key = (truth["model"], truth["state"] != "untrained", truth["state"], truth["dataset"], truth["batch"])
        counts = torch.bincount(truth["labels"], minlength=truth["num_classes"])
        rows[key]["fastleak auto"].append(score(mine["counts"].long(), counts))
        chose[key].add(mine["method"])
        strategies += [s for s in other["strategies"] if s not in strategies]
        for strategy, found in other["labels"].items():
            rows[key][strategy].append(score(torch.bincount(found, minlength=truth["num_classes"]), counts))
        for strategy, error in other["errors"].items():
            errors[strategy].append(error.splitlines()[0])
    ran = [s for s in strategies if any(s in row for row in rows.values())]
    columns = ["fastleak auto", *(f"breaching {s}" for s in ran)]
    lines = ["| model | state (images) | B | trials | " + " | ".join(columns) + " | auto chose |",
             "|---|---|---:|---:|" + "---|" * len(columns) + "---|"]
    for key in sorted(rows):
        model, _, state, dataset, batch = key
        cells = []
        for strategy in ["fastleak auto", *ran]:
            scores = rows[key].get(strategy, [])
            ln, exact = (sum(v) / len(scores) for v in zip(*scores)) if scores else (None, None)
            cells.append("failed" if ln is None else f"{exact:.2f} / {ln:.2f}")
        trials = len(rows[key]["fastleak auto"])
        lines.append(f"| {model} | {state} ({dataset}) | {batch} | {trials} | " + " | ".join(cells) +
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
