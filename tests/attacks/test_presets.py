import pytest

from fastleak.attacks import PRESETS, AttackConfig
from fastleak.attacks.presets import resolve
from fastleak.errors import InvalidValueError


@pytest.mark.parametrize("field, value, message", [
    ("labels", "guess", "attack option labels must be one of 'recover', 'optimize', got 'guess'"),
    ("distance", "l1", "attack option distance must be one of 'l2', 'l2_relative', 'cosine', got 'l1'"),
    ("layer_weights", "random", "attack option layer_weights must be one of 'equal', 'linear', 'exp'"),
    ("optimizer", "sgd", "attack option optimizer must be one of 'adam', 'lbfgs', got 'sgd'"),
    ("init", "zeros", "attack option init must be one of 'uniform', 'gaussian'"),
    ("registration", "rigid", "attack option registration must be one of 'affine', 'translation'"),
    ("fedavg_mode", "replay", "attack option fedavg_mode must be one of 'unroll', 'pseudo'"),
    ("line_search", "wolfe", "attack option line_search must be one of None, 'backtracking', got 'wolfe'"),
    ("iterations", 0, "attack option iterations must be a positive int, got 0"),
    ("lbfgs_inner", -1, "attack option lbfgs_inner must be a positive int, got -1"),
    ("record_every", 0, "attack option record_every must be a positive int"),
    ("checkpoint_every", 0, "attack option checkpoint_every must be a positive int"),
    ("group_every", 0, "attack option group_every must be a positive int"),
    ("history_size", 0, "attack option history_size must be a positive int"),
    ("lr", 0.0, "attack option lr must be a positive finite number, got 0.0"),
    ("lr", float("inf"), "attack option lr must be a positive finite number, got inf"),
    ("tv", -0.1, r"attack option tv must be a finite weight >= 0 \(0 disables the prior\), got -0.1"),
    ("bn", float("nan"), "attack option bn must be a finite weight >= 0"),
    ("group_start", 1.5, r"attack option group_start must be a fraction of the run in \[0, 1\], got 1.5"),
    ("label_method", "", "attack option label_method must be a non-empty string"),
    ("iterations", 2.5, "attack option iterations must be int, got 2.5"),
    ("boxed", 1, "attack option boxed must be bool, got 1"),
])
def test_every_field_is_checked_naming_it_and_what_was_expected(field, value, message):
    with pytest.raises(InvalidValueError, match=message):
        AttackConfig(**{field: value})
    with pytest.raises(InvalidValueError, match=message):
        PRESETS.get("inverting").replace(**{field: value})


def test_every_preset_is_valid_and_unknown_options_are_named():
    assert all(isinstance(PRESETS.get(name), AttackConfig) for name in PRESETS)
    with pytest.raises(InvalidValueError, match=r"unknown attack option\(s\) \['colour'\]"):
        PRESETS.get("inverting").replace(colour=3)


def test_resolve_takes_a_name_or_a_config_and_the_iterations_override():
    assert resolve("dlg") == PRESETS.get("dlg")
    assert resolve("dlg", None, tv=0.5).tv == 0.5 and resolve("dlg", None).iterations == 300
    config = AttackConfig(iterations=7)
    assert resolve(config, 3) == config.replace(iterations=3)
    with pytest.raises(InvalidValueError, match="iterations must be a positive int, got 0"):
        resolve("dlg", 0)
