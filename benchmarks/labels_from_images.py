"""Label counts refined through the attack's reconstructions, against the gradient-only methods.

    python -m benchmarks.labels_from_images --model convnet --rounds 1,5 --batch 8 --trials 3 \
        --iterations 300 [--json runs/grid/labels_from_images.json]

With mean reduction the FC bias gradient is Δb_c = (1/B)·Σ_k p_kc − n_c/B exactly, so
n_c = Σ_k p_kc − B·Δb_c: the counts follow from the batch's softmax outputs. ``geng_bias``
estimates them on the attacker's dummies (by default 256 pink-noise inputs); here they are
replaced by
- ``true images``: the private batch itself (the identity; exact, a check of the harness);
- ``population``: 1,000 digits of the train split, never the victims (the population, not the batch);
- ``reconstructions``: the images of an ``inverting`` attack whose labels ``auto`` recovered
  (one round of the alternation between images and counts);
- ``joint``: the images of an attack that optimised soft labels jointly with them; its own
  labels (the argmax of the soft labels) are scored as ``joint labels``.
The trained states are those of ``trained_states.GRID`` (MNIST trainer, batches of held-out digits).
"""
from __future__ import annotations

import argparse
import time

import torch

import fastleak.data as D
import fastleak.labels as L
from benchmarks.bench_labels import population_config, score
from benchmarks.environment import environment, write_json
from benchmarks.trained_states import GRID
from fastleak.attacks import attack
from fastleak.federated import fedsgd


def fixed(counts: torch.Tensor, batch: int) -> L.LabelCounts:
    return L.LabelCounts(counts.double(), counts, "given", "given", batch)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="convnet", choices=GRID.models)
    p.add_argument("--rounds", default="1,5")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--pattern", default="random")
    p.add_argument("--trials", type=int, default=3)
    p.add_argument("--iterations", type=int, default=300)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default="runs/grid/labels_from_images.json", help="the report, after every round")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    population = population_config("mnist")
    report = {**environment(a.device), "args": vars(a), "rounds": {}}
    for r in [int(t) for t in a.rounds.split(",")]:
        model, info = GRID.trained(a.model, r)
        model = model.to(a.device).train(GRID.bn == "train")
        found: dict[str, list[L.LabelCounts]] = {}
        truths = []
        t0 = time.time()
        for t in range(a.trials):
            x, y = D.load("mnist", a.batch, seed=t, labels=a.pattern)
            x, y = x.to(a.device), y.to(a.device)
            obs = fedsgd(model, x, y)
            truths.append(torch.bincount(y, minlength=10).cpu())

            def add(name: str, c: L.LabelCounts) -> None:
                found.setdefault(name, []).append(L.LabelCounts(c.estimates.cpu(), c.counts.cpu(), c.method,
                                                                c.requested, c.num_samples))

            add("geng_bias", L.counts(obs, model, "geng_bias"))
            add("true images", L.counts(obs, model, "geng_bias", config=L.LabelConfig(dummies=x)))
            add("population", L.counts(obs, model, "geng_bias", config=population))
            recon = attack(obs, model, "inverting", iterations=a.iterations, restarts=1, device=a.device)
            add("reconstructions", L.counts(obs, model, "geng_bias", config=L.LabelConfig(dummies=recon.images)))
            joint = attack(obs, model, "inverting", iterations=a.iterations, restarts=1, labels="optimize",
                           device=a.device)
            add("joint", L.counts(obs, model, "geng_bias", config=L.LabelConfig(dummies=joint.images)))
            add("joint labels", fixed(torch.bincount(joint.labels.cpu(), minlength=10), a.batch))
        scores = {name: score(cs, truths) for name, cs in found.items()}
        report["rounds"][str(r)] = {"info": info, "scores": scores, "seconds": time.time() - t0}
        print(f"{a.model} round {r} (held-out acc {info['test_accuracy']:.3f}), B={a.batch} {a.pattern}: "
              + ", ".join(f"{k} {v['LnAcc']:.2f}" for k, v in scores.items()), flush=True)
        write_json(a.json, report, indent=1)
    return report


if __name__ == "__main__":
    main()
