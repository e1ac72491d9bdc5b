"""The benchmarks' trained states come from the trainer, cached, and never from the held-out digits."""
import pytest
import torch

from benchmarks import trained_states
from benchmarks.bench_labels import state_model
from fastleak.training import read_summary


def test_a_round_is_trained_once_then_read_from_the_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(trained_states, "CACHE", str(tmp_path))
    monkeypatch.setitem(trained_states.RECIPES, "lenet",
                        trained_states.RECIPES["lenet"].replace(local_steps=5, eval_samples=50))
    model, info = trained_states.trained_model("lenet", 2)
    run = tmp_path / "lenet-s0"
    assert info["round"] == 2 and info["train_images"] == 4000 and "--rounds 2" in info["command"]
    assert [r["round"] for r in read_summary(run)["rounds"]] == [0, 1, 2]
    earlier, _ = trained_states.trained_model("lenet", 1)
    assert [r["round"] for r in read_summary(run)["rounds"]] == [0, 1, 2], "no further training"
    saved = torch.load(run / "round_001.pt", weights_only=True)
    assert all(torch.equal(v, earlier.state_dict()[k]) for k, v in saved.items())
    assert not torch.equal(model.fc.weight, earlier.fc.weight)


def test_trained_states_are_mnist_models():
    with pytest.raises(SystemExit, match="pass --datasets mnist"):
        state_model("lenet", "cifar10", "round5", 0, 16)
    with pytest.raises(SystemExit, match="unknown state 'trained'"):
        state_model("lenet", "mnist", "trained", 0, 16)
