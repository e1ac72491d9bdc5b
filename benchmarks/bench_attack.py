"""End-to-end attack speed: fastleak's batched engine against the eager reference, in one run.

    python -m benchmarks.bench_attack [--json runs/bench/attack.json] [--device cpu|cuda] [--quick] [--threads N]
                                      [--only NAME] [--profile table.txt] [--ablate]

Both sides attack the same model, the same real images (``fastleak.data``), the same FedSGD
observation, with the same preset, iterations, seed and the true labels (so only the
optimisation is measured). Every case side runs in its own subprocess, so its peak memory
(max RSS, and peak CUDA memory on a GPU) is its own.

Cases:
  1. inverting, convnet width 32, CIFAR-10, B=4, R=8: attack iterations per second
     (one attack iteration advances all R restarts by one step; the eager side runs the
     restarts one after another, so its time per attack iteration is the sum over restarts).
  2. DLG sweep: 32 independent single-image attacks on LeNet, 100 L-BFGS iterations each
     (fastleak: one ``attack_many`` call; eager: 32 attacks one after another): attacks per minute.
  3. inverting, ResNet-18, CIFAR-10, B=8, R=4: attack iterations per second.
  4. limit ratio: one fastleak attack iteration (convnet width 32, B=4, R=1) over one plain
     training step (forward + backward) on the same batch.
  5. scaling: fastleak's time per iteration against B (R=1) and R (B=4), convnet width 32,
     plotted to ``runs/bench/scaling.png`` (``--plot``; the recorded plots live in benchmarks/results/).

Timing: 1 warm-up and 3 timed iterations per case (case 4: 3 and 10), the median time of the
timed iterations; case 2 times the whole runs, after one untimed two-iteration attack on each
side (imports and first-call costs are paid once per process, not once per sweep). Two clocks
are reported: wall time (the targets are judged on it) and, on the CPU, the worker's CPU time,
which other jobs on a shared machine disturb much less (with one thread it is the time on an
otherwise idle core), or, on a GPU, the device timeline between CUDA events recorded at the
same points. Every GPU time stamp first waits for the work queued before it.
``--threads`` sets torch's intra-op threads in every worker; on a machine shared with other
jobs, 1 thread avoids OpenMP oversubscription.

``--ablate`` runs fastleak's side of cases 1-3 again with one engine feature off at a time: the
lean convolutions (``lean_conv=False``), the compiled ops (``FASTLEAK_REFERENCE_OPS=1``: the
pure-PyTorch references) and, on a GPU, the CUDA graph (``cuda_graph=False``); each one's time
over the full engine's is printed as the speed-up that feature earns.

The first-iteration objective of both sides is printed and compared (relative tolerance
1e-4). For Adam that is the objective at the initial images; fastleak's L-BFGS records the
objective after each step while ``torch.optim.LBFGS.step`` returns it before the step, so for
L-BFGS the engine's first record is compared with the eager side's second.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from benchmarks.environment import environment, write_results

ROOT = Path(__file__).resolve().parents[1]  # the workers run ``python -m`` from here

LOSS_RTOL = 1e-4
# Plain float32 on both sides: cuDNN's default TF32 convolutions differ from float32 by about
# 1e-3 relative, more than the first-iteration loss check allows.
ALLOW_TF32 = False
DATA_SEED, MODEL_SEED, ATTACK_SEED = 0, 0, 1


@dataclass(frozen=True)
class Workload:
    """One attack setting: ``attacks`` observations of ``batch`` images, ``restarts`` each."""

    model: str
    batch: int
    restarts: int
    preset: str
    warmup: int
    timed: int
    width: int | None = None
    attacks: int = 1
    dataset: str = "cifar10"
    overrides: dict = field(default_factory=dict)

    @property
    def iterations(self) -> int:
        return self.warmup + self.timed


@dataclass(frozen=True)
class Case:
    name: str
    kind: str            # "iterate": time per iteration; "sweep": whole runs; "limit": vs a training step
    workload: Workload
    sides: tuple[str, ...]
    target: float | None  # speed-up over eager (iterate, sweep) or the largest attack/train ratio (limit)


def _label(w: Workload) -> str:
    width = f"-w{w.width}" if w.width is not None else ""
    return f"{w.model}{width} B{w.batch} R{w.restarts}"


def cases(quick: bool) -> list[Case]:
    """The benchmark's cases; ``quick`` shrinks every one of them to a smoke-test size."""
    conv = dict(model="convnet", width=8 if quick else 32, preset="inverting")
    warm = dict(warmup=1, timed=2) if quick else dict(warmup=1, timed=3)
    dlg = dict(labels="recover", lbfgs_inner=1)
    w1 = Workload(batch=2 if quick else 4, restarts=2 if quick else 8, **conv, **warm)
    w2 = Workload(model="lenet", batch=1, restarts=1, attacks=4 if quick else 32, preset="dlg", warmup=0,
                  timed=10 if quick else 100, overrides=dlg)  # timed as whole runs
    w3 = Workload(model="resnet18", batch=2 if quick else 8, restarts=2 if quick else 4, preset="inverting", **warm)
    w4 = Workload(batch=4, restarts=1, **conv, **(warm if quick else dict(warmup=3, timed=10)))
    out = [
        Case(f"1 inverting {_label(w1)}", "iterate", w1, ("fastleak", "eager"), 2.0),
        Case(f"2 dlg {w2.model} {w2.attacks} attacks x {w2.iterations} its", "sweep", w2, ("fastleak", "eager"), 4.0),
        Case(f"3 inverting {_label(w3)}", "iterate", w3, ("fastleak", "eager"), 1.3),
        Case(f"4 limit {_label(w4)}", "limit", w4, ("fastleak", "eager", "train"), 3.0),
    ]
    batches, restarts = ((1, 4), (1, 4)) if quick else ((1, 4, 16, 64), (1, 4, 16))
    scaling = [Workload(batch=b, restarts=1, **conv, **warm) for b in batches]
    scaling += [Workload(batch=4, restarts=r, **conv, **warm) for r in restarts if r != 1]
    out += [Case(f"5 scaling {_label(w)}", "scale", w, ("fastleak",), None) for w in scaling]
    return out


