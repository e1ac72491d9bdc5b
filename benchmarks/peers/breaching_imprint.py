"""breaching's side of the imprint comparison: its ``ImprintAttacker`` on the cases' gradients.

    benchmarks/peers/.venv/bin/python -m benchmarks.peers.breaching_imprint [--cases runs/peers/imprint/cases]
        [--only mnist_] [--repeat 5] [--threads 1] [--out runs/peers/imprint/breaching]

Runs in the peer venv (``make_venv.sh``), from the repository root, on the files of ``imprint_cases``. The model breaching
attacks is its own ``ImprintBlock`` (cumulative) or ``SparseImprintBlock`` (sparse), constructed
with the case's shape, bin count and gain and then loaded with the case's block parameters,
followed by the rest of the case's parameters (LeNet's, which the attack never runs). Before the
attack, breaching's block must reproduce the case's block output on the true batch, and, given the
loss's gradient at that output, the case's gradient of its bin layer (relative error at most 1e-4
each): the block is the one fastleak's client trained.

The attacker is breaching 0.1.2's ``ImprintAttacker`` with the stock ``imprint`` attack config (zero
padding up to the batch size, ``breach_reduction=weight``, rows in order). The server payload
holds the parameters in order and metadata without mean/std, so breaching uses identity
normalisation (mean 0, std 1) and clamps its images to [0, 1], fastleak's pixel space. The user's
metadata holds the batch size and the true labels (breaching's imprint attack recovers no labels;
given ones skip its label step). The server secret names the bin layer's weight and bias, the
structure and the input shape. Timed: the median of ``--repeat`` calls of ``reconstruct`` after
one untimed call. Writes ``<out>/<case>.pt`` with the images breaching returns (zero padding
included), the times and the block check; a case that raises is written with its error instead.
"""
from __future__ import annotations

import logging
import traceback
from pathlib import Path

import torch

from benchmarks.peers.common import (breaching_attacker, breaching_payloads, load, median_seconds, options,
                                     run_record, selected_cases, start)

BLOCK_NAMES = {"linear0.weight": "bins.weight", "linear0.bias": "bins.bias",
               "linear2.weight": "readout.weight", "linear2.bias": "readout.bias"}
BLOCK_TOLERANCE = 1e-4


class ModifiedModel(torch.nn.Module):
    """breaching's imprint block followed by the remaining parameters of the case, in the case's order."""

    def __init__(self, block: torch.nn.Module, rest: list[torch.Tensor]) -> None:
        super().__init__()
        self.block = block
        self.rest = torch.nn.ParameterList([torch.nn.Parameter(t.clone()) for t in rest])


def breaching_block(case: dict) -> torch.nn.Module:
    from breaching.cases.malicious_modifications.imprint import ImprintBlock, SparseImprintBlock

    kind = ImprintBlock if case["structure"] == "cumulative" else SparseImprintBlock
    block = kind(tuple(case["shape"]), case["bins"], gain=case["gain"])
    assert block.structure == case["structure"]
    with torch.no_grad():
        for ours, theirs in BLOCK_NAMES.items():
            block.get_parameter(ours).copy_(case["block"][theirs])
    return block


def relative_error(ours: torch.Tensor, theirs: torch.Tensor) -> float:
    return float((ours.double() - theirs.double()).abs().max() / theirs.double().abs().max().clamp_min(1e-30))


def block_check(block: torch.nn.Module, case: dict) -> dict:
    """breaching's block against the case's: its output and its bin layer's gradient (module docs)."""
    block.zero_grad()
    output = block(case["images"])
    output.backward(case["block_output_grad"])
    errors = {"output": relative_error(output.detach(), case["block_output"]),
              "weight_grad": relative_error(block.linear0.weight.grad, case["gradients"][case["weight_idx"]]),
              "bias_grad": relative_error(block.linear0.bias.grad, case["gradients"][case["bias_idx"]])}
    block.zero_grad()
    return errors


def rest_parameters(case: dict) -> list[torch.Tensor]:
    return [case["rest"][name] for name in case["param_names"] if not name.startswith("block.")]


def inputs_of(case: dict, model: torch.nn.Module) -> tuple[list[dict], list[dict], dict]:
    server, user = breaching_payloads(model, case["shape"], 10, case["gradients"], case["batch"], case["labels"])
    secrets = {"ImprintBlock": {"weight_idx": case["weight_idx"], "bias_idx": case["bias_idx"],
                                "shape": tuple(case["shape"]), "structure": case["structure"]}}
    return server, user, secrets


def attack(case: dict, repeat: int) -> dict:
    block = breaching_block(case)
    check = block_check(block, case)
    if max(check.values()) > BLOCK_TOLERANCE:
        raise RuntimeError(f"breaching's block differs from the case's: relative errors {check}")
    model = ModifiedModel(block, rest_parameters(case))
    assert [tuple(p.shape) for p in model.parameters()] == [tuple(g.shape) for g in case["gradients"]]
    attacker = breaching_attacker(model, torch.nn.CrossEntropyLoss(), "imprint")
    median, seconds, (data, _) = median_seconds(
        lambda server, user, secrets: attacker.reconstruct(server, user, server_secrets=secrets), repeat,
        lambda: inputs_of(case, model))
    return {"images": data["data"].detach().float(), "seconds": median, "all_seconds": seconds,
            "block_check": check}


def run(case_path: Path, out: Path, repeat: int) -> Path:
    case = load(case_path)
    try:
        result = attack(case, repeat)
    except Exception as exc:  # recorded in the table, not hidden
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    target = out / case_path.name
    torch.save({**result, **run_record(peer=True)}, target)
    return target


def main() -> None:
    ap = options(__doc__.split("\n\n")[0], "runs/peers/imprint/cases", "runs/peers/imprint/breaching")
    ap.add_argument("--repeat", type=int, default=5, help="timed calls per case, after one untimed call")
    args = ap.parse_args()
    logging.getLogger("breaching").setLevel(logging.WARNING)
    out = start(args)
    for path in selected_cases(args.cases, args.only):
        print(run(path, out, args.repeat), flush=True)


if __name__ == "__main__":
    main()
