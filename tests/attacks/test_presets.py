import pytest

from fastleak.attacks import PRESETS, AttackConfig, Execution
from fastleak.attacks.presets import configure, resolve
from fastleak.errors import InvalidValueError


@pytest.mark.parametrize("field, value, message", [
    ("labels", "guess", "attack option labels must be one of 'recover', 'optimize', got 'guess'"),
    ("distance", "l1", "attack option distance must be one of 'l2', 'l2_relative', 'cosine', got 'l1'"),
    ("layer_weights", "random", "attack option layer_weights must be one of 'equal', 'linear', 'exp'"),
    ("optimizer", "sgd", "attack option optimizer must be one of 'adam', 'lbfgs', got 'sgd'"),
    ("init", "zeros", "attack option init must be one of 'gaussian', 'patterned-16', 'patterned-4', 'uniform', got 'zeros'"),
    ("fedavg_mode", "replay", "attack option fedavg_mode must be one of 'unroll', 'pseudo'"),
    ("line_search", "wolfe", "attack option line_search must be one of None, 'backtracking', got 'wolfe'"),
    ("iterations", 0, "attack option iterations must be a positive int, got 0"),
    ("lbfgs_inner", -1, "attack option lbfgs_inner must be a positive int, got -1"),
    ("history_size", 0, "attack option history_size must be a positive int"),
    ("lr", 0.0, "attack option lr must be a positive finite number, got 0.0"),
    ("lr", float("inf"), "attack option lr must be a positive finite number, got inf"),
    ("label_method", "", "attack option label_method must be a non-empty string"),
    ("iterations", 2.5, "attack option iterations must be int, got 2.5"),
    ("boxed", 1, "attack option boxed must be bool, got 1"),
    ("priors", ["tv"], "attack option priors must map prior names to parameters"),
])
def test_every_field_is_checked_naming_it_and_what_was_expected(field, value, message):
    with pytest.raises(InvalidValueError, match=message):
        AttackConfig(**{field: value})
    with pytest.raises(InvalidValueError, match=message):
        PRESETS.get("inverting").replace(**{field: value})


@pytest.mark.parametrize("option, value, message", [
    ("tv", -0.1, r"prior tv: weight must be a finite number >= 0 \(0 disables the prior\), got -0.1"),
    ("bn", float("nan"), "prior bn: weight must be a finite number >= 0"),
    ("registration", "rigid", "prior group: registration must be 'affine' or 'translation'"),
    ("group_every", 0, "prior group: every must be a positive int"),
    ("group_start", 1.5, r"prior group: start must be a fraction of the run in \[0, 1\], got 1.5"),
])
def test_prior_options_are_checked_by_their_prior(option, value, message):
    with pytest.raises(InvalidValueError, match=message):
        PRESETS.get("inverting").replace(**{option: value})


@pytest.mark.parametrize("field, value, message", [
    ("record_every", 0, "attack option record_every must be a positive int"),
    ("checkpoint_every", 0, "attack option checkpoint_every must be a positive int"),
    ("lean_conv", "maybe", "attack option lean_conv must be bool, got 'maybe'"),
    ("device", 0, "attack option device must be str or None, got 0"),
])
def test_execution_settings_are_checked_apart_from_the_algorithm(field, value, message):
    with pytest.raises(InvalidValueError, match=message):
        Execution(**{field: value})
    with pytest.raises(InvalidValueError, match=message):
        configure("inverting", **{field: value})
    with pytest.raises(InvalidValueError, match=f"{field}: execution setting"):
        PRESETS.get("inverting").replace(**{field: Execution().as_dict()[field]})


def test_configure_splits_options_into_the_algorithm_and_its_execution():
    config, execution = configure("inverting", 30, tv=0.1, lean_conv=False, record_every=5)
    assert config == PRESETS.get("inverting").replace(iterations=30, tv=0.1)
    assert execution == Execution(lean_conv=False, record_every=5)


def test_every_preset_is_valid_and_unknown_options_are_named():
    assert all(isinstance(PRESETS.get(name), AttackConfig) for name in PRESETS)
    with pytest.raises(InvalidValueError, match=r"unknown attack option\(s\) \['colour'\]"):
        PRESETS.get("inverting").replace(colour=3)


def test_resolve_takes_a_name_or_a_config_and_the_iterations_override():
    assert resolve("dlg") == PRESETS.get("dlg")
    assert resolve("dlg", None, tv=0.5).priors == {"tv": {"weight": 0.5}} and resolve("dlg", None).iterations == 300
    config = AttackConfig(iterations=7)
    assert resolve(config, 3) == config.replace(iterations=3)
    with pytest.raises(InvalidValueError, match="iterations must be a positive int, got 0"):
        resolve("dlg", 0)
