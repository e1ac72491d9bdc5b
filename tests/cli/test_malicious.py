"""The malicious threat on the command line: attack --threat malicious and audit --threat malicious."""
import json

import torch

from fastleak.cli.main import main

MALICIOUS = ["--threat", "malicious", "--model", "lenet", "--dataset", "mnist", "--batch", "16"]


def _run_dir(out):
    (run_dir,) = [d for d in out.iterdir() if d.is_dir()]
    return run_dir


def test_attack_writes_the_recovered_images_and_says_how_many_are_exact(tmp_path, capsys):
    assert main(["attack", *MALICIOUS, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    run_dir = _run_dir(tmp_path)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    exact = round(metrics["recovered_fraction"] * 16)
    assert out.startswith(f"From a batch of 16, the malicious server recovered {exact} of the 16 private images "
                          "exactly")
    assert exact > 0 and metrics["false_images"] == 0 and len(metrics["psnr_per_image"]) == 16
    assert json.loads((run_dir / "config.json").read_text())["spec"]["preset"] == "imprint"
    recovered = torch.load(run_dir / "recovered.pt")
    assert recovered["images"].shape == (exact, 1, 28, 28)
    assert {p.name for p in run_dir.iterdir()} == {"config.json", "metrics.json", "labels.json", "recovered.pt",
                                                  "grid.png"}


def test_attack_takes_the_trap_preset_its_options_and_secure_aggregation(tmp_path, capsys):
    argv = ["attack", *MALICIOUS, "--preset", "trap", "--option", "rows=64", "--clients", "2", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "From 2 clients' batches of 16" in out and "64 trap rows" in out
    assert json.loads((_run_dir(tmp_path) / "metrics.json").read_text())["samples"] == 32


def test_audit_prints_and_writes_the_table_of_protections(tmp_path, capsys):
    argv = ["audit", *MALICIOUS, "--protection", "none", "--protection", "gaussian:sigma=1e-3",
            "--protection", "secure_aggregation:clients=2", "--out", str(tmp_path)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    rows = json.loads((_run_dir(tmp_path) / "table.json").read_text())["rows"]
    assert [r["protection"] for r in rows] == ["none", "gaussian", "secure_aggregation"]
    assert rows[0]["recovered_fraction"] > 0 and rows[1]["recovered_fraction"] == 0 and rows[2]["samples"] == 32
    assert "| gaussian sigma=0.001 | 16 | 0.0% |" in out
    assert (_run_dir(tmp_path) / "table.md").read_text().count("\n") == 5


def test_audit_mistakes_are_one_line_with_a_fix(tmp_path, capsys):
    assert main(["audit", "--model", "lenet", "--out", str(tmp_path)]) == 2
    assert "audit needs an observation file under the honest threat" in capsys.readouterr().err
    assert main(["audit", "client.obs", *MALICIOUS, "--out", str(tmp_path)]) == 2
    assert "it reads no observation file" in capsys.readouterr().err
    assert main(["audit", *MALICIOUS, "--protection", "noise", "--out", str(tmp_path)]) == 2
    assert "protection must be one of" in capsys.readouterr().err
    assert main(["attack", "--threat", "malicious", "--preset", "dlg", "--out", str(tmp_path)]) == 2
    assert "preset must be one of imprint, imprint_pca, trap" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
