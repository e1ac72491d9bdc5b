"""Attack quality on real images: PSNR/SSIM and label accuracy of the attack presets.

    python -m benchmarks.bench_quality [--quick] [--only a,b] [--json runs/bench/quality.json] [--device cpu|cuda]
                                       [--width 64] [--iterations N] [--dlg-steps 300] [--dlg-inner 20]
                                       [--dlg-restarts 1]

Cases (targets in brackets; a case's targets are reported as met/missed, never asserted):

  a  dlg and idlg on the DLG LeNet, each of the 20 CIFAR-10 images as its own FedSGD
     observation, all 20 attacked in ONE ``attack_many`` call per preset
     [PSNR >= 30 dB on >= 18/20; idlg label accuracy 100%]
  b  inverting on an untrained ConvNet: one image [>= 25 dB]; B=4 with duplicate labels
     allowed, labels recovered by the engine [mean PSNR >= 18 dB]
  c  gradinversion with group consistency against the same preset with group=0, B=8
     unique labels, same seed [with > without]; both also report every restart's PSNR and that
     of the restarts' registered mean (the group consensus)
  d  geng on B=8 with duplicates: 1, 2 and 4 (model, gradient) pairs (server re-initialises
     the model); FedAvg (4 local full-batch SGD steps) on B=4, labels unknown, unrolled replay
     [FedAvg >= 18 dB]
  e  inverting against defenses (Gaussian noise, magnitude pruning, norm clipping), one
     image, all settings attacked in one ``attack_many`` call
  f  trained models: the MNIST trainer's global model at rounds ``--f-rounds`` (trained_states.py:
     FedAvg on the 4,000 train digits), attacked on held-out digits it never saw, labels recovered:
     idlg on the DLG LeNet, one digit per observation (``--images`` of them, one ``attack_many``
     call), and inverting on the ConvNet (``--width``, default 16 here) at B=1 and B=4
  g  the trained-model grid (trained_states.GRID): inverting, gradinversion and geng on the LeNet and
     the width-16 ConvNet (BatchNorm in train mode) at rounds 0, 1, 5, 20 and final, B = 1, 4, 8,
     labels recovered [B=1 >= 25 dB; B=4 >= 18 dB with exact labels]

Models are built with seed MODEL_SEED. The ConvNet is put in eval mode (BatchNorm uses its
running statistics), as in the Inverting Gradients experiments; ``--bn-train`` keeps train mode
(batch statistics), which makes the single-image attack far harder (see RESULTS.md, case b).
Data, model and attack seeds are fixed and printed.
The defaults are the full settings; ``--quick`` shrinks everything to a smoke run, and the
``--width``/``--iterations``/``--dlg-*``/``--restarts`` options give reduced settings when the
full ones do not fit the compute at hand. Everything that ran is written to ``--json`` after
every case, so an interrupted run keeps its finished cases.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import sys
import time
from typing import Any, Callable

import torch

from benchmarks.environment import environment, write_json
from benchmarks.trained_states import GRID, rounds_of, trained_model
from fastleak import data, defenses, federated, models
from fastleak.attacks import attack, attack_many, registration
from fastleak.metrics import evaluate

DATA_SEED = 0
MODEL_SEED = 0
ATTACK_SEED = 0
LOCAL_LR = 1e-3


def _fmt(v: float) -> str:
    return f"{v:6.2f}"


def _score(images: torch.Tensor, true: torch.Tensor, labels: torch.Tensor | None,
           true_labels: torch.Tensor, num_classes: int) -> dict[str, Any]:
    ev = evaluate(images, true, labels, true_labels, num_classes=num_classes)
    out = {"psnr": ev.psnr, "ssim": ev.ssim, "psnr_per_image": list(ev.psnr_per_image)}
    if ev.labels is not None:
        out.update(label_ln_acc=ev.labels.ln_acc, label_exact=ev.labels.exact,
                   labels=sorted(labels.tolist()), true_labels=sorted(true_labels.tolist()))
    return out


def _timing(result) -> dict[str, Any]:
    return {"wall_s": result.wall_time, "iterations": result.iterations,
            "label_method": result.label_method, "restarts": int(result.restart_losses.numel())}


def _row(name: str, r: dict[str, Any]) -> None:
    extra = ""
    if "label_ln_acc" in r:
        extra = f"  labels exact={r['label_exact']} LnAcc={r['label_ln_acc']:.2f} ({r.get('label_method')})"
    print(f"  {name:<34} PSNR {_fmt(r['psnr'])} dB  SSIM {r['ssim']:.3f}  [{r['wall_s']:.0f} s]{extra}",
          flush=True)


def _load(s: argparse.Namespace, n: int, labels: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = data.load("cifar10", n, seed=DATA_SEED, labels=labels)
    return x.to(s.device), y.to(s.device)


def _one_per_image(results, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """The row of an ``attack_many`` call whose i-th observation is image i alone."""
    per = [_score(r.images, x[i:i + 1], r.labels, y[i:i + 1], 10) for i, r in enumerate(results)]
    psnrs = [p["psnr"] for p in per]
    return {"psnr": sum(psnrs) / len(psnrs), "ssim": sum(p["ssim"] for p in per) / len(per),
            "psnr_per_image": psnrs, "at_least_30dB": sum(p >= 30 for p in psnrs),
            "label_accuracy": sum(bool(p["label_exact"]) for p in per) / len(per),
            "median_psnr": float(torch.tensor(psnrs).median()), **_timing(results[0])}


def case_a(s: argparse.Namespace) -> dict[str, Any]:
    x, y = _load(s, s.images, "natural")
    model = models.build("lenet", 10, seed=MODEL_SEED).to(s.device)
    obs = [federated.fedsgd(model, x[i:i + 1], y[i:i + 1]) for i in range(len(y))]
    out: dict[str, Any] = {"setting": {"images": len(y), "steps": s.dlg_steps, "lbfgs_inner": s.dlg_inner,
                                       "restarts": s.dlg_restarts, "model": "lenet (sigmoid, U(-0.5,0.5))"}}
    for preset in s.a_presets:
        results = attack_many(obs, model, preset, restarts=s.dlg_restarts, iterations=s.dlg_steps, lbfgs_inner=s.dlg_inner,
                              seed=ATTACK_SEED, device=s.device, **s.override)
        row = _one_per_image(results, x, y)
        out[preset] = row
        print(f"  {preset:<5} mean PSNR {_fmt(row['psnr'])} dB, median {_fmt(row['median_psnr'])}, "
              f">=30 dB: {row['at_least_30dB']}/{len(y)}, SSIM {row['ssim']:.3f}, "
              f"label acc {row['label_accuracy']:.0%} [{row['wall_s']:.0f} s]", flush=True)
        print("        per image: " + " ".join(f"{p:.1f}" for p in row["psnr_per_image"]), flush=True)
    out["targets"] = {f"{p} >=30 dB on >=18/20": out[p]["at_least_30dB"] >= 18 for p in s.a_presets}
    if "idlg" in s.a_presets:
        out["targets"]["idlg label accuracy 100%"] = out["idlg"]["label_accuracy"] == 1.0
    return out


def _convnet(s: argparse.Namespace) -> torch.nn.Module:
    model = models.build("convnet", 10, seed=MODEL_SEED, width=s.width).to(s.device)
    return model.train(s.bn_train)


def _run(name: str, obs, model, preset: str, x, y, s: argparse.Namespace, consensus: bool = False,
         **kw) -> dict[str, Any]:
    """One attack's row; with ``consensus`` also the PSNR of its restarts' registered mean."""
    kw = {**s.override, **kw}
    r = attack(obs, model, preset, restarts=kw.pop("restarts", s.restarts), iterations=s.iterations,
               seed=ATTACK_SEED, device=s.device, **kw)
    row = {**_score(r.images, x, r.labels, y, 10), **_timing(r)}
    _row(name, row)
    if consensus:
        restarts = r.restart_images
        center = registration.consensus(restarts, registration.register_to_mean(restarts)).clamp(0, 1)
        row["consensus"] = _score(center, x, r.labels, y, 10)
        row["restart_psnr"] = [_score(im, x, None, y, 10)["psnr"] for im in restarts]
        print(f"  {'  registered mean of the restarts':<34} PSNR {_fmt(row['consensus']['psnr'])} dB  "
              f"(restarts: {' '.join(f'{p:.2f}' for p in row['restart_psnr'])})", flush=True)
    return row


def case_b(s: argparse.Namespace) -> dict[str, Any]:
    model = _convnet(s)
    x1, y1 = _load(s, 1, "natural")
    x4, y4 = _load(s, 4, "random")
    out: dict[str, Any] = {"setting": {"width": s.width, "iterations": s.iterations, "restarts": s.restarts,
                                       "bn_train": s.bn_train, "labels_B4": y4.tolist()}}
    out["targets"] = {}
    if 1 in s.b_batches:
        out["B1"] = _run("inverting B=1", federated.fedsgd(model, x1, y1), model, "inverting", x1, y1, s)
        out["targets"]["B=1 >= 25 dB"] = out["B1"]["psnr"] >= 25
    if 4 in s.b_batches:
        out["B4"] = _run("inverting B=4 (dup. labels, recovered)", federated.fedsgd(model, x4, y4), model,
                         "inverting", x4, y4, s)
        out["targets"]["B=4 mean >= 18 dB"] = out["B4"]["psnr"] >= 18
    return out


def case_c(s: argparse.Namespace) -> dict[str, Any]:
    model = _convnet(s)
    x, y = _load(s, 8, "unique")
    obs = federated.fedsgd(model, x, y)
    out: dict[str, Any] = {"setting": {"width": s.width, "iterations": s.iterations, "restarts": s.restarts,
                                       "labels": y.tolist()}}
    out["group"] = _run("gradinversion (group consistency)", obs, model, "gradinversion", x, y, s, consensus=True)
    out["no_group"] = _run("gradinversion group=0", obs, model, "gradinversion", x, y, s, consensus=True, group=0.0)
    out["targets"] = {"group beats group=0": out["group"]["psnr"] > out["no_group"]["psnr"]}
    return out


def case_d(s: argparse.Namespace) -> dict[str, Any]:
    model = _convnet(s)
    x, y = _load(s, 8, "random")
    out: dict[str, Any] = {"setting": {"width": s.width, "iterations": s.iterations, "restarts": s.restarts,
                                       "labels_B8": y.tolist(), "local_lr": LOCAL_LR}}
    for pairs in s.pairs:
        obs = federated.multi_pair(model, x, y, pairs=pairs, between="reinit")
        out[f"pairs{pairs}"] = _run(f"geng B=8, {pairs} pair(s)", obs, model, "geng", x, y, s)
    x4, y4 = _load(s, 4, "random")
    obs = federated.fedavg(model, x4, y4, local_steps=4, lr=LOCAL_LR)
    out["fedavg"] = _run(f"geng FedAvg B=4, 4 steps, {s.fedavg_mode}", obs, model, "geng", x4, y4, s,
                         fedavg_mode=s.fedavg_mode)
    out["setting"].update(labels_fedavg=y4.tolist(), fedavg_mode=s.fedavg_mode)
    out["targets"] = {"FedAvg >= 18 dB": out["fedavg"]["psnr"] >= 18}
    return out


DEFENSE_GRID: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("none", "", {}),
    ("gaussian sigma=1e-4", "gaussian", {"sigma": 1e-4}),
    ("gaussian sigma=1e-3", "gaussian", {"sigma": 1e-3}),
    ("gaussian sigma=1e-2", "gaussian", {"sigma": 1e-2}),
    ("prune ratio=0.5", "prune", {"ratio": 0.5}),
    ("prune ratio=0.9", "prune", {"ratio": 0.9}),
    ("clip max_norm=1", "clip", {"max_norm": 1.0}),
)


def case_e(s: argparse.Namespace) -> dict[str, Any]:
    model = _convnet(s)
    x, y = _load(s, 1, "natural")
    clean = federated.fedsgd(model, x, y)
    norm = float(torch.sqrt(sum(t.double().pow(2).sum() for t in clean.pairs[0].shared)))
    numel = sum(t.numel() for t in clean.pairs[0].shared)
    obs = [clean if not name else defenses.apply(clean, name, **params) for _, name, params in DEFENSE_GRID]
    results = attack_many(obs, model, "inverting", restarts=s.restarts, iterations=s.iterations,
                          seed=ATTACK_SEED, device=s.device, **s.override)
    out: dict[str, Any] = {"setting": {"width": s.width, "iterations": s.iterations, "restarts": s.restarts,
                                       "gradient_norm": norm, "gradient_rms": norm / numel ** 0.5}}
    print(f"  clean gradient: L2 norm {norm:.3g}, RMS entry {norm / numel ** 0.5:.3g}", flush=True)
    for (label, _, _), r in zip(DEFENSE_GRID, results):
        row = {**_score(r.images, x, r.labels, y, 10), **_timing(r)}
        _row(label, row)
        out[label] = row
    return out


def case_f(s: argparse.Namespace) -> dict[str, Any]:
    x, y = data.load("mnist", s.images, seed=DATA_SEED, labels="natural", split="test")
    x4, y4 = data.load("mnist", 4, seed=DATA_SEED, labels="random", split="test")
    x, y, x4, y4 = x.to(s.device), y.to(s.device), x4.to(s.device), y4.to(s.device)
    width = s.f_width
    out: dict[str, Any] = {"setting": {"rounds": s.f_rounds, "images": len(y), "dlg_steps": s.dlg_steps,
                                       "dlg_inner": s.dlg_inner, "convnet_width": width, "iterations": s.iterations,
                                       "restarts": s.restarts, "bn_train": s.bn_train, "labels_B4": y4.tolist()},
                           "trained": {}}
    for r in rounds_of("lenet", s.f_rounds):
        lenet, info = trained_model("lenet", r)
        out["trained"][f"lenet/round{r}"] = info
        lenet = lenet.to(s.device)
        obs = [federated.fedsgd(lenet, x[i:i + 1], y[i:i + 1]) for i in range(len(y))]
        results = attack_many(obs, lenet, "idlg", restarts=s.dlg_restarts, iterations=s.dlg_steps,
                              lbfgs_inner=s.dlg_inner, seed=ATTACK_SEED, device=s.device, **s.override)
        row = _one_per_image(results, x, y)
        out[f"lenet_round{r}_idlg_B1"] = row
        print(f"  lenet round {r} (held-out acc {info['test_accuracy']:.3f}): idlg B=1 mean PSNR {_fmt(row['psnr'])} "
              f"dB, median {_fmt(row['median_psnr'])} over {len(y)} digits, label acc {row['label_accuracy']:.0%} "
              f"[{row['wall_s']:.0f} s]", flush=True)
    for r in rounds_of("convnet", s.f_rounds):
        convnet, info = trained_model("convnet", r, width=width)
        out["trained"][f"convnet/round{r}"] = info
        convnet = convnet.to(s.device).train(s.bn_train)
        print(f"  convnet round {r} (held-out acc {info['test_accuracy']:.3f}):", flush=True)
        out[f"convnet_round{r}_inverting_B1"] = _run("  inverting B=1", federated.fedsgd(convnet, x[:1], y[:1]),
                                                     convnet, "inverting", x[:1], y[:1], s)
        out[f"convnet_round{r}_inverting_B4"] = _run("  inverting B=4 (labels recovered)",
                                                     federated.fedsgd(convnet, x4, y4), convnet, "inverting", x4, y4, s)
    return out


def case_g(s: argparse.Namespace) -> dict[str, Any]:
    """The trained-model grid's image part: every preset on every state, B = 1, 4, 8, one
    ``attack_many`` call per (B, model, preset) over all rounds, labels recovered."""
    out: dict[str, Any] = {"setting": {"grid": dataclasses.asdict(GRID), "iterations": s.iterations,
                                       "restarts": s.restarts, "override": s.override, "batches": s.g_batches,
                                       "presets": s.g_presets, "models": s.g_models}, "trained": {}, "targets": {}}
    states: dict[str, list] = {}
    for name in s.g_models:
        states[name] = []
        for r in GRID.round_numbers(name):
            model, info = GRID.trained(name, r)
            out["trained"][f"{name}/round{r}"] = info
            states[name].append((f"round{r}", model.to(s.device).train(GRID.bn == "train")))
    for b in s.g_batches:
        x, y = data.load("mnist", b, seed=DATA_SEED, labels="random", split="test")
        x, y = x.to(s.device), y.to(s.device)
        for name in s.g_models:
            obs = [federated.fedsgd(model, x, y) for _, model in states[name]]
            for preset in s.g_presets:
                results = attack_many(obs, states[name][0][1], preset, restarts=s.restarts, iterations=s.iterations,
                                      seed=ATTACK_SEED, device=s.device, **s.override)
                for (state, _), r in zip(states[name], results):
                    row = {**_score(r.images, x, r.labels, y, 10), **_timing(r)}
                    _row(f"{name} {state} {preset} B={b}", row)
                    out[f"{name}/{state}/{preset}/B{b}"] = row
                    target = {1: 25.0, 4: 18.0}.get(b)
                    if target is not None:
                        out["targets"][f"{name} {state} {preset} B={b} >= {target:g} dB, labels exact"] = (
                            row["psnr"] >= target and bool(row.get("label_exact", True)))
    return out


CASES: dict[str, Callable[[argparse.Namespace], dict[str, Any]]] = {
    "a": case_a, "b": case_b, "c": case_c, "d": case_d, "e": case_e, "f": case_f, "g": case_g}


def _override(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        for cast in (int, float):
            try:
                out[key] = cast(value)
                break
            except ValueError:
                continue
        else:
            out[key] = {"none": None, "true": True, "false": False}.get(value.lower(), value)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default="abcdef", help="cases to run, e.g. 'a' or 'b,c' (default: all)")
    ap.add_argument("--quick", action="store_true", help="smoke-test settings (minutes, not targets)")
    ap.add_argument("--json", default="runs/bench/quality.json",
                    help="write the results here, after every case (default: runs/bench/quality.json)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--width", type=int, help="ConvNet width (default 64; quick 8)")
    ap.add_argument("--iterations", type=int, help="Adam iterations (default: the preset's; quick 20)")
    ap.add_argument("--restarts", type=int, help="restarts for the ConvNet cases (default 4; quick 2)")
    ap.add_argument("--dlg-steps", type=int, help="L-BFGS steps for case a (default 300; quick 3)")
    ap.add_argument("--dlg-restarts", type=int, default=1,
                    help="case a: random initialisations per image, the best by loss is kept (default 1)")
    ap.add_argument("--dlg-inner", type=int, help="L-BFGS iterations per step (default 20; quick 5)")
    ap.add_argument("--images", type=int, help="CIFAR-10 images for case a (default 20; quick 4)")
    ap.add_argument("--bn-train", action="store_true", help="ConvNet BatchNorm in train mode (default: eval)")
    ap.add_argument("--a-presets", default="dlg,idlg", help="presets of case a (default dlg,idlg)")
    ap.add_argument("--pairs", default="1,2,4", help="pair counts for case d (default 1,2,4; '' for none)")
    ap.add_argument("--fedavg-mode", default="unroll", choices=("unroll", "pseudo"),
                    help="how case d's FedAvg attack models the local steps (default unroll)")
    ap.add_argument("--b-batches", default="1,4", help="batch sizes of case b, of 1 and 4 (default 1,4)")
    ap.add_argument("--f-rounds", default="0,1,final", help="case f: trainer rounds to attack; final: the first "
                    "round with >= 95%% held-out accuracy (lenet 100, convnet 5; default 0,1,final)")
    ap.add_argument("--f-width", type=int, default=16, help="case f: width of the trained ConvNet (default 16)")
    ap.add_argument("--g-batches", default=",".join(map(str, GRID.image_batches)),
                    help="case g: batch sizes (default: the grid's)")
    ap.add_argument("--g-presets", default=",".join(GRID.image_presets), help="case g: presets (default: the grid's)")
    ap.add_argument("--g-models", default=",".join(GRID.models), help="case g: models (default: the grid's)")
    ap.add_argument("--set", dest="override", action="append", default=[], metavar="KEY=VALUE",
                    help="override an AttackConfig field in every attack (repeatable)")
    s = ap.parse_args(argv)
    quick = s.quick
    defaults = dict(width=(8, 64), iterations=(20, None), restarts=(2, 4), dlg_steps=(3, 300), dlg_inner=(5, 20),
                    images=(4, 20))
    for key, (q, full) in defaults.items():
        if getattr(s, key) is None:
            setattr(s, key, q if quick else full)
    s.pairs = [int(p) for p in s.pairs.split(",") if p]
    s.f_rounds = [r for r in s.f_rounds.split(",") if r]
    s.b_batches = [int(b) for b in s.b_batches.split(",")]
    if not s.b_batches or set(s.b_batches) - {1, 4}:
        ap.error(f"--b-batches takes 1 and/or 4, got {s.b_batches}")
    s.a_presets = [p for p in s.a_presets.split(",") if p]
    s.g_batches = [int(b) for b in s.g_batches.split(",") if b]
    s.g_presets = [p for p in s.g_presets.split(",") if p]
    s.g_models = [m for m in s.g_models.split(",") if m]
    s.override = _override(s.override)
    torch.set_num_threads(s.threads)
    only = [c for c in s.only.replace(",", "") if c.strip()]
    unknown = [c for c in only if c not in CASES]
    if unknown:
        raise SystemExit(f"--only: unknown case(s) {unknown}; cases are {', '.join(CASES)}")

    settings = {k: v for k, v in vars(s).items() if k not in ("json", "only")}
    header = environment(s.device, argv=sys.argv[1:], platform=platform.platform(),
                         seeds={"data": DATA_SEED, "model": MODEL_SEED, "attack": ATTACK_SEED}, settings=settings)
    print(json.dumps(header), flush=True)
    report: dict[str, Any] = {"header": header, "cases": {}}
    for c in only:
        print(f"case {c}:", flush=True)
        t0 = time.perf_counter()
        out = CASES[c](s)
        out["case_wall_s"] = time.perf_counter() - t0
        for target, met in out.get("targets", {}).items():
            print(f"  target {'MET   ' if met else 'MISSED'} {target}", flush=True)
        report["cases"][c] = out
        write_json(s.json, report, indent=1)
    print(f"results written to {s.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
