"""Cases for the imprint comparison with breaching: one modified model in breaching's layout, one client
batch, one FedSGD gradient.

    python -m benchmarks.peers.imprint_cases [--out runs/peers/imprint/cases] [--datasets mnist,cifar]
                                             [--batches 64,128,256] [--seeds 0,1,2] [--breaching-bins 64]

Per case the client's batch of B images is drawn (seeded) from ``bench_imprint.pools``: MNIST test
digits against a server fitted on the train digits; CIFAR-size images against tiles of other
photos. The server puts an imprint block on mean brightness in front of LeNet, with K = 2B bins
and breaching's default K = 64 (``num_bins`` of its ``malicious-model-rtf`` and
``malicious-model-cah`` server configs), in both structures:

* cumulative, breaching's ``ImprintBlock`` (gain 1e-3): bin row k holds ``gain * w`` and bias
  ``-gain * t_k`` for increasing lower edges ``t_k``, then a ReLU; the readout's weights are
  ``1 / gain`` and its bias ``-mean(t)``;
* sparse, breaching's ``SparseImprintBlock`` (gain 1): row k holds ``w / s_k`` and bias
  ``-t_k / s_k``, then a hard-tanh saturating at the gain, readout weights 1 and bias ``-mean(t)``.
  ``s_k`` is the width of row k's own bin, ``t_{k+1} - t_k``. breaching's ``_get_bins`` pairs each
  lower edge with the width of the bin below it (its rows overlap where bins narrow and leave gaps
  where they widen); that construction is not copied, only the layout of its rows.

The edges are the quantiles of the server's public data (``fastleak.malicious.fit_edges``), not
breaching's Laplace quantiles: those assume a standardised measurement, while both sides work on
pixels in [0, 1] here. fastleak's ``ImprintBlock`` computes exactly these rows once loaded with
these parameters (its sparse top, the ``widths`` buffer, is set to the gain), so both sides attack
one model; the client's gradient comes from ``fastleak.federated.fedsgd`` on it.

Each ``<case>.pt`` holds plain tensors: ``images`` in [0, 1] and ``labels``; ``block`` (the
bin layer's and readout's weight and bias), ``measurement``, ``edges``, ``saturation``, ``gain``;
``rest`` (the rest of the state dict, keys as in ``MaliciousModel``); ``param_names`` and
``gradients`` in that order with ``weight_idx``/``bias_idx`` of the bin layer; ``block_output``
and ``block_output_grad`` (the loss's gradient at the block's output, for breaching's side to check
its own block against); ``alone`` (per sample: no other sample in its bin).
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from benchmarks.bench_imprint import pools
from benchmarks.peers.common import output_folder, with_gradients, writer_options

STRUCTURES = ("cumulative", "sparse")
GAIN = {"cumulative": 1e-3, "sparse": 1.0}
BREACHING_BINS = 64
BASE_MODEL = "lenet"
NUM_CLASSES = 10


def case_name(dataset: str, batch: int, bins: int, structure: str, seed: int) -> str:
    return f"{dataset}_b{batch}_k{bins}_{structure}_s{seed}"


def breaching_block_parameters(measurement: torch.Tensor, edges: torch.Tensor, structure: str) -> dict:
    """The block's parameters as breaching lays them out for these bins (module docs), float32."""
    gain = GAIN[structure]
    lower = edges[:-1]
    num_bins, num_features = len(lower), len(measurement)
    scale = torch.full((num_bins,), gain, dtype=torch.float64)
    if structure == "sparse":
        scale = 1.0 / (edges[1:] - lower)
    return {"bins.weight": (scale[:, None] * measurement[None, :]).float(),
            "bins.bias": (-scale * lower).float(),
            "readout.weight": torch.full((num_features, num_bins), 1.0 / gain),
            "readout.bias": torch.full((num_features,), -float(lower.mean()))}


