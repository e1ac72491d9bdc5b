"""Cases for the malicious-server comparison: one modified model, one client batch, one FedSGD gradient.

    python benchmarks/peers/malicious_cases.py --out runs/peers/malicious/cases [--batches 64,128,256]
                                               [--seeds 0,1,2] [--datasets mnist,cifar]

Per case (``bench_imprint.pools``: MNIST test digits against a server fitted on the train digits;
CIFAR-size images against tiles of other photos) fastleak builds the imprint model (LeNet behind a
block of K = 2B bins on mean brightness, cumulative as in "Robbing the Fed" and breaching's
``ImprintBlock``, or sparse as breaching's ``SparseImprintBlock``), the client computes its FedSGD
gradient, and two files are written:

* ``<case>.pt``: plain tensors for any framework: the batch (``images`` in [0, 1], ``labels``),
  the model's ``parameters`` and ``buffers`` in order, the client's ``gradients`` in that order,
  the index of the block's bin-layer weight and bias among them, its ``structure`` and ``shape``;
* ``<case>.fastleak.pt``: the same model as a module and the observation, for fastleak's side.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STRUCTURES = ("cumulative", "sparse")


def case_name(dataset: str, batch: int, structure: str, seed: int) -> str:
    return f"{dataset}_b{batch}_{structure}_s{seed}"


def write_case(folder: Path, dataset: str, batch: int, structure: str, seed: int, pool) -> Path:
    from fastleak import federated, malicious, models

    x_pool, y_pool, public = pool
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:batch]
    x, y = x_pool[order], y_pool[order]
    base = models.build("lenet", 10, in_shape=tuple(x.shape[1:]), seed=seed)
    model = malicious.imprint_model(base, public, malicious.ImprintConfig(bins=2 * batch, structure=structure))
    obs = federated.fedsgd(model, x, y)
    names = [n for n, _ in model.named_parameters()]
    weight_name, bias_name = malicious.recovery.bin_parameter_names(model)
    path = folder / f"{case_name(dataset, batch, structure, seed)}.pt"
    torch.save({"images": x, "labels": y, "structure": structure, "shape": tuple(x.shape[1:]),
                "parameters": [p.detach().clone() for p in model.parameters()],
                "buffers": [b.detach().clone() for b in model.buffers()],
                "gradients": list(obs.pairs[0].shared), "weight_idx": names.index(weight_name),
                "bias_idx": names.index(bias_name), "dataset": dataset, "batch": batch, "seed": seed}, path)
    torch.save({"model": model, "observation": obs}, path.with_suffix(".fastleak.pt"))
    return path


def main() -> None:
    from bench_imprint import pools

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="runs/peers/malicious/cases")
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    folder = Path(args.out)
    folder.mkdir(parents=True, exist_ok=True)
    for dataset in args.datasets.split(","):
        pool = pools(dataset)
        for batch in (int(b) for b in args.batches.split(",")):
            for structure in STRUCTURES:
                for seed in (int(s) for s in args.seeds.split(",")):
                    print(write_case(folder, dataset, batch, structure, seed, pool), flush=True)


if __name__ == "__main__":
    main()
