import pytest
import torch

from fastleak.attacks.priors import build


def term(name, params, x):
    return build(name, {"weight": 1.0, **params}).term(x, None)


@pytest.fixture
def images():
    return torch.rand(3, 2, 3, 9, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


def neighbours(x):
    """The right and lower differences on the (H-1) x (W-1) grid of pixels that have both."""
    return x[..., :-1, 1:] - x[..., :-1, :-1], x[..., 1:, :-1] - x[..., :-1, :-1]


def test_tv_power_with_unit_exponents_is_anisotropic_tv(images):
    dx, dy = neighbours(images)
    expected = (dx.abs() + dy.abs()).flatten(1).mean(1)
    torch.testing.assert_close(term("tv_power", {"eps": 0.0}, images), expected)


def test_tv_power_with_inner_2_outer_half_is_isotropic_tv(images):
    dx, dy = neighbours(images)
    expected = (dx ** 2 + dy ** 2).sqrt().flatten(1).mean(1)
    torch.testing.assert_close(term("tv_power", {"inner": 2.0, "outer": 0.5, "eps": 0.0}, images), expected)


def test_tv_power_colour_opponents_add_the_channel_differences(images):
    r, g, b = images.unbind(2)
    extended = torch.cat([images, torch.stack([r - g, r - b, g - b], 2)], 2)
    dx, dy = neighbours(extended)
    expected = (dx.abs() + dy.abs()).flatten(1).mean(1)
    torch.testing.assert_close(term("tv_power", {"opponents": True, "eps": 0.0}, images), expected)
    grey = images[:, :, :1]
    assert torch.equal(term("tv_power", {"opponents": True}, grey), term("tv_power", {}, grey))


def test_tv_power_is_zero_for_flat_images_and_differentiable_there():
    flat = torch.full((2, 1, 3, 5, 5), 0.3, requires_grad=True)
    value = term("tv_power", {"inner": 2.0, "outer": 0.5}, flat)
    value.sum().backward()
    assert float(value.max()) < 1e-6 and bool(torch.isfinite(flat.grad).all())


def test_norm_prior_is_the_mean_pth_power_over_p(images):
    torch.testing.assert_close(term("norm", {}, images), images.pow(2).flatten(1).mean(1) / 2)
    torch.testing.assert_close(term("norm", {"p": 3.0}, images - 0.5), (images - 0.5).abs().pow(3).flatten(1).mean(1) / 3)


@pytest.mark.parametrize("params, message", [
    ({"inner": 0.0}, "prior tv_power: inner must be a positive finite number, got 0.0"),
    ({"outer": float("inf")}, "prior tv_power: outer must be a positive finite number"),
    ({"eps": -1.0}, "prior tv_power: eps must be a finite number >= 0"),
])
def test_tv_power_parameters_are_checked(params, message):
    with pytest.raises(ValueError, match=message):
        build("tv_power", params)


def test_norm_parameter_is_checked():
    with pytest.raises(ValueError, match="prior norm: p must be a positive finite number, got -2"):
        build("norm", {"p": -2})
