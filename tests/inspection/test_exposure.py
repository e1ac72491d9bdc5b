import torch
from torch import nn

from fastleak import models
from fastleak.inspection.exposure import bins, coefficients, draw_batches, exposures, readable
from fastleak.inspection.layers import linear_layers


def g_of(rows: list[list[float]]) -> torch.Tensor:
    """Coefficients [B, K] from a list of rows (one list of B per row)."""
    return torch.tensor(rows, dtype=torch.float64).T


def test_a_row_reached_by_one_sample_reads_it():
    alone, known = readable(g_of([[0.5, 0, 0], [0.1, 0.2, 0.3], [0, 0, 0]]))
    assert alone.tolist() == [True, False, False] and known.tolist() == [True, False, False]


def test_nested_rows_with_equal_coefficients_give_their_difference_as_a_bin():
    # cumulative rows: row k reaches every sample above its threshold, with the same coefficients
    c = [0.3, -0.2, 0.7, 0.1]
    g = g_of([c, [0, c[1], c[2], c[3]], [0, 0, c[2], c[3]], [0, 0, 0, c[3]]])
    members, _ = bins(g)
    assert members.shape == (4, 7)
    alone, known = readable(g)
    assert alone.all() and known.all()


def test_nested_rows_with_other_coefficients_are_not_differenced():
    g = g_of([[0.3, -0.2, 0.7], [0, -0.25, 0.7]])
    assert not readable(g)[0].any()


def test_peeling_reads_a_sample_left_alone_once_a_known_one_is_subtracted():
    # sample 3 alone in row 1, sample 0 in the difference of rows 0 and 1; row 2 holds 0 and 1
    g = g_of([[0.4, 0, 0, 0.7], [0, 0, 0, 0.7], [0.4, 0.9, 0, 0]])
    alone, known = readable(g)
    assert alone.tolist() == [True, False, False, True] and known.tolist() == [True, True, False, True]
    # a known sample whose coefficient differs in the other row cannot be subtracted there
    alone, known = readable(g_of([[0.4, 0, 0], [0.5, 0.9, 0]]))
    assert known.tolist() == [True, False, False]


def test_coefficients_are_zero_where_a_relu_passes_no_gradient():
    net = nn.Sequential(nn.Flatten(), nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[1].weight.copy_(torch.eye(3, 4))
        net[1].bias.fill_(-0.5)
    x = torch.tensor([[1.0, 0, 0, 0], [0, 1, 1, 0]]).reshape(2, 1, 2, 2)
    layers = linear_layers(net, (1, 2, 2))
    g = coefficients(net, [layers[0]], x)["1"]
    assert ((g != 0) == torch.tensor([[True, False, False], [False, True, True]])).all()
    assert net.training


def test_batches_are_drawn_without_replacement_and_a_small_pool_is_one_batch():
    x = torch.arange(10.0)[:, None]
    drawn = draw_batches(x, 4, 3, seed=0)
    assert len(drawn) == 3 and all(len(set(b.flatten().tolist())) == 4 for b in drawn)
    assert len(draw_batches(x, 10, 3, seed=0)) == 1


def test_an_honest_mlp_leaks_little_of_a_large_batch_through_its_busy_rows(digits):
    net = models.build("mlp", 10, in_shape=(1, 28, 28))
    layers = [layer for layer in linear_layers(net, (1, 28, 28)) if layer.reads_input]
    per_layer, union = exposures(net, layers, digits, 128, 2)
    e = per_layer["linear0"]
    assert e.readable < 0.1 and e.median_rate > 0.2 and e.live_rows > 400 and e.batches == 2
    assert union == e.readable
