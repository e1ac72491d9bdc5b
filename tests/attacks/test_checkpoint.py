import pytest
import torch

from fastleak.attacks import checkpoint
from fastleak.errors import InvalidValueError

CPU = torch.device("cpu")


def test_a_saved_state_loads_back_with_its_format(tmp_path):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, {"step": 3, "config": {"tv": 0.1}, "shape": [2, 1, 3, 4, 4], "x": torch.ones(2)})
    state = checkpoint.load(path, CPU, {"tv": 0.1}, [2, 1, 3, 4, 4])
    assert state["format"] == checkpoint.FORMAT and state["version"] == checkpoint.VERSION
    assert state["step"] == 3 and torch.equal(state["x"], torch.ones(2))


def test_another_attack_version_or_file_is_refused(tmp_path):
    path = tmp_path / "run.ckpt"
    checkpoint.save(path, {"step": 3, "config": {"tv": 0.1}, "shape": [2, 1, 3, 4, 4]})
    with pytest.raises(InvalidValueError, match="belongs to a different attack configuration"):
        checkpoint.load(path, CPU, {"tv": 0.2}, [2, 1, 3, 4, 4])
    with pytest.raises(InvalidValueError, match="belongs to a different attack configuration"):
        checkpoint.load(path, CPU, {"tv": 0.1}, [3, 1, 3, 4, 4])
    torch.save({"format": checkpoint.FORMAT, "version": 1}, path)
    with pytest.raises(InvalidValueError, match=f"has version 1, expected {checkpoint.VERSION}"):
        checkpoint.load(path, CPU, {}, [])
    torch.save({"weights": torch.zeros(1)}, path)
    with pytest.raises(InvalidValueError, match="is not a fastleak attack checkpoint"):
        checkpoint.load(path, CPU, {}, [])
    path.write_bytes(b"garbage")
    with pytest.raises(InvalidValueError, match="cannot be read .*delete it to start afresh"):
        checkpoint.load(path, CPU, {}, [])
