"""fastleak.malicious.rescale: a digit whose scale is off comes back onto the pixel grid exactly;
a blend of two digits does not."""
from __future__ import annotations

import torch

from fastleak.malicious.rescale import measurement_estimate, off_grid, snap_to_grid


def test_a_misscaled_digit_snaps_back_exactly(mnist_batch):
    x = mnist_batch[0][:8].flatten(1).double()
    scale = torch.linspace(-3e-6, 5e-6, 8, dtype=torch.float64)  # signed loss coefficients, none zero
    scale[scale.abs() < 1e-7] = 1e-6
    direction = x * scale[:, None]
    estimate = x * 1.02  # the bias-scaled image, 2% off (about 5 grid steps at the brightest pixel)
    assert (off_grid(estimate, 255, 0.0, 1.0) > 0.25).all()
    snapped, _ = snap_to_grid(direction, estimate, 255, 0.0, 1.0, search=8)
    torch.testing.assert_close(snapped, x, rtol=0, atol=1e-7)  # x holds float32 roundings of k/255
    # with too narrow a search the right grid level is out of reach
    assert (snap_to_grid(direction, estimate, 255, 0.0, 1.0, search=2)[0] - x).abs().amax(1).min() > 1e-3


def test_a_blend_of_two_digits_stays_off_the_grid(mnist_batch):
    x = mnist_batch[0].flatten(1).double()
    blend = (0.3 * x[0] + 0.7 * x[1])[None]
    snapped, _ = snap_to_grid(blend * 2e-6, blend, 255, 0.0, 1.0, search=8)
    assert off_grid(snapped, 255, 0.0, 1.0).item() > 0.25


def test_measurement_estimate_hits_the_bin_midpoint(mnist_batch):
    x = mnist_batch[0][:4].flatten(1).double()
    w = torch.full((784,), 1 / 784, dtype=torch.float64)
    lower, upper = x @ w - 0.001, torch.tensor([1.0, 1.0, 1.0, float("inf")], dtype=torch.float64)
    estimate = measurement_estimate(x * 7.0, w, lower, upper)
    torch.testing.assert_close(estimate[:3] @ w, (lower[:3] + upper[:3]) / 2, rtol=1e-12, atol=0)
    assert estimate[3].isnan().all()
