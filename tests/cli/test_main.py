"""How the command line reports errors: one line for a mistake in the input, a traceback behind --debug."""
import os
import signal
import subprocess
import sys

import pytest
import torch

import fastleak.experiments
from fastleak.cli.main import main
from fastleak.errors import InvalidValueError

ATTACK = ["attack", "--model", "lenet", "--batch", "1", "--preset", "dlg", "--restarts", "1", "--iterations", "1"]


@pytest.fixture
def failing_run(monkeypatch):
    def use(exc: Exception) -> None:
        def run(*args, **kwargs):
            raise exc
        monkeypatch.setattr(fastleak.experiments, "run", run)
    return use


@pytest.mark.parametrize("exc", [RuntimeError("boom"), ValueError("boom"), KeyError("boom")])
def test_an_internal_error_is_one_line_that_points_to_debug(tmp_path, capsys, failing_run, exc):
    failing_run(exc)
    assert main([*ATTACK, "--out", str(tmp_path)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0] == f"fastleak: unexpected error: {type(exc).__name__}: {exc}"
    assert "rerun with --debug" in lines[1] and len(lines) == 2


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_raises_internal_errors_with_their_traceback(tmp_path, failing_run, where):
    failing_run(RuntimeError("boom"))
    argv = ["--debug", *ATTACK] if where == "before" else [*ATTACK, "--debug"]
    with pytest.raises(RuntimeError, match="boom"):
        main([*argv, "--out", str(tmp_path)])


def test_an_input_error_from_the_library_is_one_line_with_a_fix(tmp_path, capsys, failing_run):
    failing_run(InvalidValueError("iterations must be positive, got 0"))
    assert main([*ATTACK, "--out", str(tmp_path)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["fastleak: error: iterations must be positive, got 0",
                     "  fix: check the option values; see 'fastleak attack --help'"]


def test_debug_shows_the_traceback_of_an_input_error_too(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "fastleak", "attack", "--batch", "0", "--debug"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr and "InvalidValueError: batch must be a positive int" in proc.stderr


def test_version_reports_the_build_the_kernels_and_the_threading_policy():
    proc = subprocess.run([sys.executable, "-m", "fastleak", "--version"], capture_output=True, text=True, timeout=60,
                          env={k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"})
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert lines[0] == f"fastleak {fastleak.__version__}"
    assert lines[1] == f"  torch {torch.__version__} (CPU only)" or torch.cuda.is_available()
    assert lines[2].startswith(f"  extension: built against torch {torch.__version__}; compiled ops loaded, "
                               "CUDA kernels ")
    assert lines[3].startswith("  threads: ") and lines[3].endswith("OMP_WAIT_POLICY=PASSIVE")


def _run_with(body: str) -> subprocess.CompletedProcess:
    """``fastleak.cli.main.run`` in a fresh process, its ``main`` replaced by a function of ``body``."""
    code = ("import importlib\nfrom fastleak.cli.errors import INTERRUPTED, interrupted\n"
            f"def main():\n    {body}\n"
            "m = importlib.import_module('fastleak.cli.main')\nm.main = main\nm.run()")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("body", [
    "print('kept'); return interrupted('settings saved in runs/x', 'resume with: fastleak demo --resume runs/x')",
    # a KeyboardInterrupt inside exec() of a string marks CPython's exit as interrupted even once caught
    "print('kept')\n    try: exec('raise KeyboardInterrupt')\n"
    "    except KeyboardInterrupt: pass\n    return INTERRUPTED",
])
def test_an_interrupted_command_ends_its_process_by_sigint_after_saying_what_it_kept(body):
    proc = _run_with(body)
    assert proc.returncode == -signal.SIGINT, proc.stderr
    assert proc.stdout == "kept\n" and "Traceback" not in proc.stderr


def test_ctrl_c_before_a_command_took_over_ends_by_sigint_without_a_traceback():
    proc = _run_with("raise KeyboardInterrupt")
    assert proc.returncode == -signal.SIGINT and proc.stderr == ""


@pytest.mark.parametrize("code", [0, 1, 2])
def test_other_exit_codes_pass_through(code):
    assert _run_with(f"return {code}").returncode == code
