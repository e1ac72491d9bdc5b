"""Sweeps on a real local Ray (2 CPUs, started once for the module) and on the serial backend."""
import json
import math
import shutil

import pytest
import torch

from fastleak.sweeps import SweepSpec, read_results, run_sweep

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.filterwarnings("ignore:Tip. In future versions of Ray:FutureWarning")

TINY = {"dataset": "cifar10", "model": "lenet", "batch": 1, "labels": "unique", "preset": "inverting",
        "restarts": 1, "iterations": 4}
METRICS = ("psnr", "ssim", "mse", "ln_acc", "le_acc")


def _sweep(seeds, **extra):
    fixed = {k: v for k, v in TINY.items() if k not in extra}
    return SweepSpec.from_dict({"fixed": fixed, "grid": {"seed": list(seeds), **extra}})


@pytest.fixture(scope="module")
def local_ray():
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def finished(local_ray, tmp_path_factory):
    """A three-job sweep run to completion on Ray, with the progress events it reported."""
    path = tmp_path_factory.mktemp("sweep") / "results.jsonl"
    events = []
    summary = run_sweep(_sweep([0, 1, 2]), path, backend="ray", callback=events.append)
    return path, summary, events


@pytest.mark.slow
def test_a_small_sweep_completes_on_ray(finished):
    path, summary, events = finished
    assert (summary.backend, summary.total, summary.skipped, summary.ok, summary.failed) == ("ray", 3, 0, 3, 0)
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert sorted(r["settings"]["seed"] for r in lines) == [0, 1, 2]
    assert {r["key"] for r in lines} == {j.key for j in _sweep([0, 1, 2]).jobs()}
    for r in lines:
        assert r["status"] == "ok" and r["attempts"] == 1 and r["error"] is None and r["wall_time_s"] > 0
        assert all(math.isfinite(r["metrics"][m]) for m in METRICS)
        assert r["metrics"]["iterations"] == 4
    assert events[0].result is None and events[0].pending == 3
    assert [e.done for e in events[1:]] == [1, 2, 3]
    assert {e.result.key for e in events[1:]} == {r["key"] for r in lines}


@pytest.mark.slow
def test_a_restarted_sweep_runs_only_the_missing_jobs(finished, tmp_path):
    path = tmp_path / "results.jsonl"
    shutil.copy(finished[0], path)
    before = path.read_bytes()
    with open(path, "ab") as f:  # what a kill in the middle of a write leaves
        f.write(b'{"version": 1, "key": "0123", "status": "o')
    summary = run_sweep(_sweep([0, 1, 2, 3, 4]), path, backend="ray")
    assert (summary.total, summary.skipped, summary.ok) == (5, 3, 2)
    after = path.read_bytes()
    assert after.startswith(before)
    new = [json.loads(line) for line in after[len(before):].decode().splitlines()]
    assert sorted(r["settings"]["seed"] for r in new) == [3, 4]
    again = run_sweep(_sweep([0, 1, 2, 3, 4]), path, backend="ray")
    assert (again.skipped, again.ok, again.failed) == (5, 0, 0) and path.read_bytes() == after


@pytest.mark.slow
def test_a_failing_job_is_recorded_after_two_attempts_and_the_rest_finish(local_ray, tmp_path):
    path = tmp_path / "results.jsonl"
    sweep = _sweep([0], model=["lenet", "no_such_model"])
    summary = run_sweep(sweep, path, backend="ray")
    assert (summary.ok, summary.failed) == (1, 1)
    records = {r.settings["model"]: r for r in read_results(path)}
    bad = records["no_such_model"]
    assert bad.status == "failed" and bad.attempts == 2 and bad.metrics is None
    assert "no_such_model" in bad.error and "Traceback" in bad.traceback
    assert records["lenet"].ok and records["lenet"].attempts == 1
    assert run_sweep(sweep, path, backend="ray").skipped == 2
    retried = run_sweep(sweep, path, backend="ray", retry_failed=True)
    assert (retried.skipped, retried.failed) == (1, 1)
    assert [r.settings["model"] for r in read_results(path)][2:] == ["no_such_model"]


@pytest.mark.slow
def test_the_serial_backend_writes_the_same_records(finished, tmp_path):
    path = tmp_path / "results.jsonl"
    threads = torch.get_num_threads()
    summary = run_sweep(_sweep([0, 1, 2]), path, backend="serial", cpus_per_job=1)
    assert (summary.backend, summary.ok) == ("serial", 3)
    assert torch.get_num_threads() == threads
    on_ray = {r.key: r for r in read_results(finished[0])}
    serial = {r.key: r for r in read_results(path)}
    assert serial.keys() == on_ray.keys()
    for key, r in serial.items():
        assert r.as_dict().keys() == on_ray[key].as_dict().keys()
        assert r.settings == on_ray[key].settings and r.metrics.keys() == on_ray[key].metrics.keys()
        assert r.metrics["psnr"] == pytest.approx(on_ray[key].metrics["psnr"], rel=1e-4)
        assert r.metrics["exact"] == on_ray[key].metrics["exact"]
