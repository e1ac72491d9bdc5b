import json

import pytest
import torch

import fastleak
from fastleak import closedform, data, federated, models
from fastleak.attacks import AttackResult
from fastleak.cli.main import main
from fastleak.closedform import Reconstruction, method
from fastleak.errors import InvalidTypeError, InvalidValueError
from fastleak.metrics import evaluate


@pytest.fixture(scope="module")
def case():
    x, y = data.load("cifar10", 1, seed=0)
    model = models.build("mlp", 10, hidden=(32,))
    return model, x, y, federated.fedsgd(model, x, y)


def test_every_method_is_registered_and_reachable_by_preset_name():
    assert set(closedform.names()) == {"analytic", "april", "feature_inversion", "rgap"}
    assert closedform.METHODS.get("feature_inversion").iterative
    assert "refine_steps" in closedform.METHODS.get("analytic").options


def test_the_result_is_an_attack_result_whatever_the_entry_point(case):
    model, x, y, obs = case
    direct = closedform.run("analytic", [obs], model)[0]
    via_attack = fastleak.attack(obs, model, "analytic", restarts=3, iterations=50)
    assert isinstance(direct, AttackResult) and isinstance(via_attack, AttackResult)
    torch.testing.assert_close(direct.images, via_attack.images)
    assert via_attack.restart_images.shape == (1, *x.shape) and via_attack.best_restart == 0
    assert via_attack.history.shape == (1, 1) and via_attack.history_steps == (0,)
    assert via_attack.label_method == "idlg" and via_attack.config.as_dict()["closed_form"]


def test_resuming_is_trivial_no_checkpoint_is_written_and_a_rerun_recomputes_the_same(case, tmp_path):
    model, _, _, obs = case
    path = tmp_path / "checkpoint.pt"
    first = fastleak.attack(obs, model, "analytic", checkpoint=path)
    assert not path.exists()
    torch.testing.assert_close(fastleak.attack(obs, model, "analytic", checkpoint=path).images, first.images)


def test_an_update_of_one_full_batch_step_is_read_as_its_gradient(case):
    model, x, y, _ = case
    one_step = federated.fedavg(model, x, y, local_steps=1, lr=0.1)
    assert evaluate(fastleak.attack(one_step, model, "analytic").images, x).psnr >= 60
    several = federated.fedavg(model, x, y, local_steps=2, lr=0.1)
    with pytest.raises(InvalidValueError, match="reads a gradient .* this update ran 2 local step"):
        fastleak.attack(several, model, "analytic")


def test_bad_options_labels_and_priors_are_refused_by_name(case):
    model, _, _, obs = case
    with pytest.raises(InvalidValueError, match=r"unknown option\(s\) \['tv'\] of closed-form method 'analytic'"):
        fastleak.attack(obs, model, "analytic", tv=0.1)
    with pytest.raises(InvalidTypeError, match="analytic option refine_steps must be of type int"):
        fastleak.attack(obs, model, "analytic", refine_steps=1.5)
    with pytest.raises(InvalidValueError, match="does not optimise labels"):
        fastleak.attack(obs, model, "analytic", labels="optimize")
    with pytest.raises(InvalidValueError, match="takes no priors"):
        fastleak.attack(obs, model, "analytic", priors={"tv": {"weight": 0.1}})
    with pytest.raises(InvalidValueError, match="non-empty sequence"):
        fastleak.attack_many([], model, "analytic")


def test_a_method_registered_by_decorator_runs_through_attack(case):
    model, x, y, obs = case

    @method("test_zeros")
    def zeros(targets, labels, *, level: float = 0.0):
        return [Reconstruction(images=torch.full((1, t.num_samples, *t.input_shape), level), labels=yy)
                for t, yy in zip(targets, labels)]

    try:
        res = fastleak.attack(obs, model, "test_zeros", level=1)
        assert torch.equal(res.images, torch.ones_like(x)) and res.config.options["level"] == 1.0
    finally:
        closedform.METHODS._entries.pop("test_zeros")


def test_the_command_line_runs_a_closed_form_preset(tmp_path, capsys):
    assert main(["attack", "--model", "mlp", "--batch", "1", "--preset", "analytic", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "PSNR            100.00 dB" in out
    (run,) = tmp_path.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["psnr"] == 100.0 and metrics["iterations"] == 0
    assert json.loads((run / "config.json").read_text())["attack_config"]["name"] == "analytic"


def test_the_readmes_closed_form_table_lists_the_registered_methods():
    from tests.test_readme import readme, section, table_names

    assert sorted(table_names(section(readme(), "Closed-form attacks"))) == sorted(closedform.names())
