"""`fastleak train`, `--state-dict` on the attack commands, and `--data-root`/`--split`."""
import json

import numpy as np
import pytest

import fastleak.training
from fastleak.cli import main
from fastleak.cli.errors import INTERRUPTED
from tests.data.layouts import real_pixels

TRAIN = ["train", "--model", "mlp", "--clients", "2", "--local-steps", "5", "--lr", "0.1", "--shift", "0",
         "--eval-samples", "100"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("train") / "run"
    assert main([*TRAIN, "--rounds", "2", "--save-rounds", "0,2", "--out", str(out)]) == 0
    return out


def test_train_writes_the_rounds_asked_for_and_says_how_to_attack_them(trained, capsys):
    assert sorted(p.name for p in trained.iterdir()) == ["checkpoint.pt", "round_000.pt", "round_002.pt",
                                                         "train.json"]
    summary = json.loads((trained / "train.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1, 2]
    assert summary["config"]["model"] == "mlp" and summary["config"]["clients"] == 2


def test_train_prints_its_result(tmp_path, capsys):
    assert main([*TRAIN, "--rounds", "1", "--out", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "held-out acc." in out and f"fastleak attack --state-dict {tmp_path / 'r' / 'round_001.pt'}" in out


def test_attack_and_labels_take_the_model_and_data_from_the_training_run(trained, tmp_path, capsys):
    checkpoint = str(trained / "round_002.pt")
    assert main(["labels", "--state-dict", checkpoint, "--batch", "4"]) == 0
    assert "LnAcc" in capsys.readouterr().out
    assert main(["attack", "--state-dict", checkpoint, "--preset", "idlg", "--batch", "1", "--iterations", "3",
                 "--restarts", "1", "--out", str(tmp_path)]) == 0
    (run,) = tmp_path.iterdir()
    spec = json.loads((run / "config.json").read_text())["spec"]
    assert (spec["model"], spec["dataset"], spec["split"], spec["state_dict"]) == ("mlp", "mnist", "test", checkpoint)


def test_a_checkpoint_that_does_not_fit_the_model_is_one_line(trained, tmp_path, capsys):
    assert main(["labels", "--state-dict", str(trained / "round_002.pt"), "--model", "lenet"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "does not fit this LeNet: missing body.0.weight" in err[0] and err[1].strip().startswith("fix:")


def test_resume_extends_a_run_and_refuses_other_settings(trained, tmp_path, capsys):
    copy = tmp_path / "run"
    copy.mkdir()
    for p in trained.iterdir():
        (copy / p.name).write_bytes(p.read_bytes())
    assert main(["train", "--resume", str(copy), "--lr", "0.3"]) == 2
    assert "lr cannot change" in capsys.readouterr().err
    assert main(["train", "--resume", str(copy), "--rounds", "3"]) == 0
    assert [r["round"] for r in json.loads((copy / "train.json").read_text())["rounds"]] == [0, 1, 2, 3]
    assert main(["train", "--resume", str(tmp_path / "nothing")]) == 2
    assert "holds no training run" in capsys.readouterr().err


def test_ctrl_c_prints_the_resume_command(tmp_path, monkeypatch, capsys):
    def interrupted(config, out, callback=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(fastleak.training, "train", interrupted)
    assert main([*TRAIN, "--out", str(tmp_path / "r")]) == INTERRUPTED
    assert f"resume with: fastleak train --resume {tmp_path / 'r'}" in capsys.readouterr().err


def test_data_root_and_split_reach_the_simulated_client(tmp_path, capsys):
    pixels, labels = real_pixels("cifar10", 20)
    np.savez(tmp_path / "mine.npz", x_train=pixels[:12], y_train=labels[:12], x_test=pixels[12:],
             y_test=labels[12:], num_classes=np.array(10))
    assert main(["labels", "--dataset", "npz", "--data-root", str(tmp_path / "mine.npz"), "--split", "train",
                 "--model", "lenet", "--batch", "4", "--labels", "natural"]) == 0
    assert "LnAcc" in capsys.readouterr().out
    assert main(["labels", "--dataset", "cifar10", "--data-root", str(tmp_path / "absent")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert "cifar-10-batches-py/" in err[0] and "layout" in err[1]


def _write_layout(name: str, root):
    from tests.data import layouts

    if name in ("cifar10", "cifar100", "imagenet", "folder"):
        pixels, labels = real_pixels("cifar10", 8)
    else:
        pixels, labels = real_pixels("mnist", 8)
    if name == "cifar10":
        layouts.write_cifar10(root, (pixels, labels), (pixels, labels))
    elif name == "cifar100":
        layouts.write_cifar100(root, (pixels, labels), (pixels, labels))
    elif name in ("mnist", "fashion_mnist"):
        layouts.write_idx(root / ("MNIST" if name == "mnist" else "FashionMNIST") / "raw", (pixels, labels),
                          (pixels, labels), compress=True)
    elif name == "imagenet":
        layouts.write_image_folder(root / "val", pixels, labels, [f"n{c:08d}" for c in range(10)], ext=".JPEG")
    elif name == "folder":
        layouts.write_image_folder(root, pixels, labels, [f"class{c}" for c in range(10)])
    return root


@pytest.mark.parametrize("name", ["cifar10", "cifar100", "mnist", "fashion_mnist", "imagenet", "folder"])
def test_every_layout_reaches_the_simulated_client(tmp_path, name, capsys):
    root = _write_layout(name, tmp_path)
    assert main(["labels", "--dataset", name, "--data-root", str(root), "--model", "lenet", "--batch", "2",
                 "--labels", "natural"]) == 0, capsys.readouterr().err
    assert "LnAcc" in capsys.readouterr().out
