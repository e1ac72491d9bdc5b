"""The trained-model grid: what leaks at which training round, from one command.

    python -m benchmarks.trained_grid                 # train the states, then labels and images
    python -m benchmarks.trained_grid --part labels   # or images; --quick for a smoke run

States (``trained_states.GRID``): the MNIST trainer's global model at rounds 0, 1, 5, 20 and the
final round (the first with >= 95% held-out accuracy), for the DLG LeNet and the width-16 ConvNet,
whose BatchNorm runs in train mode as a FedSGD client's does. Victim batches are held-out digits.

- Labels (``bench_labels --grid``): B = 1, 8, 32, 64; labels random and repeat:4; FedSGD and
  FedAvg with 1, 4 and 16 full-batch local steps; every method, ``auto``, and the population-oracle
  floor (``geng_bias`` with the dummies drawn from the victim's own distribution).
- Images (``bench_quality --only g``): the inverting, gradinversion and geng presets at B = 1, 4
  and 8 (random labels), FedSGD, labels recovered by the engine.

Both benchmarks read GRID; they take their usual options after it (e.g. ``--trials``).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from benchmarks import bench_labels, bench_quality
from benchmarks.trained_states import FINAL_ROUND, GRID, Grid


def build_states(grid: Grid = GRID) -> dict[str, dict]:
    """Train (or load from the cache) every state of the grid; their held-out accuracy and training cost."""
    infos = {}
    for model in grid.models:
        for r in grid.round_numbers(model):
            _, info = grid.trained(model, r)
            infos[f"{model}/round{r}"] = info
            print(f"{model} round {r}{' (final)' if r == FINAL_ROUND[model] else ''}: held-out accuracy "
                  f"{info['test_accuracy']:.3f}", flush=True)
    return infos


def label_summary(reports: list[dict]) -> str:
    """One markdown row per (model, state, protocol), from bench_labels JSON reports (a later report's
    methods replace an earlier one's in the same cell). Per cell: with public-data columns, LnAcc of
    ``auto`` with public data / without / of the better guess (equal counts or the public class
    frequencies) / of the set oracle where measured; otherwise LnAcc of ``auto`` / of the best single
    method (its name) / of the population oracle."""
    cells = [c for r in reports for c in r["cells"]]
    columns = sorted({(c["batch"], c["pattern"]) for c in cells})
    accuracy = {state: info["test_accuracy"] for r in reports for state, info in r.get("trained", {}).items()}
    lines = ["| model | round (held-out acc.) | protocol | " + " | ".join(f"B={b} {p}" for b, p in columns) + " |",
             "|---|---|---|" + "---|" * len(columns)]
    rows: dict[tuple, dict] = {}
    for c in cells:
        # later reports' methods override earlier ones' (a rerun of some columns)
        rows.setdefault((c["model"], int(c["state"][5:]), c["protocol"]), {}).setdefault(
            (c["batch"], c["pattern"]), {}).update(c["result"])
    order = {name: i for i, name in enumerate(GRID.models + GRID.protocols)}
    for (model, rnd, protocol), by_cell in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1],
                                                                              order.get(kv[0][2], 99))):
        entries = []
        for col in columns:
            res = by_cell.get(col)
            if res is None:
                entries.append("")
                continue
            if "auto+public" in res:
                guess = max(res[g]["LnAcc"] for g in bench_labels.GUESSES if g in res)
                oracle = f" / {res['set_oracle']['LnAcc']:.2f}" if "set_oracle" in res else ""
                entries.append(f"{res['auto+public']['LnAcc']:.2f} / {res['auto']['LnAcc']:.2f} / {guess:.2f}{oracle}")
                continue
            best_name, best = max(((m, v["LnAcc"]) for m, v in res.items() if m not in ("auto", "population")),
                                  key=lambda kv: kv[1])
            floor = f" / {res['population']['LnAcc']:.2f}" if "population" in res else ""
            entries.append(f"{res['auto']['LnAcc']:.2f} / {best:.2f} {best_name}{floor}")
        acc = accuracy.get(f"{model}/round{rnd}")
        state = f"{rnd} ({acc:.1%})" if acc is not None else str(rnd)
        lines.append(f"| {model} | {state} | {protocol} | " + " | ".join(entries) + " |")
    return "\n".join(lines) + "\n"


def posterior_summary(reports: list[dict]) -> str:
    """One markdown row per (model, state, protocol) of the public-data columns: the methods
    ``auto`` chose, the coverage of its intervals and of the posterior's over all (class, batch)
    pairs, and its seconds per observation at the largest batch once the state is fitted."""
    rows: dict[tuple, list[dict]] = {}
    for r in reports:
        for c in r["cells"]:
            if "auto+public" in c["result"]:
                rows.setdefault((c["model"], int(c["state"][5:]), c["protocol"]), []).append(c)
    lines = ["| model | round | protocol | auto chose | auto: 90% coverage | posterior: 90% coverage | "
             "s per observation (B) |", "|---|---|---|---|---|---|---|"]
    order = {name: i for i, name in enumerate(GRID.models + GRID.protocols)}

    def pooled(cells: list[dict], method: str) -> str:
        found = [c["result"][method] for c in cells if "coverage" in c["result"].get(method, {})]
        pairs = sum(f["pairs"] for f in found)
        return f"{sum(f['coverage'] * f['pairs'] for f in found) / pairs:.3f} ({pairs})" if pairs else "-"

    for (model, rnd, protocol), cells in sorted(rows.items(), key=lambda kv: (order.get(kv[0][0], 99), kv[0][1],
                                                                            order.get(kv[0][2], 99))):
        chose = sorted({m for c in cells for m in c["result"]["auto+public"].get("chose", [])})
        largest = max(cells, key=lambda c: c["batch"])
        lines.append(f"| {model} | {rnd} | {protocol} | {', '.join(chose)} | {pooled(cells, 'auto+public')} | "
                     f"{pooled(cells, 'posterior+public')} | "
                     f"{largest['result']['auto+public'].get('obs_seconds', float('nan')):.2f} ({largest['batch']}) |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("states", "labels", "images", "all", "summary"), default="all",
                   help="summary: print the label table of the JSON reports given with --reports")
    p.add_argument("--reports", nargs="*", default=[], help="bench_labels JSON reports for --part summary")
    p.add_argument("--quick", action="store_true", help="one trial per label cell, 50 attack iterations")
    p.add_argument("--out", default=os.path.join("runs", "grid"), help="folder for the JSON and markdown reports")
    p.add_argument("--device", default="cpu", help="device of the image attacks")
    a = p.parse_args(argv)
    if a.part == "summary":
        reports = []
        for path in a.reports:
            with open(path) as f:
                reports.append(json.load(f))
        print(label_summary(reports), end="")
        if any("auto+public" in c["result"] for r in reports for c in r["cells"]):
            print()
            print(posterior_summary(reports), end="")
        return 0
    os.makedirs(a.out, exist_ok=True)
    t0 = time.time()
    build_states()
    if a.part in ("labels", "all"):
        for model in GRID.models:
            bench_labels.main(["--grid", "--models", model, "--trials", "1" if a.quick else "5",
                               "--json", os.path.join(a.out, f"labels_{model}.json"),
                               "--markdown", os.path.join(a.out, f"labels_{model}.md")])
    if a.part in ("images", "all"):
        bench_quality.main(["--only", "g", "--device", a.device, "--json", os.path.join(a.out, "images.json")]
                           + (["--iterations", "50", "--restarts", "1"] if a.quick else []))
    print(f"grid: {time.time() - t0:.0f} s; reports in {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
