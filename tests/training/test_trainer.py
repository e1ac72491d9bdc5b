"""The federated trainer: it learns, it writes the documented files, and a resumed run is bit-identical."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import fastleak.data as D
from fastleak import models
from fastleak.training import (RoundRecord, TrainConfig, load_round, partition, read_summary, round_path,
                               run_of_state_dict, train)
from fastleak.training.trainer import _average, _batches, _shifted

MLP = dict(model="mlp", model_options={"hidden": [32]}, lr=0.1, shift=0, eval_samples=300)


def test_iid_shards_are_disjoint_cover_everything_and_are_balanced():
    labels = D.open_split("mnist", split="train").labels
    shards = partition(labels, 7, "iid", 0.5, seed=3)
    joined = np.concatenate(shards)
    assert len(joined) == len(labels) == len(np.unique(joined))
    assert max(map(len, shards)) - min(map(len, shards)) <= 1
    assert all(np.array_equal(a, b) for a, b in zip(shards, partition(labels, 7, "iid", 0.5, seed=3)))


def test_dirichlet_shards_cover_everything_and_skew_the_classes():
    labels = D.open_split("mnist", split="train").labels
    def class_share(shards):
        return np.mean([np.bincount(labels[s], minlength=10).max() / max(len(s), 1) for s in shards if len(s)])

    skewed = partition(labels, 8, "dirichlet", 0.1, seed=0)
    joined = np.concatenate(skewed)
    assert len(joined) == len(labels) == len(np.unique(joined))
    assert class_share(skewed) > 0.5 > class_share(partition(labels, 8, "dirichlet", 100.0, seed=0))


def test_batches_never_repeat_an_image_within_a_batch_and_cycle_the_shard():
    shard = np.arange(10, 25)
    batches = _batches(shard, 5, 4, np.random.default_rng(0))
    assert len(batches) == 5 and all(len(set(b)) == 4 for b in batches)
    assert set(np.concatenate(batches[:3])) < set(shard)
    small = _batches(np.arange(3), 2, 32, np.random.default_rng(0))
    assert all(sorted(b) == [0, 1, 2] for b in small)


def test_shift_moves_every_image_by_at_most_shift_pixels_and_fills_with_zeros():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6) + 1
    moved = _shifted(x, 2, np.random.default_rng(1))
    for image, original in zip(moved, x):
        found = [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)
                 if torch.equal(image, _reference_shift(original, dy, dx))]
        assert len(found) == 1


def _reference_shift(image, dy, dx):
    out = torch.zeros_like(image)
    h, w = image.shape[-2:]
    src = image[:, max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)]
    out[:, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)] = src
    return out


def test_average_weights_floats_and_keeps_integer_counters():
    a = {"w": torch.tensor([1.0, 2.0]), "n": torch.tensor(5)}
    b = {"w": torch.tensor([4.0, 8.0]), "n": torch.tensor(5)}
    out = _average([a, b], [1, 3])
    assert torch.allclose(out["w"], torch.tensor([3.25, 6.5])) and out["w"].dtype == torch.float32
    assert out["n"].item() == 5 and out["n"].dtype == torch.int64


def test_one_client_is_plain_sgd_on_the_same_mini_batches(tmp_path):
    config = TrainConfig(**MLP, rounds=1, clients=1, local_steps=3, local_batch_size=8, seed=4)
    result = train(config, tmp_path)
    split = D.open_split("mnist", split="train")
    model = models.build("mlp", 10, in_shape=(1, 28, 28), seed=4, hidden=[32])
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    shard = partition(split.labels, 1, "iid", 0.5, 4)[0]
    for idx in _batches(shard, 3, 8, np.random.default_rng([4, 1, 0])):
        loss = F.cross_entropy(model(split.pixels(idx).float() / 255), torch.from_numpy(split.labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    for key, value in model.state_dict().items():
        assert torch.equal(value, result.model.state_dict()[key]), key


def test_fedavg_learns_and_writes_the_documented_files(tmp_path):
    config = TrainConfig(**MLP, rounds=3, clients=3, local_steps=40, save_rounds=(0, 3))
    result = train(config, tmp_path)
    assert [r.round for r in result.history] == [0, 1, 2, 3]
    assert result.history[0].test_accuracy < 0.3 < 0.8 < result.final_accuracy
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt", "round_000.pt", "round_003.pt",
                                                          "train.json"]
    summary = json.loads((tmp_path / "train.json").read_text())
    assert [set(r) for r in summary["rounds"]] == [{"round", "test_accuracy", "train_loss", "seconds"}] * 4
    assert summary["rounds"][0]["train_loss"] is None and summary["rounds"][3]["train_loss"] < 1.0
    assert summary["config"] == config.as_dict() and summary["config"]["clients"] == 3
    assert summary["data"]["train_images"] == 4000 and summary["data"]["test_images"] == 300
    assert summary["model"] == {"name": "mlp", "num_classes": 10, "in_shape": [1, 28, 28], "seed": 0,
                                "hidden": [32]}
    state = torch.load(round_path(tmp_path, 3), weights_only=True)
    assert all(torch.equal(v, result.model.state_dict()[k]) for k, v in state.items())
    again = load_round(tmp_path, 3)
    assert not again.training and run_of_state_dict(round_path(tmp_path, 3))["config"]["model"] == "mlp"


def test_batchnorm_statistics_are_averaged(tmp_path):
    config = TrainConfig(model="convnet", model_options={"width": 2}, rounds=1, clients=2, local_steps=2,
                         local_batch_size=4, lr=0.01, eval_samples=20)
    model = train(config, tmp_path).model
    bn = model.body.bn0
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    assert bn.num_batches_tracked.item() == 2


class _Stop(Exception):
    pass


def test_an_interrupted_run_resumes_bit_identically(tmp_path):
    config = TrainConfig(**{**MLP, "shift": 1}, rounds=4, clients=2, local_steps=5, lr_decay=0.9)
    straight = train(config, tmp_path / "straight")

    def interrupt(record: RoundRecord) -> None:
        if record.round == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(config, tmp_path / "resumed", callback=interrupt)
    assert read_summary(tmp_path / "resumed")["rounds"][-1]["round"] == 2
    resumed = train(config, tmp_path / "resumed")
    for r in range(5):
        a = torch.load(round_path(tmp_path / "straight", r), weights_only=True)
        b = torch.load(round_path(tmp_path / "resumed", r), weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), r
    strip = [(h.round, h.test_accuracy, h.train_loss) for h in straight.history]
    assert strip == [(h.round, h.test_accuracy, h.train_loss) for h in resumed.history]
    extended = train(config.replace(rounds=5), tmp_path / "resumed")
    assert [h.round for h in extended.history] == [0, 1, 2, 3, 4, 5]


def test_resuming_with_other_settings_is_refused(tmp_path):
    train(TrainConfig(**MLP, rounds=1, clients=1, local_steps=1), tmp_path)
    with pytest.raises(ValueError, match=r"other settings \(clients, lr differ\)"):
        train(TrainConfig(**{**MLP, "lr": 0.2}, rounds=1, clients=2, local_steps=1), tmp_path)


def test_divergence_stops_with_the_saved_rounds_named(tmp_path):
    with pytest.raises(FloatingPointError, match="diverged in round 1.*lower the lr"):
        train(TrainConfig(**{**MLP, "lr": 1e30}, rounds=2, clients=1, local_steps=3), tmp_path)


@pytest.mark.parametrize("values, message", [
    ({"rounds": 0}, "rounds must be a positive int"),
    ({"lr": -1.0}, "lr must be a positive number"),
    ({"lr_decay": 1.5}, r"lr_decay .* must be in \(0, 1\]"),
    ({"momentum": 1.0}, r"momentum must be a number in \[0, 1\)"),
    ({"save_rounds": (-1,)}, "save_rounds must hold non-negative"),
    ({"shift": -1}, "shift must be a non-negative int"),
    ({"optimizer": "adam"}, "unknown training option"),
])
def test_bad_settings_name_the_argument(values, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_dict(values)


def test_unknown_partition_and_a_dataset_without_a_train_split(tmp_path):
    with pytest.raises(ValueError, match="unknown partition 'shards'"):
        train(TrainConfig(**MLP, rounds=1, partition="shards"), tmp_path / "a")
    with pytest.raises(D.DatasetError, match="no 'train' split"):
        train(TrainConfig(**{**MLP, "dataset": "cifar10"}, rounds=1), tmp_path / "b")
    assert not (tmp_path / "b").exists()
