import pytest
import torch

from fastleak.closedform import final_features, layer_input, row_inputs, singleton_rows
from fastleak.errors import InvalidValueError
from fastleak.federated.losses import client_loss


def gradients(u, w, b, y, loss="ce", reduction="mean"):
    """The weight and bias gradients of a linear classifier on inputs u [B, m]."""
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    return torch.autograd.grad(client_loss(u @ w.T + b, y, loss, reduction), (w, b))


def test_one_samples_input_is_every_live_rows_ratio():
    gen = torch.Generator().manual_seed(0)
    u = torch.rand(1, 50, generator=gen, dtype=torch.float64)
    w, b = torch.randn(7, 50, generator=gen, dtype=torch.float64), torch.randn(7, generator=gen, dtype=torch.float64)
    dw, db = gradients(u, w, b, torch.tensor([3]))
    torch.testing.assert_close(layer_input(dw, db), u[0], rtol=1e-12, atol=1e-12)
    ratios, live = row_inputs(dw, db)
    assert live.all() and torch.allclose(ratios, u.expand(7, -1), atol=1e-12)
    with pytest.raises(InvalidValueError, match="bias_grad is zero"):
        layer_input(dw, torch.zeros_like(db))
    with pytest.raises(InvalidValueError, match="do not belong to one layer"):
        layer_input(dw, db[:3])


@pytest.mark.parametrize("loss,reduction", [("ce", "mean"), ("ce", "sum"), ("mse", "mean")])
def test_final_features_are_exact_for_unique_labels(loss, reduction):
    gen = torch.Generator().manual_seed(1)
    batch, classes, m = 6, 20, 40
    u = torch.rand(2, batch, m, generator=gen, dtype=torch.float64)
    w = 0.1 * torch.randn(2, classes, m, generator=gen, dtype=torch.float64)
    b = 0.1 * torch.randn(2, classes, generator=gen, dtype=torch.float64)
    y = torch.stack([torch.randperm(classes, generator=gen)[:batch] for _ in range(2)])
    dw, db = (torch.stack(t) for t in zip(*(gradients(u[p], w[p], b[p], y[p], loss, reduction) for p in range(2))))
    ratio_error = (torch.gather(dw / db[..., None], 1, y[..., None].expand(-1, -1, m)) - u).abs().max()
    found = final_features(dw, db, w, b, y, loss=loss, reduction=reduction)
    assert found.exact.all() and 0 < found.steps < (20 if loss == "ce" else 200)
    assert ratio_error > 1e-3 and (found.features - u).abs().max() < 1e-10
    one = final_features(dw[0], db[0], w[0], b[0], y[0], loss=loss, reduction=reduction)
    torch.testing.assert_close(one.features, found.features[0])


def test_repeated_labels_are_not_exact_and_few_classes_are_not_refined():
    gen = torch.Generator().manual_seed(2)
    u = torch.rand(4, 10, generator=gen, dtype=torch.float64)
    w, b = torch.randn(3, 10, generator=gen, dtype=torch.float64), torch.randn(3, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 2])
    found = final_features(*gradients(u, w, b, y), w, b, y)
    assert found.exact.tolist() == [False] * 4 and found.steps == 0  # 3 classes < 4 samples
    with pytest.raises(InvalidValueError, match=r"labels must lie in \[0, 3\)"):
        final_features(*gradients(u, w, b, y), w, b, torch.tensor([0, 1, 1, 3]))


def test_singleton_rows_certify_samples_two_rows_agree_on():
    gen = torch.Generator().manual_seed(3)
    x = torch.rand(3, 30, generator=gen, dtype=torch.float64)
    # rows 0-1: sample 0 alone; rows 2-4: sample 2 alone; rows 5-7: mixtures; row 8: sample 1 alone (once)
    reach = torch.tensor([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 0, 1], [0, 0, 1], [1, 1, 0], [0, 1, 1], [1, 1, 1],
                          [0, 1, 0]], dtype=torch.float64)
    g = reach * torch.rand(9, 3, generator=gen, dtype=torch.float64).add(0.5)
    found = singleton_rows(g @ x, g.sum(1))
    assert found.rows.tolist() == [3, 2]
    torch.testing.assert_close(found.inputs, x[[2, 0]])
