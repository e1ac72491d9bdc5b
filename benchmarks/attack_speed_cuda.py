"""Iterations per second of the inverting attack on the GPU (convnet width 32, CIFAR-10, B=4, R=8).

    python -m benchmarks.attack_speed_cuda [--iterations 50] [--json runs/bench/attack_speed_cuda.json]

Also checks that the attack's GPU result is finite and that labels are recovered on the GPU.
"""
import argparse
import time

import torch

import fastleak
from benchmarks.environment import write_json
from fastleak import data, models
from fastleak.federated import fedsgd
from fastleak.metrics import evaluate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--iterations", type=int, default=50)
    ap.add_argument("--json", default="runs/bench/attack_speed_cuda.json")
    args = ap.parse_args()
    x, y = data.load("cifar10", 4, seed=0, labels="random")
    rows = []
    for width, batch, restarts in [(32, 4, 8), (64, 4, 8), (32, 4, 32)]:
        model = models.build("convnet", 10, seed=0, width=width).eval().cuda()
        obs = fedsgd(model, x.cuda(), y.cuda())
        # plain restarts (search={}), as measured before the presets searched their TV weight
        fastleak.attack(obs, model, "inverting", labels=y.cuda(), restarts=restarts, iterations=3, search={})
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        res = fastleak.attack(obs, model, "inverting", labels="recover", restarts=restarts, search={},
                              iterations=args.iterations, record_every=args.iterations)
        torch.cuda.synchronize()
        wall = time.perf_counter() - t0
        ev = evaluate(res.images, x, res.labels, y)
        row = {"width": width, "batch": batch, "restarts": restarts, "iterations": args.iterations,
               "it_per_s": args.iterations / wall, "restart_iterations_per_s": args.iterations * restarts / wall,
               "finite": bool(torch.isfinite(res.restart_losses).all()), "labels_exact": ev.labels.exact,
               "psnr_after": ev.psnr}
        print(row, flush=True)
        rows.append(row)
    write_json(args.json, {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows})


if __name__ == "__main__":
    main()
