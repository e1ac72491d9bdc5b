import pytest
import torch

from fastleak.labels.statistics import DUMMIES, PINK_MEAN


def pink(shape, seed=0):
    return DUMMIES.get("pink")(shape, torch.Generator().manual_seed(seed))


def test_pink_dummies_are_images_in_range_and_reproducible():
    x = pink((64, 3, 32, 32))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert abs(float(x.mean()) - PINK_MEAN) < 0.03
    assert torch.equal(x, pink((64, 3, 32, 32)))
    assert not torch.equal(x, pink((64, 3, 32, 32), seed=1))


def test_pink_dummies_have_a_falling_spectrum_and_correlated_channels():
    x = pink((64, 3, 32, 32))
    power = torch.fft.fft2(x - x.mean((2, 3), keepdim=True)).abs().pow(2).mean((0, 1))
    f = torch.fft.fftfreq(32)
    radius = torch.sqrt(f[:, None] ** 2 + f[None, :] ** 2)
    low = power[(radius > 0) & (radius <= 0.1)].mean()
    high = power[radius >= 0.4].mean()
    assert low > 50 * high  # 1/f amplitude: power falls as 1/f²; white noise would be flat
    flat = x.transpose(0, 1).flatten(1)
    assert float(torch.corrcoef(flat)[0, 1:].min()) > 0.5  # a shared luminance field


@pytest.mark.parametrize("shape", [(8, 784), (8, 28, 28), (8, 1, 28, 28), (8, 2, 3, 16, 16)])
def test_pink_dummies_take_any_input_shape(shape):
    x = pink(shape)
    assert x.shape == shape and float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    flat = x.reshape(8, -1)
    assert float((flat.mean(1) - PINK_MEAN).abs().max()) < 0.1


def test_pink_dummies_need_an_input_shape():
    with pytest.raises(ValueError, match="'pink' needs an input_shape"):
        pink((4,))
