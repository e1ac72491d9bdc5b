"""fastleak inspect: one verdict line, the evidence below it, exit status 0 (honest) or 3 (malicious)."""
import torch

from fastleak import data, federated, models
from fastleak.cli.main import main
from tests.inspection.conftest import planted_trap_mlp

SIZE = ["--num-classes", "10", "--in-shape", "1,28,28"]


def _planted(tmp_path):
    public = data.load("mnist", 1000, seed=0, split="train")[0]
    net = planted_trap_mlp(public, 64)
    path = tmp_path / "received.pt"
    torch.save(net.state_dict(), path)
    return net, path


def test_trap_weights_in_a_received_state_dict_give_exit_status_3(tmp_path, capsys):
    _, path = _planted(tmp_path)
    assert main(["inspect", "--model", "mlp", "--state-dict", str(path), "--dataset", "mnist", "--samples", "300"]) == 3
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("MALICIOUS (trap): linear0: its 512 rows lean negative together")
    assert lines[0].endswith("readable in closed form") and "of a batch of 64" in lines[0]
    assert any(line.startswith("  ! linear0: reads your input") for line in lines[1:])


def test_an_honest_state_dict_gives_exit_status_0_and_asks_for_data(tmp_path, capsys):
    path = tmp_path / "honest.pt"
    torch.save(models.build("mlp", 10, in_shape=(1, 28, 28), seed=3).state_dict(), path)
    assert main(["inspect", "--model", "mlp", "--state-dict", str(path), *SIZE]) == 0
    out = capsys.readouterr().out
    assert out.startswith("honest: no imprint, trap-weight or sparse-row structure found (3 fully connected layer")
    assert "add --dataset" in out


def test_a_captured_observation_supplies_the_received_state(tmp_path, capsys):
    net, _ = _planted(tmp_path)
    x, y = data.load("mnist", 8, seed=0)
    path = tmp_path / "client.obs"
    federated.save(federated.fedsgd(net, x, y), path)
    assert main(["inspect", "--observation", str(path), "--model", "mlp"]) == 3
    assert capsys.readouterr().out.startswith("MALICIOUS (trap)")


def test_a_state_dict_of_fastleak_train_supplies_the_model_and_its_dataset(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--model", "mlp", "--rounds", "1", "--clients", "1", "--local-steps", "2",
                 "--eval-samples", "50", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["inspect", "--model", "mlp", "--state-dict", str(out / "round_001.pt"), "--samples", "200",
                 "--batch", "128"]) == 0
    assert "of a batch of 128 readable in closed form" in capsys.readouterr().out.splitlines()[0]


def test_mistakes_are_one_line_errors(tmp_path, capsys):
    assert main(["inspect", "--model", "mlp"]) == 2
    assert "the size of model 'mlp' is unknown" in capsys.readouterr().err
    assert main(["inspect", "--model", "mlp", *SIZE, "--in-shape", "1,x"]) == 2
    assert "--in-shape expects positive sizes" in capsys.readouterr().err
    path = tmp_path / "lenet.pt"
    torch.save(models.build("lenet", 10, in_shape=(1, 28, 28)).state_dict(), path)
    assert main(["inspect", "--model", "mlp", "--state-dict", str(path), *SIZE]) == 2
    assert "does not fit this Sequential" in capsys.readouterr().err
    assert main(["inspect", "--model", "mlp", "--state-dict", str(path), "--observation", str(path), *SIZE]) == 2
    assert "pass one of them" in capsys.readouterr().err
