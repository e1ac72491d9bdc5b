"""The shipped examples run as the README shows them (at toy sizes where they take options)."""
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastleak import sweeps

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


@pytest.mark.slow
def test_the_defense_sweep_runs_its_ten_jobs_and_reports(tmp_path):
    sweep = sweeps.load(ROOT / "examples" / "sweep_defenses.toml")
    assert len(sweep.jobs()) == 10  # as its header says
    run = subprocess.run([sys.executable, "-m", "fastleak", "sweep", str(ROOT / "examples" / "sweep_defenses.toml"),
                          "--backend", "serial"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert "10 jobs: 0 already done, 10 ok, 0 failed" in run.stdout
    report = subprocess.run([sys.executable, "-m", "fastleak", "sweep", "--report", "runs/sweep_defenses.jsonl"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert (tmp_path / "runs" / "sweep_defenses_report" / "summary.md").exists()


@pytest.mark.slow
def test_the_malicious_sweep_runs_its_jobs_and_reports_what_the_server_recovers(tmp_path):
    sweep = sweeps.load(ROOT / "examples" / "sweep_malicious.toml")
    assert len(sweep.jobs()) == 24  # as its header says
    run = subprocess.run([sys.executable, "-m", "fastleak", "sweep", str(ROOT / "examples" / "sweep_malicious.toml"),
                          "--backend", "serial"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr
    assert "24 jobs: 0 already done, 24 ok, 0 failed" in run.stdout
    rows = [json.loads(line) for line in (tmp_path / "runs" / "sweep_malicious.jsonl").read_text().splitlines()]
    baseline = [r["metrics"] for r in rows if r["settings"]["preset"] == "imprint" and r["settings"]["defense"] is None
                and r["settings"]["clients"] == 1]
    assert len(baseline) == 3 and all(m["recovered_fraction"] == m["singleton_fraction"] > 0.4 for m in baseline)
    report = subprocess.run([sys.executable, "-m", "fastleak", "sweep", "--report", "runs/sweep_malicious.jsonl"],
                            cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert "recovered exactly" in (tmp_path / "runs" / "sweep_malicious_report" / "summary.md").read_text()


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("flwr") is None, reason="the flower extra is not installed")
def test_the_flower_audit_example_scores_every_client(tmp_path):
    out = tmp_path / "audit"
    run = subprocess.run([sys.executable, str(ROOT / "examples" / "flower_audit.py"), "--rounds", "1", "--clients",
                          "2", "--iterations", "4", "--out", str(out)], cwd=ROOT, env=ENV, capture_output=True,
                         text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert len(summary["rounds"]["1"]) == 2 and 0.0 <= summary["label_ln_acc"] <= 1.0
    assert (out / "round_001" / "vs_truth.png").exists()
    assert "labels exactly recovered for" in run.stdout