# ---------------------------------------------------------------- worker (one case side per process)

def _rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _setup(w: Workload):
    import fastleak.data as data
    import fastleak.models as models
    from fastleak.attacks.presets import configure
    from fastleak.federated import fedsgd

    kw = {"width": w.width} if w.width is not None else {}
    model = models.build(w.model, data.num_classes(w.dataset), seed=MODEL_SEED, **kw)
    x, y = data.load(w.dataset, w.attacks * w.batch, seed=DATA_SEED)
    xs, ys = x.split(w.batch), list(y.split(w.batch))
    observations = [fedsgd(model, xi, yi) for xi, yi in zip(xs, ys)]
    # plain restarts on both sides: the presets' own search would change the rows the eager side runs
    config, execution = configure(w.preset, w.iterations, record_every=1, **{"search": {}, **w.overrides})
    return model, observations, ys, config, execution, (xs[0], ys[0])


def clock_names(device: str) -> tuple[str, str]:
    """The two clocks of every time stamp: the wall clock (time.perf_counter), and the worker's
    CPU time (time.process_time) or, on a GPU, the device timeline between CUDA events."""
    return ("wall", "cuda_events") if device == "cuda" else ("wall", "cpu")


class Stopwatch:
    """Seconds since construction on both clocks of ``clock_names``; on a GPU each reading waits
    for the work queued so far, so that both clocks include it."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.start = self._now()

    def _now(self) -> tuple[float, float | torch.cuda.Event]:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            torch.cuda.synchronize()
            return time.perf_counter(), event
        return time.perf_counter(), time.process_time()

    def elapsed(self) -> list[float]:
        wall, second = self._now()
        second = self.start[1].elapsed_time(second) / 1e3 if self.cuda else second - self.start[1]
        return [wall - self.start[0], second]


def _steady(stamps: list[list[float]], warmup: int, timed: int, clock: int) -> float:
    """Median seconds per iteration over the timed iterations (stamps[k] is taken after step k+1);
    the median keeps a load spike from other processes on the machine out of the result."""
    if warmup == 0:
        raise ValueError("steady-state timing needs at least one warm-up iteration")
    window = [stamp[clock] for stamp in stamps[warmup - 1:warmup + timed]]
    return statistics.median(b - a for a, b in zip(window, window[1:]))


def _run_fastleak(w: Workload, device: torch.device, model, observations, labels, config, execution,
                  profiler=None) -> dict:
    from fastleak.attacks import attack_many

    stamps: list[list[float]] = []
    first: list[torch.Tensor] = []

    def callback(step: int, losses: torch.Tensor) -> None:
        stamps.append(watch.elapsed())
        if step == 1:
            first.append(losses.detach().cpu())
        if profiler is not None:
            profiler.step()

    watch = Stopwatch(device)
    attack_many(observations, model, config, labels=labels, restarts=w.restarts, seed=ATTACK_SEED, device=device,
                callback=callback, execution=execution)
    return {"first_losses": first[0].tolist(), "total": watch.elapsed(), "stamps": stamps}


def _run_eager(w: Workload, device: torch.device, model, observations, labels, config, execution=None) -> dict:
    from benchmarks.eager_reference import eager_attack_many

    stamps: dict[str, list[list[float]]] = {}

    def on_step(p: int, r: int, step: int, loss: torch.Tensor) -> None:
        stamps.setdefault(f"{p},{r}", []).append(watch.elapsed())

    watch = Stopwatch(device)
    results = eager_attack_many(observations, model, config, labels, restarts=w.restarts, seed=ATTACK_SEED,
                                device=device, on_step=on_step)
    total = watch.elapsed()
    column = 1 if config.optimizer == "lbfgs" else 0
    first = torch.cat([res.losses[:, column] for res in results])
    return {"first_losses": first.tolist(), "total": total, "stamps": stamps}


def _run_train(w: Workload, device: torch.device, model, batch) -> dict:
    from fastleak.federated import client_loss

    model = model.to(device)
    x, y = (t.to(device) for t in batch)
    stamps = []
    watch = Stopwatch(device)
    for _ in range(w.iterations):
        model.zero_grad(set_to_none=True)
        client_loss(model(x), y).backward()
        stamps.append(watch.elapsed())
    return {"total": stamps[-1], "stamps": stamps}


def worker(case: Case, side: str, device: torch.device, profile_path: str | None, engine: dict) -> dict:
    torch.backends.cudnn.allow_tf32 = ALLOW_TF32
    torch.backends.cuda.matmul.allow_tf32 = ALLOW_TF32
    w = case.workload
    model, observations, labels, config, execution, batch = _setup(w)
    execution = execution.replace(**{**engine, **(ABLATIONS[side][1] if side in ABLATIONS else {})})
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    rss_before = _rss_mib()
    if side == "fastleak" and profile_path:
        from torch.profiler import ProfilerActivity, profile, schedule

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
        # the callback steps the profiler after every attack iteration: skip the first, record the second
        with profile(activities=activities, schedule=schedule(wait=1, warmup=0, active=1),
                     record_shapes=True) as prof:
            out = _run_fastleak(w, device, model, observations, labels, config.replace(iterations=2), execution,
                                profiler=prof)
        sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
        with open(profile_path, "w") as f:
            f.write(prof.key_averages().table(sort_by=sort, row_limit=20) + "\n")
            f.write(prof.key_averages(group_by_input_shape=True).table(sort_by=sort, row_limit=20) + "\n")
        return out
    run = {"fastleak": _run_fastleak, "eager": _run_eager}.get("fastleak" if side in ABLATIONS else side)
    if run is None:
        out = _run_train(w, device, model, batch)
    else:
        if case.kind == "sweep":  # pay imports and first-call costs outside the timed runs
            run(w, device, model, observations[:1], labels[:1], config.replace(iterations=2), execution)
        out = run(w, device, model, observations, labels, config, execution)
    out["rss_before_mib"] = rss_before
    out["rss_peak_mib"] = _peak_rss_mib()
    out["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return out


# ---------------------------------------------------------------- parent

def run_side(case: Case, side: str, args, profile_path: str | None = None) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as tmp:
        out_path = tmp.name
    cmd = [sys.executable, "-m", __spec__.name, "--worker", case.name, "--side", side, "--worker-out",
           out_path, "--device", args.device, "--threads", str(args.threads)]
    cmd += ["--quick"] if args.quick else []
    cmd += ["--no-cuda-graph"] if args.no_cuda_graph else []
    cmd += ["--no-lean-conv"] if args.no_lean_conv else []
    cmd += ["--profile", profile_path] if profile_path else []
    env = {**os.environ, **ABLATIONS[side][2]} if side in ABLATIONS else None
    try:
        subprocess.run(cmd, check=True, env=env, cwd=ROOT)
        with open(out_path) as f:
            return json.load(f)
    finally:
        os.unlink(out_path)


def seconds_per_iteration(case: Case, side: str, result: dict, clock: int) -> float:
    w = case.workload
    if side == "eager":
        return sum(_steady(stamps, w.warmup, w.timed, clock) for stamps in result["stamps"].values())
    return _steady(result["stamps"], w.warmup, w.timed, clock)


def _first_stamp(result: dict) -> list[float]:
    stamps = result["stamps"]
    return (stamps["0,0"] if isinstance(stamps, dict) else stamps)[0]


def compare_losses(a: list[float], b: list[float]) -> float:
    ta, tb = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    return float(((ta - tb).abs() / tb.abs().clamp_min(1e-12)).max())


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.6g}" for v in values) + "]"


def _timing(case: Case, results: dict[str, dict], clock: int) -> dict:
    w = case.workload
    out: dict = {}
    if case.kind == "sweep":
        out["total_s"] = {side: r["total"][clock] for side, r in results.items()}
        out["attacks_per_min"] = {side: w.attacks / t * 60 for side, t in out["total_s"].items()}
        out["ratio"] = out["attacks_per_min"]["fastleak"] / out["attacks_per_min"]["eager"]
        out["earned"] = {ABLATIONS[side][0]: t / out["total_s"]["fastleak"]
                         for side, t in out["total_s"].items() if side in ABLATIONS}
    else:
        out["s_per_it"] = {side: seconds_per_iteration(case, side, r, clock) for side, r in results.items()}
        t = out["s_per_it"]
        if case.kind == "iterate":
            out["ratio"] = t["eager"] / t["fastleak"]
            out["earned"] = {ABLATIONS[side][0]: t[side] / t["fastleak"] for side in t if side in ABLATIONS}
        elif case.kind == "limit":
            out["ratio"] = t["fastleak"] / t["train"]
            out["eager_ratio"] = t["eager"] / t["train"]
    if case.target is not None:
        out["met"] = out["ratio"] <= case.target if case.kind == "limit" else out["ratio"] >= case.target
    return out


def summarize(case: Case, results: dict[str, dict], clocks: tuple[str, str]) -> dict:
    """One case's row; ``ratio`` and ``met`` are on the wall clock, ``timing`` holds both clocks."""
    row: dict = {"case": case.name, "kind": case.kind, "workload": asdict(case.workload), "target": case.target,
                 "memory": {side: {k: r.get(k) for k in ("rss_before_mib", "rss_peak_mib", "cuda_peak_mib")}
                            for side, r in results.items()},
                 "cold_s": {side: _first_stamp(r)[0] for side, r in results.items()},
                 "timing": {name: _timing(case, results, clock) for clock, name in enumerate(clocks)}}
    row["ratio"] = row["timing"]["wall"].get("ratio")
    row["met"] = row["timing"]["wall"].get("met")
    if "fastleak" in results and "eager" in results:
        row["first_losses"] = {side: results[side]["first_losses"] for side in ("fastleak", "eager")}
        row["loss_max_rel_diff"] = compare_losses(results["fastleak"]["first_losses"],
                                                  results["eager"]["first_losses"])
        row["losses_agree"] = row["loss_max_rel_diff"] <= LOSS_RTOL
    return row


