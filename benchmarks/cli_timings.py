"""Wall time of the commands the README shows, on an idle machine and with one core kept busy.

    python -m benchmarks.cli_timings [--only demo,labels] [--loads idle,busy] [--json runs/bench/cli.json]

Every command runs as a user runs it: the ``fastleak`` console script beside this Python, with the
CLI's default threading policy, in a scratch folder that holds what the commands read (the README's
``run.toml``, a captured observation and the user's ``mypkg/nets.py`` for ``audit``). Outputs are
deleted before each command, so a sweep or a training run starts from scratch every time.
``busy``: a second process spins on one core for the whole command, as other work on a shared
machine does. The ratio busy/idle is the CLI's promise: at most 1.5.

Two more rows show what the threading policy buys: the demo under libgomp's default policy (torch
loaded before the CLI could set ``OMP_WAIT_POLICY``, as in a library user's process) and with
``--threads 1``.
"""
from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from benchmarks.environment import write_json

ROOT = Path(__file__).resolve().parents[1]
FASTLEAK = [str(Path(sys.executable).parent / "fastleak")]
LIBGOMP_DEFAULT = [sys.executable, "-c", "import sys, torch; from fastleak.cli import main; sys.exit(main())"]

USER_MODEL = '''from torch import nn


class Net(nn.Module):
    def __init__(self, num_classes=10, width=16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, width, 5, stride=2, padding=2), nn.Sigmoid(),
                                      nn.Conv2d(width, width, 5, stride=2, padding=2), nn.Sigmoid(), nn.Flatten())
        self.head = nn.Linear(width * 8 * 8, num_classes)

    def forward(self, x):
        return self.head(self.features(x))
'''

RUN_TOML = '''model = "lenet"
batch = 2
preset = "dlg"
restarts = 1
iterations = 100
'''


@dataclass(frozen=True)
class Case:
    name: str
    argv: tuple[str, ...]
    fresh: tuple[str, ...] = ()  # outputs deleted before the command runs
    launcher: tuple[str, ...] = tuple(FASTLEAK)


CASES = (
    Case("demo", ("demo",)),
    Case("demo --fast", ("demo", "--fast")),
    Case("attack --model lenet --batch 1 --preset dlg", ("attack", "--model", "lenet", "--batch", "1", "--preset",
                                                          "dlg")),
    Case("attack --mode fedavg --local-steps 4 --preset geng --width 16 --option tv=1e-4 --restarts 2 --iterations 300",
         ("attack", "--mode", "fedavg", "--local-steps", "4", "--preset", "geng", "--width", "16", "--option",
          "tv=1e-4", "--restarts", "2", "--iterations", "300")),
    Case("attack --defense gaussian --defense-param sigma=0.01 --width 16 --option tv=1e-4 --restarts 1 --iterations 300",
         ("attack", "--defense", "gaussian", "--defense-param", "sigma=0.01", "--width", "16", "--option", "tv=1e-4",
          "--restarts", "1", "--iterations", "300")),
    Case("attack --config run.toml", ("attack", "--config", "run.toml")),
    Case("labels --batch 32 --labels repeat:4", ("labels", "--batch", "32", "--labels", "repeat:4")),
    Case("train --model lenet --dataset mnist --out runs/train/lenet",
         ("train", "--model", "lenet", "--dataset", "mnist", "--out", "runs/train/lenet"), ("runs/train/lenet",)),
    Case("attack --state-dict runs/train/lenet/round_100.pt --batch 4",
         ("attack", "--state-dict", "runs/train/lenet/round_100.pt", "--batch", "4")),
    Case("audit captured.obs --model mypkg.nets:Net --state-dict global.pt",
         ("audit", "captured.obs", "--model", "mypkg.nets:Net", "--state-dict", "global.pt")),
    Case("bench", ("bench",)),
    Case("sweep examples/sweep_defenses.toml", ("sweep", str(ROOT / "examples" / "sweep_defenses.toml")),
         ("runs/sweep_defenses.jsonl",)),
    Case("sweep --report runs/sweep_defenses.jsonl", ("sweep", "--report", "runs/sweep_defenses.jsonl"),
         ("runs/sweep_defenses_report",)),
    Case("demo, libgomp's default wait policy", ("demo",), launcher=tuple(LIBGOMP_DEFAULT)),
    Case("demo --threads 1", ("demo", "--threads", "1")),
)


def prepare(scratch: Path) -> None:
    """The files the README's commands read, as a user would have them."""
    import torch

    from fastleak import data, federated

    (scratch / "run.toml").write_text(RUN_TOML)
    (scratch / "mypkg").mkdir()
    (scratch / "mypkg" / "__init__.py").write_text("")
    (scratch / "mypkg" / "nets.py").write_text(USER_MODEL)
    spec = importlib.util.spec_from_file_location("mypkg.nets", scratch / "mypkg" / "nets.py")
    nets = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(nets)

    torch.manual_seed(0)
    net = nets.Net()
    x, y = data.load("cifar10", 4, seed=0, labels="random")
    federated.save(federated.fedsgd(net, x, y), scratch / "captured.obs")
    torch.save(net.state_dict(), scratch / "global.pt")


def timed(case: Case, scratch: Path, busy: bool) -> dict:
    for path in map(scratch.joinpath, case.fresh):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        start = time.perf_counter()
        proc = subprocess.run([*case.launcher, *case.argv], cwd=scratch, capture_output=True, text=True)
        seconds = time.perf_counter() - start
    finally:
        if spinner is not None:
            spinner.kill()
            spinner.wait()
    if proc.returncode != 0:
        raise RuntimeError(f"{case.name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return {"case": case.name, "load": "busy" if busy else "idle", "seconds": round(seconds, 1)}


def table(rows: list[dict]) -> str:
    by_case: dict[str, dict[str, float]] = {}
    for row in rows:
        by_case.setdefault(row["case"], {})[row["load"]] = row["seconds"]
    lines = ["| command | idle (s) | one core busy (s) | busy / idle |", "|---|---:|---:|---:|"]
    for case, loads in by_case.items():
        idle, busy = loads.get("idle"), loads.get("busy")
        ratio = f"{busy / idle:.2f}" if idle and busy else "-"
        lines.append(f"| `fastleak {case}` | {idle if idle is not None else '-'} | "
                     f"{busy if busy is not None else '-'} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=None, help="comma-separated substrings of the commands to time")
    ap.add_argument("--loads", default="idle,busy", help="idle and/or busy")
    ap.add_argument("--json", default="runs/bench/cli.json", help="write the rows here as well")
    args = ap.parse_args()
    wanted = [w for w in (args.only or "").split(",") if w]
    cases = [c for c in CASES if not wanted or any(w in c.name for w in wanted)]
    if any("state-dict runs/train" in c.name for c in cases) and not any(c.name.startswith("train") for c in cases):
        cases.insert(0, next(c for c in CASES if c.name.startswith("train")))
    loads = args.loads.split(",")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        prepare(scratch)
        print(f"{os.cpu_count()} CPUs; scratch folder {scratch}", flush=True)
        for case in cases:
            for load in loads:
                rows.append(timed(case, scratch, busy=load == "busy"))
                print(f"{rows[-1]['seconds']:>7.1f} s  {load:<4}  fastleak {case.name}", flush=True)
    print("\n" + table(rows))
    write_json(args.json, {"date": time.strftime("%Y-%m-%d"), "cpus": os.cpu_count(), "rows": rows})


if __name__ == "__main__":
    main()
