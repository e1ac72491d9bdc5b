from dataclasses import dataclass

import pytest
import torch

from fastleak import _checks
from fastleak._checks import all_finite, typed_fields
from fastleak.attacks import PRESETS, Execution


@dataclass(frozen=True)
class Example:
    flag: bool = True
    count: int = 1
    weight: float = 0.5
    name: str = "a"
    search: str | None = None


@pytest.mark.parametrize("values", [
    {"flag": False}, {"count": 3}, {"weight": 2}, {"weight": 0.1}, {"name": "b"}, {"search": None}, {"search": "x"},
])
def test_values_of_the_annotated_type_pass(values):
    typed_fields(values, Example, "example")


@pytest.mark.parametrize("values, message", [
    ({"flag": "false"}, "example option flag must be bool, got 'false'"),
    ({"flag": 1}, "example option flag must be bool, got 1"),
    ({"count": True}, "example option count must be int, got True"),
    ({"count": 2.5}, "example option count must be int, got 2.5"),
    ({"weight": "big"}, "example option weight must be float, got 'big'"),
    ({"search": 3}, "example option search must be str or None, got 3"),
])
def test_values_of_another_type_are_refused_by_name(values, message):
    with pytest.raises(ValueError, match=message):
        typed_fields(values, Example, "example")


def test_attack_options_are_type_checked():
    with pytest.raises(ValueError, match="attack option boxed must be bool, got 'maybe'"):
        PRESETS.get("inverting").replace(boxed="maybe")
    with pytest.raises(ValueError, match="attack option lean_conv must be bool, got 'maybe'"):
        Execution(lean_conv="maybe")
    assert PRESETS.get("inverting").replace(boxed=False, tv=1).prior_weight("tv") == 1


@pytest.mark.parametrize("check, args, good, bad, message", [
    (_checks.integer, (), [0, -3, 7], [True, 1.0, "1", None], "n must be an int, got"),
    (_checks.positive_int, (), [1, 9], [0, -1, True, 2.0], "n must be a positive int, got"),
    (_checks.optional_positive_int, (), [None, 1], [0, False, 1.5], "n must be a positive int or None, got"),
    (_checks.nonnegative_int, (), [0, 4], [-1, True, 0.0], "n must be a non-negative int, got"),
    (_checks.int_in_range, (1, 16), [1, 16], [0, 17, True, 8.0], r"n must be an int in \[1, 16\], got"),
    (_checks.positive_ints, (), [(1,), [3, 32, 32]], [(), (0,), (1, True), 3, "ab"],
     "n must be a sequence of positive ints, got"),
    (_checks.nonnegative_number, (), [0, 0.5, 3], [-0.1, float("inf"), float("nan"), True, "1"],
     "n must be a finite number >= 0, got"),
    (_checks.positive_number, (), [1e-9, 2], [0, -1.0, float("inf"), True], "n must be a positive finite number, got"),
    (_checks.fraction, (), [0, 0.25, 1], [1.5, -0.5, float("nan")],
     r"n must be (in \[0, 1\]|a finite number >= 0), got"),
])
def test_each_check_returns_what_passes_and_names_the_argument_of_what_does_not(check, args, good, bad, message):
    for value in good:
        assert check(value, "n", *args) == (tuple(value) if isinstance(value, list) else value)
    for value in bad:
        with pytest.raises((ValueError, TypeError), match=message):
            check(value, "n", *args)


def test_a_sequence_check_shows_the_example():
    with pytest.raises(ValueError, match=r"in_shape must be a sequence of positive ints such as \(3, 32, 32\), "
                                         r"got \(0,\)"):
        _checks.positive_ints((0,), "in_shape", "(3, 32, 32)")


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
def test_all_finite_finds_any_nan_or_inf_and_passes_sums_that_overflow(dtype):
    for bad in (float("nan"), float("inf"), -float("inf")):
        for where in (0, 7, -1):
            x = torch.randn(1000, dtype=dtype)
            x[where] = bad
            assert not all_finite(x) and not all_finite(x.view(10, 100).t())
    huge = torch.full((64,), torch.finfo(dtype).max, dtype=dtype)   # finite entries whose sum is inf
    assert all_finite(huge) and all_finite(torch.randn(3, 4, dtype=dtype)) and all_finite(torch.zeros(0, dtype=dtype))
    assert all_finite(torch.tensor([2, 3])) and all_finite(torch.tensor([True, False]))
