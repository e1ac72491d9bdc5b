"""How far the count estimates of the statistics methods are from the truth, per class, before
rounding: max_c |n̂_c − n_c| (rounding is exact below 0.5).

    python -m benchmarks.bench_label_prior --model lenet --classes 10 --batches 32,64,128 \
        [--json runs/bench/label_prior.json]

Besides the methods it scores an oracle that no attacker has: n̂ = B·p̄ − B·Δb with p̄ the
mean softmax over ``--pool-batches`` real batches of the same data (the victim's population).
Its error is what the batch-to-batch variation of the mean softmax alone costs any estimate
built on population statistics, as ``geng_bias`` is.
"""
from __future__ import annotations

import argparse

import torch

import fastleak.data as D
import fastleak.labels as L
import fastleak.models as M
from benchmarks.environment import environment, write_results
from fastleak.federated import fedsgd
from fastleak.models import features_and_logits, final_linear_param_names

DATA = {10: "cifar10", 100: "cifar100"}


def population_softmax(model: torch.nn.Module, dataset: str, batch: int, batches: int, seed: int) -> torch.Tensor:
    with torch.no_grad():
        means = [torch.softmax(features_and_logits(model, D.load(dataset, batch, seed=seed + s, labels="random")[0])[1]
                               .double(), 1).mean(0) for s in range(batches)]
    return torch.stack(means).mean(0)


def main(argv: list[str] | None = None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="lenet")
    p.add_argument("--classes", type=int, default=10, choices=sorted(DATA))
    p.add_argument("--bn", default="train", choices=("train", "eval"))
    p.add_argument("--batches", default="32,64,128")
    p.add_argument("--methods", default="geng_bias,geng_shift")
    p.add_argument("--dummies", default="pink,uniform")
    p.add_argument("--num-dummies", type=int, default=L.LabelConfig.num_dummies)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--pool-batches", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json", default="runs/bench/label_prior.json", help="the rows and what they depend on")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    model = M.build(a.model, a.classes, seed=a.seed).train(a.bn == "train")
    dataset = DATA[a.classes]
    rows = []
    for batch in (int(b) for b in a.batches.split(",")):
        # The oracle's pool is drawn with seeds disjoint from the scored batches.
        pbar = population_softmax(model, dataset, batch, a.pool_batches, a.seed + 1000)
        errors: dict[str, list[float]] = {}
        for t in range(a.trials):
            x, y = D.load(dataset, batch, seed=a.seed + t, labels="random")
            true = torch.bincount(y, minlength=a.classes).double()
            obs = fedsgd(model, x, y)
            grad_b = obs.pairs[0].shared[obs.param_names.index(final_linear_param_names(model)[1])].double()
            errors.setdefault("oracle population p̄", []).append(float((batch * (pbar - grad_b) - true).abs().max()))
            for dist in a.dummies.split(","):
                config = L.LabelConfig(num_dummies=a.num_dummies, dummy_distribution=dist)
                for method in a.methods.split(","):
                    est = L.counts(obs, model, method, config=config).estimates
                    errors.setdefault(f"{method} ({dist})", []).append(float((est - true).abs().max()))
        for name, errs in errors.items():
            row = {"model": a.model, "classes": a.classes, "bn": a.bn, "batch": batch, "estimate": name,
                   "mean_max_error": sum(errs) / len(errs), "exact_share": sum(e < 0.5 for e in errs) / len(errs)}
            rows.append(row)
            print(f"{a.model} C={a.classes} bn={a.bn} B={batch:4d} {name:28s} mean max |n̂−n| "
                  f"{row['mean_max_error']:5.2f}  below 0.5 in {row['exact_share']:.2f} of batches")
    write_results(a.json, environment("cpu", args=vars(a)), rows)
    return rows


if __name__ == "__main__":
    main()