def build_model(shape: tuple[int, ...], measurement: torch.Tensor, edges: torch.Tensor, structure: str,
                block: dict, saturation: torch.Tensor, rest: dict | None = None, seed: int = 0):
    """fastleak's ``MaliciousModel`` with its block loaded with ``block`` (and the rest with ``rest``)."""
    from fastleak import malicious, models
    from fastleak.malicious.model import attach

    imprint = malicious.ImprintBlock(shape, measurement, edges, structure)
    with torch.no_grad():
        for name, value in block.items():
            imprint.get_parameter(name).copy_(value)
        imprint.widths.copy_(saturation)
    model = attach(imprint, models.build(BASE_MODEL, NUM_CLASSES, in_shape=shape, seed=seed), shape)
    if rest is not None:
        model.load_state_dict({**{f"block.{k}": v for k, v in block.items()}, **rest})
    return model


def model_of(case: dict):
    """The case's modified model, rebuilt in fastleak."""
    return build_model(tuple(case["shape"]), case["measurement"], case["edges"], case["structure"], case["block"],
                       case["saturation"], case["rest"])


def observation_of(case: dict, model):
    """A FedSGD observation of ``model`` whose shared tensors are the case's gradients."""
    from fastleak import federated

    return with_gradients(federated.fedsgd(model, case["images"], case["labels"]), case["gradients"])


def block_output_and_grad(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    out = model.block(x).detach().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model.model(out), y)
    (grad,) = torch.autograd.grad(loss, out)
    return out.detach(), grad


def alone_in_bin(block, x: torch.Tensor) -> torch.Tensor:
    bins = block.bin_of(x)
    counts = torch.bincount(bins.clamp_min(0), minlength=len(block.edges) - 1)
    return (bins >= 0) & (counts[bins.clamp_min(0)] == 1)


def make_case(dataset: str, batch: int, bins: int, structure: str, seed: int, pool) -> dict:
    from fastleak import federated, malicious
    from fastleak.malicious import measurements

    x_pool, y_pool, public = pool
    order = torch.randperm(len(x_pool), generator=torch.Generator().manual_seed(seed))[:batch]
    x, y = x_pool[order], y_pool[order]
    shape = tuple(x.shape[1:])
    measurement = measurements.weights("mean", math.prod(shape), 0)
    edges = malicious.fit_edges(public, measurement, bins, structure)
    block = breaching_block_parameters(measurement, edges, structure)
    saturation = torch.full((bins,), GAIN[structure])
    model = build_model(shape, measurement, edges, structure, block, saturation, seed=seed)
    obs = federated.fedsgd(model, x, y)
    names = list(obs.param_names)
    output, output_grad = block_output_and_grad(model, x, y)
    return {"images": x, "labels": y, "dataset": dataset, "batch": batch, "bins": bins, "structure": structure,
            "seed": seed, "shape": shape, "gain": GAIN[structure], "measurement": measurement, "edges": edges,
            "saturation": saturation, "block": block,
            "rest": {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("block.")},
            "param_names": names, "gradients": [g.clone() for g in obs.pairs[0].shared],
            "weight_idx": names.index("block.bins.weight"), "bias_idx": names.index("block.bins.bias"),
            "block_output": output, "block_output_grad": output_grad, "alone": alone_in_bin(model.block, x)}


def write_case(folder: Path, dataset: str, batch: int, bins: int, structure: str, seed: int, pool) -> Path:
    path = folder / f"{case_name(dataset, batch, bins, structure, seed)}.pt"
    torch.save(make_case(dataset, batch, bins, structure, seed, pool), path)
    return path


def main() -> None:
    ap = writer_options(__doc__.split("\n\n")[0], "runs/peers/imprint/cases")
    ap.add_argument("--datasets", default="mnist,cifar")
    ap.add_argument("--batches", default="64,128,256")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--breaching-bins", type=int, default=BREACHING_BINS, help="0: K = 2B only")
    args = ap.parse_args()
    folder = output_folder(args.out)
    for dataset in args.datasets.split(","):
        pool = pools(dataset)
        for batch in (int(b) for b in args.batches.split(",")):
            for bins in sorted({2 * batch, args.breaching_bins} - {0}):
                for structure in STRUCTURES:
                    for seed in (int(s) for s in args.seeds.split(",")):
                        print(write_case(folder, dataset, batch, bins, structure, seed, pool), flush=True)


if __name__ == "__main__":
    main()
