"""breaching's side of the malicious-server comparison: its imprint attack on the cases' gradients.

    benchmarks/peers/.venv/bin/python benchmarks/peers/breaching_malicious.py [--cases runs/peers/malicious/cases]
        [--repeat 5] [--out runs/peers/malicious/breaching]

Runs in the peer venv (``make_venv.sh``) on the files of ``malicious_cases.py``. breaching 0.1.2's
``ImprintAttacker`` (attack config ``imprint``, stock settings: zero padding up to the batch size,
``breach_reduction=weight``) gets the server payload (the modified model's parameters, in order),
the client's gradient and the server's secret (the index of the bin layer's weight and bias, the
block's structure and the input shape). The attacker reads nothing of the model but its parameter
list, so the model is handed over as a container of the parameters and buffers of the case. The
metadata carries no mean/std, so breaching works in [0, 1] pixels as fastleak does. Timed: the
median of ``--repeat`` calls of ``reconstruct`` after one untimed call. Writes
``<out>/<case>.pt`` with the images breaching returns and the times.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import statistics
import time
import warnings
from pathlib import Path

import torch


class ParameterContainer(torch.nn.Module):
    """A module holding tensors of the given shapes as its parameters and buffers, in order."""

    def __init__(self, parameters: list[torch.Tensor], buffers: list[torch.Tensor]) -> None:
        super().__init__()
        self.values = torch.nn.ParameterList([torch.nn.Parameter(torch.zeros_like(p)) for p in parameters])
        for i, b in enumerate(buffers):
            self.register_buffer(f"buffer_{i}", torch.zeros_like(b))


def attacker_for(case: dict):
    import breaching

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # hydra's notice about its next version
        cfg = breaching.get_attack_config("imprint")
    model = ParameterContainer(case["parameters"], case["buffers"])
    return breaching.attacks.prepare_attack(model, torch.nn.CrossEntropyLoss(), cfg,
                                            dict(device=torch.device("cpu"), dtype=torch.float))


def inputs_of(case: dict) -> tuple[list[dict], list[dict], dict]:
    from omegaconf import OmegaConf  # breaching reads metadata both as attributes and as keys

    metadata = OmegaConf.create({"shape": list(case["shape"]), "modality": "vision", "task": "classification",
                                 "classes": 10})
    server = [{"parameters": [p.clone() for p in case["parameters"]], "buffers": None, "metadata": metadata}]
    user = [{"gradients": [g.clone() for g in case["gradients"]], "buffers": None,
             "metadata": {"num_data_points": case["batch"], "labels": case["labels"].clone(),
                          "local_hyperparams": None}}]
    secrets = {"ImprintBlock": {"weight_idx": case["weight_idx"], "bias_idx": case["bias_idx"],
                                "shape": tuple(case["shape"]), "structure": case["structure"]}}
    return server, user, secrets


def run(case_path: Path, out: Path, repeat: int) -> Path:
    case = torch.load(case_path, weights_only=False)
    attacker = attacker_for(case)
    attacker.reconstruct(*inputs_of(case))
    seconds = []
    for _ in range(repeat):
        server, user, secrets = inputs_of(case)
        started = time.perf_counter()
        data, _ = attacker.reconstruct(server, user, server_secrets=secrets)
        seconds.append(time.perf_counter() - started)
    images = data["data"].detach().float()
    target = out / case_path.name
    torch.save({"images": images, "seconds": statistics.median(seconds), "all_seconds": seconds,
                "threads": torch.get_num_threads(), "torch": str(torch.__version__)}, target)
    return target


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", default="runs/peers/malicious/cases")
    ap.add_argument("--out", default="runs/peers/malicious/breaching")
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    logging.getLogger("breaching").setLevel(logging.WARNING)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(p for p in Path(args.cases).glob("*.pt") if not p.name.endswith(".fastleak.pt")):
        print(run(path, out, args.repeat), flush=True)


if __name__ == "__main__":
    main()
