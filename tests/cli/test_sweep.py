"""`fastleak sweep` end to end in a subprocess: kill and resume, Ray, reports, errors."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
SWEEP = """
output = "out/results.jsonl"
[fixed]
model = "lenet"
batch = 1
labels = "unique"
preset = "dlg"
restarts = 1
iterations = {iterations}
[grid]
seed = {seeds}
"""
SERIAL = ("--backend", "serial", "--cpus-per-job", "1")


def _env():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    return env


def fastleak(*args, cwd):
    return subprocess.run([sys.executable, "-m", "fastleak", *args], cwd=cwd, env=_env(), capture_output=True,
                          text=True, timeout=300)


def _records(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def _default_sigint():
    """Ctrl-C handling in the child even when the tests run as a background job, which starts
    with SIGINT ignored (and would pass that on)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _stop_after(results, lines, sig, cwd):
    """Start the serial sweep and send ``sig`` once the results file holds ``lines`` lines."""
    proc = subprocess.Popen([sys.executable, "-m", "fastleak", "sweep", "s.toml", *SERIAL], cwd=cwd, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        while proc.poll() is None and not (results.exists() and results.read_bytes().count(b"\n") >= lines):
            time.sleep(0.05)
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, stderr


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_recomputing(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP.format(iterations=10, seeds=list(range(6))))
    results = tmp_path / "out" / "results.jsonl"
    code, _ = _stop_after(results, 1, signal.SIGKILL, tmp_path)
    assert code == -signal.SIGKILL
    killed = results.read_bytes()
    done = len(_records(results))
    assert 1 <= done < 5
    code, stderr = _stop_after(results, done + 1, signal.SIGINT, tmp_path)
    assert code == -signal.SIGINT and "interrupted; finished jobs are saved in out/results.jsonl" in stderr
    assert f"6 jobs, {done} already done" in stderr
    interrupted = results.read_bytes()
    done = len(_records(results))
    assert interrupted.startswith(killed) and done < 6
    again = fastleak("sweep", "s.toml", *SERIAL, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"6 jobs, {done} already done" in again.stderr
    assert results.read_bytes().startswith(interrupted)
    keys = [r["key"] for r in _records(results)]
    assert len(keys) == len(set(keys)) == 6
    assert sorted(r["settings"]["seed"] for r in _records(results)) == list(range(6))


@pytest.mark.slow
def test_sweep_on_a_local_ray_then_report(tmp_path):
    pytest.importorskip("ray")
    (tmp_path / "s.toml").write_text(SWEEP.format(iterations=3, seeds=[0, 1]) + 'model_options = [{}]\n'
                                     '[[cases]]\n[[cases]]\ndefense = "gaussian"\ndefense_params = {sigma = 0.5}\n')
    proc = fastleak("sweep", "s.toml", "--workers", "2", "--output", "r.jsonl", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "4 jobs: 0 already done, 4 ok, 0 failed (ray backend)" in proc.stdout
    assert len(_records(tmp_path / "r.jsonl")) == 4
    report = fastleak("sweep", "--report", "r.jsonl", cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    header, _, *rows = report.stdout.splitlines()[:4]
    assert header.startswith("| defense | defense_params.sigma | jobs ok | PSNR (dB) |")
    assert rows[0].startswith("| - | - | 2/2 |") and rows[1].startswith("| gaussian | 0.5 | 2/2 |")
    out = tmp_path / "r_report"
    assert "## Failed jobs" not in (out / "summary.md").read_text()
    Image.open(out / "psnr_by_setting.png").verify()


@pytest.mark.slow
def test_failed_jobs_exit_1_and_are_kept(tmp_path):
    (tmp_path / "s.toml").write_text(SWEEP.format(iterations=3, seeds=[0]).replace('model = "lenet"\n', "")
                                     + 'model = ["lenet", "resnet999"]\n')
    proc = fastleak("sweep", "s.toml", *SERIAL, cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert "2 jobs: 0 already done, 1 ok, 1 failed" in proc.stdout
    failed = [r for r in _records(tmp_path / "out" / "results.jsonl") if r["status"] == "failed"]
    assert len(failed) == 1 and failed[0]["attempts"] == 2 and "resnet999" in failed[0]["error"]
    dry = fastleak("sweep", "s.toml", "--dry-run", "--retry-failed", cwd=tmp_path)
    assert dry.returncode == 0 and "1 of 2 jobs to run" in dry.stdout and "model=resnet999" in dry.stdout


@pytest.mark.parametrize("args, text, message", [
    ((), None, "give either a sweep file or --report"),
    (("s.toml", "--report", "r.jsonl"), "", "give either a sweep file or --report"),
    (("s.toml",), "[grid]\nmodle = ['lenet']\n", "unknown experiment option(s) ['modle']"),
    (("s.toml",), "model = 'lenet'\n", "unknown top-level key(s) ['model']"),
    (("missing.toml",), None, "sweep file 'missing.toml' does not exist"),
    (("--report", "missing.jsonl"), None, "results file 'missing.jsonl' does not exist"),
    (("s.toml", "--backend", "dask"), "", "unknown sweep backend 'dask'"),
])
def test_bad_input_is_one_clear_error(tmp_path, args, text, message):
    if text is not None:
        (tmp_path / "s.toml").write_text(text)
    proc = fastleak("sweep", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert message in proc.stderr and "fix:" in proc.stderr
