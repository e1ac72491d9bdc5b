from dataclasses import dataclass

import pytest

from fastleak._checks import typed_fields
from fastleak.attacks import PRESETS


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
    with pytest.raises(ValueError, match="attack option lean_conv must be bool, got 'maybe'"):
        PRESETS.get("inverting").replace(lean_conv="maybe")
    assert PRESETS.get("inverting").replace(lean_conv=False, tv=1).tv == 1
