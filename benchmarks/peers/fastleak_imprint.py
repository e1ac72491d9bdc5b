"""fastleak's side of the imprint comparison with breaching, and the table of both sides.

    python -m benchmarks.peers.fastleak_imprint [--cases runs/peers/imprint/cases] [--only mnist_] [--repeat 5]
        [--threads 1] [--out runs/peers/imprint/fastleak] [--tree DIR]
    python -m benchmarks.peers.fastleak_imprint --table [--peer runs/peers/imprint/breaching] [--before DIRS] ...

``fastleak.malicious.recover`` on each case of ``imprint_cases``: the model rebuilt from the
case's parameters and an observation sharing the case's gradients. Timed as breaching's side is,
the median of ``--repeat`` calls after one untimed call, with ``labels=None`` (the recovery alone;
breaching's imprint attack recovers no labels) and again with the default label recovery.

``--table`` scores both sides' images with one scorer: every returned image that is not all zeros
(breaching pads with zeros up to the batch size) is matched to the true batch by the Hungarian
algorithm on MSE, values clamped to [0, 1]; a true image is recovered exactly when its match
reaches 60 dB PSNR (capped at 100 dB), recognisably at 18 dB; a returned image whose match is
below 60 dB is a false image. Rows are means over seeds; times are medians over seeds.

``--tree DIR`` runs another fastleak source tree (e.g. an earlier commit, ``git archive COMMIT |
tar -x -C DIR``, with its compiled library built or copied in) instead of the installed one;
``--table --before DIRS`` adds that side's figures. ``--out``, ``--peer`` and ``--before`` take
several result folders separated by commas, one per round of both sides run in turn
(``compare_imprint.sh`` with ``ROUNDS``): a case's time is then the smallest of its rounds' medians,
which discounts rounds slowed by other work on the machine.
"""
from __future__ import annotations

import importlib.util
import math
import statistics
import sys
from pathlib import Path

import torch

from benchmarks.peers.common import load, median_seconds, options, run_record, selected_cases, start
from benchmarks.peers.imprint_cases import model_of, observation_of

EXACT_PSNR, RECOGNISABLE_PSNR, PSNR_CAP = 60.0, 18.0, 100.0
SIDES = ("fastleak", "breaching")


def run(case_path: Path, out: Path, repeat: int) -> Path:
    from fastleak import malicious

    case = load(case_path)
    model = model_of(case)
    obs = observation_of(case, model)
    alone, _, rec = median_seconds(lambda: malicious.recover(obs, model, malicious.RecoveryConfig(labels=None)),
                                   repeat)
    with_labels, _, _ = median_seconds(lambda: malicious.recover(obs, model, malicious.RecoveryConfig()), repeat)
    target = out / case_path.name
    torch.save({"images": rec.images.detach().cpu(), "seconds": alone, "seconds_with_labels": with_labels,
                "status": rec.status, **run_record()}, target)
    return target


