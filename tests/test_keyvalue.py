import pytest

from fastleak._keyvalue import key_values, named_key_values, parse_value
from fastleak.errors import InvalidValueError


@pytest.mark.parametrize("text, value", [("false", False), ("True", True), ("TRUE", True), ("0.5", 0.5), ("1e-5", 1e-5),
                                         ("3", 3), ("None", None), ("(1, 2)", (1, 2)), ("'x'", "x"),
                                         ("cosine", "cosine"), ("a b", "a b"), ("", "")])
def test_a_value_is_a_literal_a_boolean_in_any_case_or_the_text(text, value):
    assert parse_value(text) == value and type(parse_value(text)) is type(value)


def test_key_values_read_each_item_and_turn_dashes_in_keys_into_underscores():
    assert key_values(["sigma=0.01", "per-layer=true", "name=a=b", "sigma=0.1"], "--x") == {
        "sigma": 0.1, "per_layer": True, "name": "a=b"}
    assert key_values(None, "--x") == {} and key_values([], "--x") == {}


@pytest.mark.parametrize("item", ["sigma", "=1", " =1"])
def test_an_item_without_a_key_names_the_option_and_shows_an_example(item):
    with pytest.raises(InvalidValueError, match=r"--defense-param expects KEY=VALUE, got .*; write e\.g\. "
                                                r"--defense-param sigma=0\.01"):
        key_values([item], "--defense-param", "sigma=0.01")


def test_named_key_values_read_a_name_alone_or_with_its_settings():
    assert named_key_values("none", "--protection") == ("none", {})
    assert named_key_values("dp_sgd:clip=1,sigma=0.5", "--protection") == ("dp_sgd", {"clip": 1, "sigma": 0.5})
    assert named_key_values("tv:weight=1e-2,", "--prior") == ("tv", {"weight": 0.01})


@pytest.mark.parametrize("text", ["gaussian:sigma", ":sigma=1", ""])
def test_a_malformed_named_setting_names_the_option_and_shows_an_example(text):
    with pytest.raises(InvalidValueError, match=r"--protection expects NAME or NAME:KEY=VALUE,KEY=VALUE, got .*; "
                                                r"write e\.g\. --protection gaussian:sigma=1e-5"):
        named_key_values(text, "--protection", "gaussian:sigma=1e-5")
