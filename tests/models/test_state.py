"""Loading a saved state dict: exact when it fits, one line naming the file and the misfit when not."""
import pytest
import torch

from fastleak import models


def test_a_saved_state_loads_exactly(tmp_path):
    source = models.build("lenet", 10, seed=1)
    torch.save(source.state_dict(), tmp_path / "net.pt")
    target = models.load_state(models.build("lenet", 10, seed=2), tmp_path / "net.pt")
    assert all(torch.equal(v, target.state_dict()[k]) for k, v in source.state_dict().items())


def test_a_state_of_another_architecture_names_what_does_not_fit(tmp_path):
    torch.save(models.build("lenet", 10, in_shape=(1, 28, 28)).state_dict(), tmp_path / "net.pt")
    with pytest.raises(ValueError) as err:
        models.load_state(models.build("lenet", 10), tmp_path / "net.pt")
    message = str(err.value)
    assert "does not fit this LeNet" in message and "fc.weight [10, 588] vs [10, 768]" in message
    assert "body.0.weight [12, 1, 5, 5] vs [12, 3, 5, 5]" in message and "\n" not in message
    with pytest.raises(ValueError, match=r"missing body\.conv0\.weight, body\.conv0\.bias, .* and \d+ more; "
                                         r"unexpected body\.0\.weight"):
        models.load_state(models.build("convnet", 10, width=2), tmp_path / "net.pt")


@pytest.mark.parametrize("content, message", [
    (None, "does not exist"),
    (b"not a torch file", "cannot be read"),
    ([1, 2, 3], "holds no state dict"),
])
def test_missing_corrupt_or_foreign_files(tmp_path, content, message):
    path = tmp_path / "net.pt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        torch.save(content, path)
    with pytest.raises(ValueError, match=message):
        models.load_state(models.build("lenet", 10), path)