def matched_psnr(images: torch.Tensor, truth: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Per true image [B], the PSNR of its Hungarian match among the non-zero ``images`` (nan: none left),
    and how many non-zero images there were."""
    from scipy.optimize import linear_sum_assignment

    from fastleak.metrics import psnr

    true = truth.to(torch.float64).clamp(0, 1).flatten(1)
    returned = images.to(torch.float64).clamp(0, 1).flatten(1)
    returned = returned[returned.abs().sum(1) > 0]
    values = torch.full((len(true),), math.nan, dtype=torch.float64)
    if len(returned):
        cost = ((true.pow(2).sum(1, keepdim=True) + returned.pow(2).sum(1) - 2 * true @ returned.T)
                / true.shape[1]).clamp_min(0)
        rows, cols = linear_sum_assignment(cost.numpy())
        matched = psnr(returned[cols][:, None, None], true[rows][:, None, None]).clamp(max=PSNR_CAP)
        values[torch.as_tensor(rows)] = matched.to(values)
    return values, len(returned)


def score(images: torch.Tensor, truth: torch.Tensor) -> dict:
    """Counts of ``images`` [n, ...] against ``truth`` [B, ...]: returned, exact, recognisable, false (module docs)."""
    values, returned = matched_psnr(images, truth)
    exact = int((values >= EXACT_PSNR).sum())
    return {"returned": returned, "exact": exact, "recognisable": int((values >= RECOGNISABLE_PSNR).sum()),
            "false": returned - exact}


def case_row(path: Path, folders: dict[str, list[Path]]) -> dict:
    case = load(path)
    row = {"key": (case["dataset"], case["batch"], case["bins"], case["structure"]),
           "alone": float(case["alone"].double().mean())}
    for side, rounds in folders.items():
        results = [load(folder / path.name) for folder in rounds]
        if "error" in results[0]:
            row[side] = {"error": results[0]["error"]}
            continue
        row[side] = {**score(results[0]["images"], case["images"]), "seconds": min(r["seconds"] for r in results),
                     "seconds_with_labels": min(r.get("seconds_with_labels") or math.inf for r in results)}
    return row


def pair(rows: list[dict], key: str, batch: int, fmt: str, sides: tuple[str, ...] = SIDES) -> str:
    cells = []
    for side in sides:
        done = [r[side] for r in rows if "error" not in r[side]]
        cells.append(format(statistics.mean(d[key] / batch for d in done), fmt) if done else "failed")
    return " / ".join(cells)


def milliseconds(rows: list[dict], side: str, key: str = "seconds") -> float:
    done = [r[side][key] for r in rows if "error" not in r[side]]
    return 1000 * statistics.median(done) if done else math.nan


def table_line(key: tuple, rows: list[dict], sides: tuple[str, ...]) -> str:
    dataset, batch, bins, structure = key
    ms = {side: milliseconds(rows, side) for side in sides}
    failures = sum("error" in r["breaching"] for r in rows)
    line = (f"| {dataset} | {batch} | {bins} | {structure} | {len(rows)} | "
            f"{statistics.mean(r['alone'] for r in rows):.3f} | {pair(rows, 'exact', batch, '.3f', sides)} | "
            f"{pair(rows, 'recognisable', batch, '.3f')} | {pair(rows, 'returned', 1, '.1f', sides)} | "
            f"{pair(rows, 'false', 1, '.1f', sides)} | {' / '.join(f'{ms[s]:.1f}' for s in sides)} | "
            f"{ms['breaching'] / ms['fastleak']:.2f} | ")
    if "before" in sides:
        line += f"{ms['before'] / ms['fastleak']:.1f} | "
    return line + f"{milliseconds(rows, 'fastleak', 'seconds_with_labels'):.1f} | {failures} |"


def folders(text: str | Path) -> list[Path]:
    return [Path(p) for p in str(text).split(",") if p]


def table(cases: Path, ours: str | Path, peer: str | Path, before: str | Path | None = None) -> str:
    sides = SIDES + (("before",) if before else ())
    groups: dict[tuple, list[dict]] = {}
    errors = []
    given = {"fastleak": folders(ours), "breaching": folders(peer), **({"before": folders(before)} if before else {})}
    for path in sorted(cases.glob("*.pt")):
        row = case_row(path, given)
        groups.setdefault(row["key"], []).append(row)
        errors += [f"- {path.stem} ({side}): {row[side]['error']}" for side in sides if "error" in row[side]]
    names = " / ".join(sides)
    lines = [f"| data | B | K | structure | seeds | alone in their bin | exact: {names} | "
             "recognisable: fastleak / breaching | "
             f"images returned: {names} | false images: {names} | ms per batch: {names} | "
             "breaching / fastleak time | " + ("before / fastleak time | " if before else "")
             + "fastleak ms with labels | breaching failures |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---:|" if before else "") + "---:|---:|"]
    order = {"mnist": 0, "cifar": 1}
    for key in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1], k[3], k[2])):
        lines.append(table_line(key, groups[key], sides))
    lines += ["", f"Fractions of B, means over seeds; exact: matched PSNR >= {EXACT_PSNR:g} dB, recognisable: "
              f">= {RECOGNISABLE_PSNR:g} dB; images returned: non-zero images (breaching pads with zeros to B); "
              "false: returned images matching no true image exactly; times: medians over seeds of each case's "
              "median call (the smallest over rounds), labels off unless stated."]
    if errors:
        lines += ["", "Failures:", *errors]
    return "\n".join(lines)


def use_tree(tree: Path) -> None:
    """Make ``import fastleak`` load the package of source tree ``tree`` (before anything imports it)."""
    init = tree.resolve() / "fastleak" / "__init__.py"
    spec = importlib.util.spec_from_file_location("fastleak", init, submodule_search_locations=[str(init.parent)])
    module = importlib.util.module_from_spec(spec)
    sys.modules["fastleak"] = module
    spec.loader.exec_module(module)


def main() -> None:
    ap = options(__doc__.split("\n\n")[0], "runs/peers/imprint/cases", "runs/peers/imprint/fastleak",
                 peer="runs/peers/imprint/breaching")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per case, after one untimed call")
    ap.add_argument("--tree", default=None, help="run the fastleak of this source tree (default: the installed one)")
    ap.add_argument("--before", default=None, help="with --table: the results of --tree runs, as a third side")
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.cases), args.out, args.peer, args.before))
        return
    if args.tree:
        use_tree(Path(args.tree))
    out = start(args)
    for path in selected_cases(args.cases, args.only):
        print(run(path, out, args.repeat), flush=True)


if __name__ == "__main__":
    main()
