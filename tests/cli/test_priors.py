"""--prior on the command line: the preset's priors changed, and a prior from a user's module."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def fastleak(*args, cwd):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fastleak", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


def test_an_attack_runs_with_a_prior_from_a_users_module(tmp_path):
    proc = fastleak("attack", "--model", "lenet", "--batch", "1", "--restarts", "1", "--iterations", "3",
                    "--prior", "tests.attacks.user_priors.brightness:weight=0.5,target=0.3", "--prior", "tv:weight=0",
                    "--out", str(tmp_path), cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    (run,) = [d for d in tmp_path.iterdir() if d.is_dir()]
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["priors"] == {"tests.attacks.user_priors.brightness": {"weight": 0.5, "target": 0.3},
                                        "tv": {"weight": 0}}
    assert config["attack_config"]["priors"]["tests.attacks.user_priors.brightness"] == {"weight": 0.5, "target": 0.3}


def test_a_prior_that_is_not_there_is_one_line_and_a_fix(tmp_path):
    proc = fastleak("attack", "--model", "lenet", "--batch", "1", "--iterations", "2", "--prior", "sharp:weight=1",
                    "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2
    assert "unknown prior 'sharp'; valid names:" in proc.stderr
    assert not any(tmp_path.iterdir())
    proc = fastleak("attack", "--model", "lenet", "--prior", "tv:weight", "--out", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 2 and "--prior expects NAME or NAME:KEY=VALUE" in proc.stderr
