import subprocess
import sys

import pytest

from fastleak.sweeps import BackendOptions, SweepSpec, resolve, run_sweep
from fastleak.sweeps.backends import resources


def test_importing_sweeps_imports_neither_ray_nor_matplotlib():
    code = "import sys, fastleak.sweeps; print(sorted({'ray', 'matplotlib'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_auto_is_serial_without_ray(monkeypatch, caplog, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` fail
    with caplog.at_level("WARNING"):
        assert resolve("auto") == "serial"
    assert "pip install fastleak[ray]" in caplog.text
    sweep = SweepSpec.from_dict({"fixed": {"model": "lenet"}})
    with pytest.raises(ValueError, match="the ray backend needs Ray: pip install fastleak"):
        run_sweep(sweep, tmp_path / "r.jsonl", backend="ray")


def test_auto_is_ray_when_installed():
    pytest.importorskip("ray")
    assert resolve("auto") == "ray"


def test_unknown_backends_and_options_are_errors(tmp_path):
    sweep = SweepSpec.from_dict({"fixed": {"model": "lenet"}})
    with pytest.raises(ValueError, match="unknown sweep backend 'dask'; valid names: ray, serial"):
        run_sweep(sweep, tmp_path / "r.jsonl", backend="dask")
    with pytest.raises(ValueError, match="workers must be a positive int or None, got 0"):
        BackendOptions(workers=0)
    with pytest.raises(ValueError, match="cpus_per_job must be a positive int or None"):
        run_sweep(sweep, tmp_path / "r.jsonl", backend="serial", cpus_per_job=-1)


def test_cuda_jobs_ask_ray_for_a_gpu():
    cpu, cuda = SweepSpec.from_dict({"grid": {"device": ["cpu", "cuda:1"]}}).jobs()
    assert resources(cpu, 1) == {"num_cpus": 1, "num_gpus": 0}
    assert resources(cuda, 2) == {"num_cpus": 2, "num_gpus": 1}
