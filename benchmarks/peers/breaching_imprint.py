"""breaching's side of the imprint comparison: its ``ImprintAttacker`` on the cases' gradients.

    benchmarks/peers/.venv/bin/python benchmarks/peers/breaching_imprint.py [--cases runs/peers/imprint/cases]
        [--repeat 5] [--out runs/peers/imprint/breaching]

Runs in the peer venv (``make_venv.sh``) on the files of ``imprint_cases.py``. The model breaching
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

import argparse
import contextlib
import importlib.metadata
import io
import logging
import statistics
import time
import traceback
import warnings
from pathlib import Path

import torch

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


def attacker_for(model: torch.nn.Module):
    import breaching

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cfg = breaching.get_attack_config("imprint")
    return breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg,
                                            dict(device=torch.device("cpu"), dtype=torch.float))


def inputs_of(case: dict, model: torch.nn.Module) -> tuple[list[dict], list[dict], dict]:
    from omegaconf import OmegaConf

    metadata = OmegaConf.create({"shape": list(case["shape"]), "modality": "vision", "task": "classification",
                                 "classes": 10})
    server = [{"parameters": [p.detach().clone() for p in model.parameters()], "buffers": None,
               "metadata": metadata}]
    user = [{"gradients": [g.clone() for g in case["gradients"]], "buffers": None,
             "metadata": {"num_data_points": case["batch"], "labels": case["labels"].clone(),
                          "local_hyperparams": None}}]
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
    attacker = attacker_for(model)
    server, user, secrets = inputs_of(case, model)
    attacker.reconstruct(server, user, server_secrets=secrets)
    seconds = []
    for _ in range(repeat):
        server, user, secrets = inputs_of(case, model)
        started = time.perf_counter()
        data, _ = attacker.reconstruct(server, user, server_secrets=secrets)
        seconds.append(time.perf_counter() - started)
    return {"images": data["data"].detach().float(), "seconds": statistics.median(seconds), "all_seconds": seconds,
            "block_check": check}


def run(case_path: Path, out: Path, repeat: int) -> Path:
    case = torch.load(case_path, weights_only=False)
    try:
        result = attack(case, repeat)
    except Exception as exc:  # recorded in the table, not hidden
        traceback.print_exc()
        result = {"error": f"{type(exc).__name__}: {exc}"}
    target = out / case_path.name
    torch.save({**result, "threads": torch.get_num_threads(), "torch": str(torch.__version__),
                "breaching": importlib.metadata.version("breaching")}, target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="runs/peers/imprint/cases")
    ap.add_argument("--out", default="runs/peers/imprint/breaching")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    logging.getLogger("breaching").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(Path(args.cases).glob("*.pt")):
        print(run(path, out, args.repeat), flush=True)


if __name__ == "__main__":
    main()
