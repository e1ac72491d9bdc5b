"""The command line as a new user meets it, replayed in subprocesses at toy sizes.

Each test is one promise of the README: the documented outputs and their headline, resumable runs
(attack, audit, demo), one option vocabulary (--model NAME|MODULE:CLASS, --model-option,
--state-dict, --threads, --device, --resume) resolved from the current directory, help texts that
show every default, a thread policy named in the summary, and one line plus a fix (exit code 2,
no run folder left behind) for every mistake. Sweeps and training have their own files beside this.
"""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

import fastleak.data as data
from fastleak.federated import fedsgd, save

ROOT = Path(__file__).resolve().parents[2]


def fastleak(*args, cwd, timeout=600):
    env = {**{k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "fastleak", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _only_run_dir(out: Path) -> Path:
    dirs = [d for d in out.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


@pytest.mark.slow  # a real 10 s demo run; CI also runs `fastleak demo --fast` from the installed wheel
def test_demo_fast_writes_the_documented_run_directory(tmp_path):
    proc = fastleak("demo", "--fast", "--out", str(tmp_path / "runs"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("From one gradient, the server recovered ")
    assert "PSNR" in proc.stdout and "LnAcc" in proc.stdout
    assert "cores free at the start; OMP_WAIT_POLICY=PASSIVE)" in proc.stdout
    run = _only_run_dir(tmp_path / "runs")
    for name in ("grid.png", "loss.png", "metrics.json", "labels.json", "config.json"):
        assert (run / name).exists(), name
    grid = Image.open(run / "grid.png")
    assert grid.size == (96, 2 * 96 + 16)
    Image.open(run / "loss.png").verify()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["version"] == 1 and len(metrics["psnr_per_image"]) == 1
    assert metrics["psnr"] >= 18, "the fast demo's one image should be recognisable"
    labels = json.loads((run / "labels.json").read_text())
    assert labels["recovered"] == labels["true"] and len(labels["true"]) == 1
    config = json.loads((run / "config.json").read_text())
    assert config["spec"]["batch"] == 1 and config["spec"]["client_bn"] == "train"
    assert config["attack_config"]["name"] == "inverting"


@pytest.fixture()
def saved_observation(tmp_path):
    from tests.cli.user_models import TinyNet

    torch.manual_seed(0)
    model = TinyNet().eval()
    x, y = data.load("cifar10", 2, seed=0, labels="unique")
    obs = fedsgd(model, x, y)
    save(obs, tmp_path / "client.obs")
    torch.save(model.state_dict(), tmp_path / "net.pt")
    return tmp_path, y


def test_labels_on_a_saved_observation_prints_the_count_table(saved_observation):
    tmp_path, y = saved_observation
    proc = fastleak("labels", "--observation", "client.obs", "--model", "tests.cli.user_models:TinyNet",
                    "--state-dict", "net.pt", "--method", "ilrg", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "method: ilrg" in proc.stdout
    for label in y.tolist():
        assert any(line.split()[0] == str(label) for line in proc.stdout.splitlines()[2:])


CONSOLE_SCRIPT = Path(sys.executable).parent / "fastleak"


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the fastleak console script is not installed")
def test_the_console_script_imports_a_users_model_class_from_the_current_directory(saved_observation):
    tmp_path, y = saved_observation
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text((ROOT / "tests" / "cli" / "user_models.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), "labels", "--observation", "client.obs", "--model",
                           "mypkg.nets:TinyNet", "--state-dict", "net.pt", "--method", "ilrg"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "method: ilrg" in proc.stdout


@pytest.mark.slow
def test_audit_attacks_a_saved_observation_with_a_user_model(saved_observation):
    tmp_path, y = saved_observation
    proc = fastleak("audit", "client.obs", "--model", "tests.cli.user_models:TinyNet", "--state-dict", "net.pt",
                    "--iterations", "5", "--restarts", "2", "--out", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    run = _only_run_dir(tmp_path / "runs")
    assert (run / "grid.png").exists() and (run / "reconstruction.pt").exists()
    labels = json.loads((run / "labels.json").read_text())
    assert labels["recovered"] == sorted(y.tolist())


def _default_sigint():
    """Ctrl-C handling in the child even when the tests run as a background job, which starts
    with SIGINT ignored (and would pass that on)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.mark.slow
def test_interrupted_attack_resumes_from_its_checkpoint(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "fastleak", "attack", "--model", "lenet", "--batch", "1", "--preset", "inverting",
            "--restarts", "1", "--iterations", "150", "--option", "checkpoint_every=2", "--out", "runs"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, err
    assert "resume with: fastleak attack --resume" in err
    run = _only_run_dir(tmp_path / "runs")
    assert not (run / "metrics.json").exists()
    resumed = fastleak("attack", "--resume", str(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 150


@pytest.mark.slow
def test_interrupted_audit_prints_its_resume_command_and_resumes(saved_observation):
    tmp_path, y = saved_observation
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = ["audit", "client.obs", "--model", "tests.cli.user_models:TinyNet", "--state-dict", "net.pt",
            "--iterations", "600", "--restarts", "1", "--option", "checkpoint_every=2", "--out", "runs"]
    proc = subprocess.Popen([sys.executable, "-m", "fastleak", *args], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/checkpoint.pt")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT and "Traceback" not in err, err
    run = _only_run_dir(tmp_path / "runs")
    command = err.strip().splitlines()[-1].strip()
    assert command == "resume with: fastleak " + " ".join(args) + f" --resume runs/{run.name}"
    resumed = fastleak(*command.removeprefix("resume with: fastleak ").split(), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 600
    assert json.loads((run / "labels.json").read_text())["recovered"] == sorted(y.tolist())


@pytest.mark.parametrize("args, message", [
    (["attack", "--model", "nosuchnet"], "unknown model 'nosuchnet'"),
    (["attack", "--preset", "nope", "--model", "lenet", "--batch", "1"], "unknown attack preset 'nope'"),
    (["attack", "--config", "missing.toml"], "config file 'missing.toml' does not exist"),
    (["audit", "missing.obs", "--model", "lenet"], "observation file 'missing.obs' does not exist"),
    (["attack", "--batch", "0"], "batch must be a positive int, got 0"),
    (["attack", "--model", "lenet", "--batch", "1", "--dataset", "nosuch"], "unknown dataset 'nosuch'"),
    (["attack", "--defense-param", "sigma"], "--defense-param expects KEY=VALUE"),
    (["attack", "--model", "lenet", "--batch", "1", "--option", "lean_conv=maybe"],
     "attack option lean_conv must be bool, got 'maybe'"),
])
def test_bad_inputs_give_one_line_and_a_fix(tmp_path, args, message):
    proc = fastleak(*args, "--out", "runs", cwd=tmp_path) if args[0] == "attack" else fastleak(*args, cwd=tmp_path)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("fastleak: error: ") and message in lines[0], proc.stderr
    assert lines[1].strip().startswith("fix:")
    assert "Traceback" not in proc.stderr
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir()), "a failed run left its folder behind"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this torch has a CUDA device")
def test_cuda_asked_for_on_a_torch_without_it_is_one_line(tmp_path):
    proc = fastleak("attack", "--model", "lenet", "--batch", "1", "--device", "cuda", "--out", "runs", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines[0].startswith("fastleak: error: --device cuda: this torch (") and lines[1].strip().startswith("fix:")
    assert not (tmp_path / "runs").exists()


def test_a_corrupt_observation_is_one_line(tmp_path):
    (tmp_path / "bad.obs").write_bytes(b"not an observation at all")
    proc = fastleak("audit", "bad.obs", "--model", "lenet", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[1].strip().startswith("fix:")
    assert lines[0].startswith("fastleak: error: bad.obs: not a readable fastleak.observation file (truncated or "
                               "corrupt: torch.load raised ")


@pytest.mark.slow
def test_threads_are_an_option_of_every_command_and_the_summary_names_the_policy(tmp_path):
    proc = fastleak("attack", "--model", "lenet", "--batch", "1", "--preset", "dlg", "--restarts", "1",
                    "--iterations", "3", "--threads", "1", "--out", "runs", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "1 thread (--threads; OMP_WAIT_POLICY=PASSIVE)" in proc.stdout
    bad = fastleak("labels", "--threads", "0", cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.startswith("fastleak: error: --threads must be a positive number")


@pytest.mark.slow
def test_a_policy_the_user_set_is_kept(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_WAIT_POLICY": "ACTIVE"}
    proc = subprocess.run([sys.executable, "-m", "fastleak", "demo", "--fast", "--out", "runs"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "; OMP_WAIT_POLICY=ACTIVE)" in proc.stdout


def _subparsers():
    import argparse

    from fastleak.cli.main import build_parser

    actions = build_parser()._actions
    return next(a for a in actions if isinstance(a, argparse._SubParsersAction)).choices


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_help_shows_the_default_of_every_option(name):
    import argparse

    parser = _subparsers()[name]
    formatter = parser._get_formatter()
    silent = []
    for action in parser._actions:
        if (not action.option_strings or action.required or action.help == argparse.SUPPRESS
                or isinstance(action, (argparse._HelpAction, argparse._StoreTrueAction))):
            continue
        if "default" not in formatter._expand_help(action):
            silent.append(action.option_strings[0])
    assert not silent, f"'fastleak {name} --help' hides the defaults of {silent}"
    assert "--threads" in parser.format_help()


def test_attack_help_states_the_sizes_a_bare_attack_runs_at(tmp_path):
    proc = fastleak("attack", "--help", cwd=tmp_path)
    assert proc.returncode == 0
    text = " ".join(proc.stdout.split())
    for shown in ("(default: convnet)", "(default: width=64)", "(default: 4)", "(default: the preset's, 2000 for "
                  "inverting)"):
        assert shown in text, shown


@pytest.mark.slow
@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the fastleak console script is not installed")
def test_attack_simulates_a_client_of_a_users_model_class_from_the_current_directory(tmp_path):
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "nets.py").write_text((ROOT / "tests" / "cli" / "user_models.py").read_text())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([str(CONSOLE_SCRIPT), "attack", "--model", "mypkg.nets:TinyNet", "--batch", "2",
                           "--restarts", "1", "--iterations", "3", "--out", "runs"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "mypkg.nets:TinyNet / cifar10, batch 2" in proc.stdout


@pytest.fixture()
def wide_convnet_observation(tmp_path):
    from fastleak import models

    net = models.build("convnet", 10, width=8)
    x, y = data.load("cifar10", 2, seed=0, labels="unique")
    save(fedsgd(net, x, y), tmp_path / "client.obs")
    torch.save(net.state_dict(), tmp_path / "w8.pt")
    return tmp_path, y


@pytest.mark.slow
def test_audit_and_labels_take_the_models_options(wide_convnet_observation):
    tmp_path, y = wide_convnet_observation
    audit = fastleak("audit", "client.obs", "--model", "convnet", "--model-option", "width=8", "--state-dict", "w8.pt",
                     "--restarts", "1", "--iterations", "2", "--out", "runs", cwd=tmp_path)
    assert audit.returncode == 0, audit.stderr
    config = json.loads((_only_run_dir(tmp_path / "runs") / "config.json").read_text())
    assert config["model_options"] == {"width": 8}
    labels = fastleak("labels", "--observation", "client.obs", "--model", "convnet", "--width", "8", "--state-dict",
                      "w8.pt", cwd=tmp_path)
    assert labels.returncode == 0, labels.stderr
    assert "batch size: 2" in labels.stdout


def test_a_state_dict_that_does_not_fit_is_one_line_and_leaves_no_folder(wide_convnet_observation):
    tmp_path, _ = wide_convnet_observation
    proc = fastleak("audit", "client.obs", "--model", "convnet", "--state-dict", "w8.pt", "--out", "runs",
                    cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2 and "does not fit this ConvNet: shapes in file vs model" in lines[0]
    assert "--model-option" in lines[1]
    assert not (tmp_path / "runs").exists()


def test_labels_of_an_observation_without_a_model_says_which_option_is_missing(wide_convnet_observation):
    tmp_path, _ = wide_convnet_observation
    proc = fastleak("labels", "--observation", "client.obs", cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.startswith("fastleak: error: --observation needs the model") and "--model" in proc.stderr


@pytest.mark.slow
def test_an_interrupted_demo_resumes_like_an_attack(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "fastleak", "demo", "--fast", "--out", "runs"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    deadline = time.time() + 300
    while time.time() < deadline and not list((tmp_path / "runs").glob("*/config.json")):
        time.sleep(0.02)
    time.sleep(0.3)  # into the run: simulating the client, before the first checkpoint
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    run = _only_run_dir(tmp_path / "runs")
    assert proc.returncode == -signal.SIGINT and "Traceback" not in err, err
    assert err.strip().splitlines()[-1].strip() == f"resume with: fastleak demo --resume runs/{run.name}"
    resumed = fastleak("demo", "--resume", f"runs/{run.name}", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "metrics.json").read_text())["iterations"] == 200


@pytest.mark.slow
def test_bench_writes_under_runs_and_prints_where(tmp_path):
    proc = fastleak("bench", "--", "--only", "total_variation", "--repeat", "1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "results: runs/bench/ops.json"
    assert json.loads((tmp_path / "runs" / "bench" / "ops.json").read_text())["results"]


def test_the_build_has_numpy_and_shows_its_configuration():
    recipe = (ROOT / "Makefile").read_text().split("$(STAMP): $(SOURCES)")[1].split("\n\n")[0]
    steps = recipe.splitlines()
    numpy_step = next(i for i, line in enumerate(steps) if "numpy" in line and "pip install" in line)
    build_step = next(i for i, line in enumerate(steps) if "--no-build-isolation" in line)
    describe_step = next(i for i, line in enumerate(steps) if "describe()" in line)
    assert numpy_step < build_step < describe_step
    from fastleak._ext import describe

    assert describe().startswith(f"fastleak: torch {torch.__version__}; compiled ops ")
