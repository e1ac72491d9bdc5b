"""fastleak's side of the malicious-server comparison, and the table of both sides.

    .venv/bin/python benchmarks/peers/fastleak_malicious.py [--cases runs/peers/malicious/cases] [--repeat 5]
        [--out runs/peers/malicious/fastleak]
    .venv/bin/python benchmarks/peers/fastleak_malicious.py --table [--peer runs/peers/malicious/breaching] ...

``fastleak.malicious.recover`` (labels off: breaching's imprint attack recovers none either) on
each case of ``malicious_cases.py``, timed as breaching's side is: the median of ``--repeat``
calls after one untimed call. ``--table`` scores both sides' images the same way: every returned
image that is not all zeros (breaching pads with zeros up to the batch size) is matched to the
true batch by the Hungarian algorithm on MSE; a true image is recovered exactly at PSNR >= 60 dB,
recognisably at >= 18 dB; a returned image whose match is below 60 dB is a false image.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

EXACT_PSNR, RECOGNISABLE_PSNR = 60.0, 18.0


def run(case_path: Path, out: Path, repeat: int) -> Path:
    from fastleak import malicious

    saved = torch.load(case_path.with_suffix(".fastleak.pt"), weights_only=False)
    model, obs = saved["model"], saved["observation"]
    config = malicious.RecoveryConfig(labels=None)
    malicious.recover(obs, model, config)
    seconds = []
    for _ in range(repeat):
        started = time.perf_counter()
        rec = malicious.recover(obs, model, config)
        seconds.append(time.perf_counter() - started)
    target = out / case_path.name
    torch.save({"images": rec.images.detach().cpu(), "seconds": statistics.median(seconds), "all_seconds": seconds,
                "threads": torch.get_num_threads(), "torch": str(torch.__version__)}, target)
    return target


def score(images: torch.Tensor, truth: torch.Tensor) -> dict:
    """Exact, recognisable and false counts of ``images`` [n, ...] against ``truth`` [B, ...] (module docs)."""
    from scipy.optimize import linear_sum_assignment

    from fastleak.metrics import psnr

    true = truth.to(torch.float64).clamp(0, 1).flatten(1)
    returned = images.to(torch.float64).clamp(0, 1).flatten(1)
    returned = returned[returned.abs().sum(1) > 0]
    values = torch.empty(0)
    if len(returned):
        cost = ((true.pow(2).sum(1, keepdim=True) + returned.pow(2).sum(1) - 2 * true @ returned.T)
                / true.shape[1]).clamp_min(0)
        rows, cols = linear_sum_assignment(cost.numpy())
        values = psnr(returned[cols][:, None, None], true[rows][:, None, None]).clamp(max=100.0)
    exact = int((values >= EXACT_PSNR).sum())
    return {"returned": len(returned), "exact": exact, "recognisable": int((values >= RECOGNISABLE_PSNR).sum()),
            "false": len(returned) - exact}


def singletons(case_path: Path) -> float:
    saved = torch.load(case_path.with_suffix(".fastleak.pt"), weights_only=False)
    case = torch.load(case_path, weights_only=False)
    bins = saved["model"].block.bin_of(case["images"])
    counts = torch.bincount(bins.clamp_min(0), minlength=int(bins.max()) + 1)
    return float((counts[bins.clamp_min(0)] == 1).double().mean())


def table(cases: Path, ours: Path, peer: Path) -> str:
    groups: dict[tuple, list[dict]] = {}
    for path in sorted(p for p in cases.glob("*.pt") if not p.name.endswith(".fastleak.pt")):
        case = torch.load(path, weights_only=False)
        row = {"singletons": singletons(path)}
        for side, folder in (("fastleak", ours), ("breaching", peer)):
            result = torch.load(folder / path.name, weights_only=False)
            row[side] = {**score(result["images"], case["images"]), "seconds": result["seconds"]}
        groups.setdefault((case["dataset"], case["batch"], case["structure"]), []).append(row)
    lines = ["| data | B | bins (K = 2B) | seeds | alone in their bin | exact: fastleak / breaching | "
             "recognisable: fastleak / breaching | images returned: fastleak / breaching | false images: "
             "fastleak / breaching | ms per batch: fastleak / breaching | breaching / fastleak time |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"mnist": 0, "cifar": 1}
    for (dataset, batch, structure), rows in sorted(groups.items(), key=lambda kv: (order.get(kv[0][0], 9), kv[0][1:])):
        def mean(side, key, per=batch):
            return statistics.mean(r[side][key] / per for r in rows)

        ms = {side: 1000 * statistics.median(r[side]["seconds"] for r in rows) for side in ("fastleak", "breaching")}
        lines.append(
            f"| {dataset} | {batch} | {structure} | {len(rows)} | {statistics.mean(r['singletons'] for r in rows):.3f} | "
            f"{mean('fastleak', 'exact'):.3f} / {mean('breaching', 'exact'):.3f} | "
            f"{mean('fastleak', 'recognisable'):.3f} / {mean('breaching', 'recognisable'):.3f} | "
            f"{mean('fastleak', 'returned', 1):.1f} / {mean('breaching', 'returned', 1):.1f} | "
            f"{mean('fastleak', 'false', 1):.1f} / {mean('breaching', 'false', 1):.1f} | "
            f"{ms['fastleak']:.1f} / {ms['breaching']:.1f} | {ms['breaching'] / ms['fastleak']:.2f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="runs/peers/malicious/cases")
    ap.add_argument("--out", default="runs/peers/malicious/fastleak")
    ap.add_argument("--peer", default="runs/peers/malicious/breaching")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--table", action="store_true", help="print the table of both sides and exit")
    args = ap.parse_args()
    if args.table:
        print(table(Path(args.cases), Path(args.out), Path(args.peer)))
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in Path(args.cases).glob("*.pt") if not p.name.endswith(".fastleak.pt")):
        print(run(path, out, args.repeat), flush=True)


if __name__ == "__main__":
    main()
