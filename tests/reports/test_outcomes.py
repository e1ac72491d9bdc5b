"""An experiment run into its folder: config.json, the run, the report files chosen by the outcome's type."""
import json
from dataclasses import dataclass

import pytest
import torch

from fastleak.errors import InvalidTypeError
from fastleak.experiments import ExperimentSpec, Outcome, RunOutcome
from fastleak.experiments.malicious import MaliciousOutcome
from fastleak.reports import record_run, write_outcome

HONEST = ExperimentSpec(model="lenet", batch=2, preset="dlg", restarts=1, iterations=4)
MALICIOUS = ExperimentSpec(threat="malicious", preset="imprint", model="lenet", dataset="mnist", batch=8, seed=2)


def test_an_honest_run_writes_its_config_metrics_labels_and_figures(tmp_path):
    steps = []
    outcome = record_run(HONEST, tmp_path, callback=lambda step, losses: steps.append(step))
    assert isinstance(outcome, Outcome) and steps and steps[-1] == 4
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "metrics.json", "labels.json", "grid.png",
                                                   "loss.png"}
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["spec"] == HONEST.as_dict() and config["attack_config"]["iterations"] == 4
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["psnr"] == outcome.evaluation.psnr and metrics["iterations"] == 4


def test_a_malicious_run_writes_the_recovered_images_and_no_checkpoint(tmp_path):
    outcome = record_run(MALICIOUS, tmp_path)
    assert isinstance(outcome, MaliciousOutcome)
    assert {p.name for p in tmp_path.iterdir()} == {"config.json", "metrics.json", "labels.json", "grid.png",
                                                   "recovered.pt"}
    assert json.loads((tmp_path / "config.json").read_text())["attack_config"] is None
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert {k: metrics[k] for k in outcome.metrics() if k != "recovery_time_s"} == {
        k: v for k, v in outcome.metrics().items() if k != "recovery_time_s"}
    assert len(metrics["psnr_per_image"]) == 8
    assert torch.load(tmp_path / "recovered.pt")["images"].shape[0] == metrics["recovered_images"]


def test_a_run_that_fails_leaves_no_folder_it_created_and_keeps_one_it_resumed(tmp_path):
    bad = MALICIOUS.replace(dataset="cifar10")  # the server's public data, cifar10's train split, is not shipped
    created = tmp_path / "new"
    created.mkdir()
    with pytest.raises(ValueError, match="public data"):
        record_run(bad, created)
    assert not created.exists()
    resumed = tmp_path / "old"
    resumed.mkdir()
    with pytest.raises(ValueError, match="public data"):
        record_run(bad, resumed, created=False)
    assert (resumed / "config.json").exists()


def test_an_outcome_without_a_writer_is_refused_by_name(tmp_path):
    @dataclass(frozen=True)
    class Unknown(RunOutcome):
        scenario: object = None

        def metrics(self):
            return {}

    with pytest.raises(InvalidTypeError, match="no report files for a Unknown"):
        write_outcome(tmp_path, {}, Unknown())