def print_row(row: dict) -> None:
    mem = ", ".join(f"{side} {m['rss_peak_mib']:.0f} MiB (+{m['rss_peak_mib'] - m['rss_before_mib']:.0f})"
                    + (f" cuda {m['cuda_peak_mib']:.0f} MiB" if m["cuda_peak_mib"] is not None else "")
                    for side, m in row["memory"].items())
    print(f"[{row['case']}]")
    for clock in row["timing"]:
        t = row["timing"][clock]
        if row["kind"] == "sweep":
            speed = ", ".join(f"{side} {t['attacks_per_min'][side]:.2f} attacks/min ({t['total_s'][side]:.1f} s)"
                              for side in t["total_s"])
        else:
            speed = ", ".join(f"{side} {v * 1e3:.1f} ms/it" for side, v in t["s_per_it"].items())
        verdict = ""
        if "met" in t:
            op = "<=" if row["kind"] == "limit" else ">="
            verdict = f"; ratio {t['ratio']:.2f} (target {op} {row['target']}: {'met' if t['met'] else 'MISSED'})"
        print(f"    {clock:4s} {speed}{verdict}")
        if t.get("earned"):
            print("         speed-up earned by " + ", ".join(f"{k} {v:.2f}x" for k, v in t["earned"].items()))
    print(f"    peak RSS: {mem}")
    if "first_losses" in row:
        print(f"    first-iteration losses fastleak {_fmt(row['first_losses']['fastleak'])}")
        print(f"    first-iteration losses eager    {_fmt(row['first_losses']['eager'])}")
        print(f"    max relative difference {row['loss_max_rel_diff']:.2e} "
              f"({'agree' if row['losses_agree'] else 'DISAGREE'} at {LOSS_RTOL:g})")
    sys.stdout.flush()


