import pytest
import torch

import fastleak.data as D
import fastleak.models as M
from fastleak.federated import fedavg, load, multi_pair, save
from fastleak.federated.io import FORMAT


@pytest.fixture(scope="module")
def obs():
    model = M.build("convnet", 10, width=2)
    return multi_pair(model, *D.load("cifar10", 2, labels="unique"), pairs=2, kind="update", local_steps=2,
                      lr=0.1, batch_size=1)


def test_round_trip_is_exact(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    back = load(path, model=M.build("convnet", 10, width=2))
    for f in ("kind", "param_names", "num_samples", "reduction", "loss", "bn_train", "local_steps", "local_lr",
              "local_batch_size", "local_epochs", "input_shape", "num_classes", "meta"):
        assert getattr(back, f) == getattr(obs, f), f
    assert back.num_pairs == 2
    for p, q in zip(obs.pairs, back.pairs):
        assert list(p.state) == list(q.state)
        assert all(torch.equal(p.state[k], q.state[k]) and p.state[k].dtype == q.state[k].dtype for k in p.state)
        assert all(torch.equal(a, b) for a, b in zip(p.shared, q.shared))


def test_file_is_plain_tensors_and_dicts(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["version"] == 1 and len(raw["sha256"]) == 64


def test_truncated_file_is_refused(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load(path)


def test_corrupted_tensor_bytes_are_refused(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    data = bytearray(path.read_bytes())
    # flip one byte inside the last tensor record (the zip directory sits at the end)
    marker = data.rfind(b"data/")
    position = data.find(b"PK", marker) - 40
    data[position] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="corrupt"):
        load(path)


def _rewrite(path, **changes):
    raw = torch.load(path, weights_only=True)
    raw.update(changes)
    torch.save(raw, path)


def test_wrong_version_and_format_are_refused(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    _rewrite(path, version=2)
    with pytest.raises(ValueError, match="version 2 is not supported.*version 1"):
        load(path)
    save(obs, path)
    _rewrite(path, format="something.else")
    with pytest.raises(ValueError, match="format"):
        load(path)
    torch.save({"a": torch.zeros(2)}, path)
    with pytest.raises(ValueError, match="format"):
        load(path)


def test_edited_content_fails_the_checksum(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    raw = torch.load(path, weights_only=True)
    raw["pairs"][0]["shared"][0] += 1
    torch.save(raw, path)
    with pytest.raises(ValueError, match="checksum mismatch"):
        load(path)


def test_model_mismatch_is_refused(obs, tmp_path):
    path = tmp_path / "obs.pt"
    save(obs, path)
    with pytest.raises(ValueError, match="shape"):
        load(path, model=M.build("convnet", 10, width=3))
    with pytest.raises(ValueError, match="trainable parameters"):
        load(path, model=M.build("lenet", 10))
    with pytest.raises(ValueError, match="shape"):
        load(path, model=M.build("convnet", 7, width=2))


def test_arbitrary_pickles_are_not_executed(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "version": 1, "x": object()}, path)
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load(path)


def test_unsaveable_meta_is_refused(tmp_path):
    import dataclasses
    model = M.build("lenet", 10)
    o = fedavg(model, *D.load("cifar10", 1), local_steps=1, lr=0.1)
    with pytest.raises(TypeError, match="meta"):
        save(dataclasses.replace(o, meta={"bad": object()}), tmp_path / "x.pt")
