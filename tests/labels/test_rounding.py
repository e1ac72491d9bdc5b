import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from fastleak.labels import largest_remainder


def test_hamilton_hands_missing_units_to_largest_remainders():
    est = torch.tensor([[1.6, 0.7, 0.2, 0.5]])
    assert largest_remainder(est, torch.tensor([3])).tolist() == [[2, 1, 0, 0]]


def test_excess_is_taken_from_smallest_remainders():
    est = torch.tensor([[2.1, 1.3, 1.9]])
    # floors 2, 1, 1 already sum to 4 > 3: the unit with the smallest remainder (2.1 -> 2) goes.
    assert largest_remainder(est, torch.tensor([3])).tolist() == [[1, 1, 1]]


def test_negative_and_nan_count_as_zero_and_gaps_larger_than_classes():
    est = torch.tensor([[-4.0, float("nan"), 0.2], [0.0, 0.0, 0.0]])
    out = largest_remainder(est, torch.tensor([7, 5]))
    assert out.sum(1).tolist() == [7, 5]
    assert out[0].tolist() == [2, 2, 3]  # all remainders tie except 0.2: it gets the extra unit first
    assert out[1].tolist() == [2, 2, 1]


def test_rows_are_independent_and_shapes_checked():
    est = torch.tensor([[0.5, 0.5], [3.0, 0.0]])
    assert largest_remainder(est, torch.tensor([1, 3])).tolist() == [[1, 0], [3, 0]]
    with pytest.raises(ValueError, match="estimates"):
        largest_remainder(torch.zeros(3), torch.tensor([1]))
    with pytest.raises(ValueError, match="totals"):
        largest_remainder(torch.zeros(2, 3), torch.tensor([1]))


def _closest(x, total):
    """Brute force: the non-negative integer vector with the given sum closest to clamp(x, 0)."""
    x = [max(v, 0.0) for v in x]
    best = None
    for k in itertools.product(range(total + 1), repeat=len(x)):
        if sum(k) == total:
            cost = sum((a - b) ** 2 for a, b in zip(k, x))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, k)
    return best[0]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-2, 6, allow_nan=False), min_size=1, max_size=4), st.integers(0, 6))
def test_result_is_a_closest_integer_vector(values, total):
    out = largest_remainder(torch.tensor([values], dtype=torch.float64), torch.tensor([total]))[0]
    assert int(out.sum()) == total and bool((out >= 0).all())
    x = torch.tensor(values, dtype=torch.float64).clamp_min(0).clamp_max(total)
    cost = float(((out.double() - x) ** 2).sum())
    assert cost <= _closest(x.tolist(), total) + 1e-9