def plot_scaling(rows: list[dict], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = [r for r in rows if r["kind"] == "scale"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, fixed, label in ((axes[0], "batch", ("restarts", 1), "batch size B (R=1)"),
                                  (axes[1], "restarts", ("batch", 4), "restarts R (B=4)")):
        points = sorted((r["workload"][key], r["timing"]) for r in scale if r["workload"][fixed[0]] == fixed[1])
        if not points:
            continue
        xs = [p[0] for p in points]
        for clock, style in zip(points[0][1], ("o-", "s:")):
            ys = [p[1][clock]["s_per_it"]["fastleak"] for p in points]
            ax.loglog(xs, ys, style, label=f"fastleak ({clock} clock)")
        ax.loglog(xs, [ys[0] * x / xs[0] for x in xs], "--", color="gray", label=f"linear in the first point ({clock})")
        ax.set_xlabel(label)
        ax.set_ylabel("seconds per attack iteration")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle("fastleak attack iteration time, convnet, inverting preset")
    fig.tight_layout()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=120)


def engine_options(args) -> dict:
    """The Execution settings of fastleak's side that the command line switches."""
    return {"cuda_graph": not args.no_cuda_graph, "lean_conv": not args.no_lean_conv}


# ``--ablate``: fastleak again with one engine feature off; side name -> (what is off, Execution
# settings, environment). Each one's time over the full engine's is the speed-up that feature earns.
ABLATIONS = {
    "fastleak-lean-conv": ("lean convolutions", {"lean_conv": False}, {}),
    "fastleak-compiled-ops": ("compiled ops", {}, {"FASTLEAK_REFERENCE_OPS": "1"}),
    "fastleak-cuda-graph": ("CUDA graph", {"cuda_graph": False}, {}),
}


def case_sides(case: Case, args) -> tuple[str, ...]:
    if not args.ablate or case.kind not in ("iterate", "sweep"):
        return case.sides
    names = [n for n in ABLATIONS if n != "fastleak-cuda-graph" or args.device == "cuda"]
    return (*case.sides, *names)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", default=os.path.join("runs", "bench", "attack.json"),
                    help="write results to this JSON file (default: runs/bench/attack.json)")
    ap.add_argument("--plot", default=os.path.join("runs", "bench", "scaling.png"),
                    help="where the scaling plot goes (default: runs/bench/scaling.png; the recorded plots are "
                         "benchmarks/results/scaling.png and scaling_cuda.png, written with --plot)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test of the harness")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads(),
                    help="torch intra-op threads in every case (default: torch's default)")
    ap.add_argument("--only", default=None,
                    help="run only cases whose name contains this (several, separated by commas)")
    ap.add_argument("--no-cuda-graph", action="store_true",
                    help="fastleak runs its Adam steps eagerly on a GPU instead of replaying a CUDA graph")
    ap.add_argument("--no-lean-conv", action="store_true",
                    help="fastleak simulates convolutions with torch's own double backward")
    ap.add_argument("--ablate", action="store_true",
                    help="also run fastleak with each engine feature off (lean convolutions, compiled ops, CUDA "
                         "graph on a GPU) and report what each earns")
    ap.add_argument("--profile", default=None, help="write the torch.profiler table of one fastleak "
                                                     "iteration of case 1 to this file")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    all_cases = cases(args.quick)

    if args.worker is not None:
        case = next(c for c in all_cases if c.name == args.worker)
        out = worker(case, args.side, torch.device(args.device), args.profile, engine_options(args))
        with open(args.worker_out, "w") as f:
            json.dump(out, f)
        return 0

    import fastleak.ops  # noqa: F401  (checks that the compiled ops load before spawning workers)

    load = os.getloadavg()
    print(f"device {args.device}, torch {torch.__version__}, {args.threads} thread(s), "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    rows = []
    selected = [c for c in all_cases if not args.only or any(o in c.name for o in args.only.split(","))]
    for case in selected:
        row = summarize(case, {side: run_side(case, side, args) for side in case_sides(case, args)},
                        clock_names(args.device))
        print_row(row)
        rows.append(row)
    if args.profile:
        case = selected[0]
        run_side(case, "fastleak", args, profile_path=os.path.abspath(args.profile))
        print(f"profile of one fastleak iteration of [{case.name}] written to {args.profile}")
    load_after = os.getloadavg()
    if any(r["kind"] == "scale" for r in rows):
        plot_scaling(rows, args.plot)
        print(f"scaling plot written to {args.plot}")
    meta = environment(args.device, threads=args.threads, quick=args.quick, tf32=ALLOW_TF32,
                       engine=engine_options(args), load_average_before=load, load_average_after=load_after)
    write_results(args.json, meta, rows)
    print(f"results written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
