import math

import pytest
import torch

import fastleak.data as D
import fastleak.defenses as F
import fastleak.models as M
from fastleak.federated import fedavg, fedsgd, multi_pair


@pytest.fixture(scope="module")
def batch():
    return D.load("cifar10", 4, labels="unique", seed=2)


@pytest.fixture(scope="module")
def obs(batch):
    return multi_pair(M.build("lenet", 10), *batch, pairs=2)


def flat(tensors):
    return torch.cat([t.flatten() for t in tensors])


def test_gaussian_noise_has_the_requested_scale(obs):
    out = F.apply(obs, "gaussian", sigma=0.3, seed=1)
    for p, q in zip(obs.pairs, out.pairs):
        noise = flat(q.shared) - flat(p.shared)
        assert noise.numel() > 15000
        assert abs(noise.std().item() / 0.3 - 1) < 0.05
        assert abs(noise.mean().item()) < 4 * 0.3 / math.sqrt(noise.numel())
        assert all(p.state[k] is q.state[k] for k in p.state)
    assert not torch.equal(flat(out.pairs[0].shared) - flat(obs.pairs[0].shared),
                           flat(out.pairs[1].shared) - flat(obs.pairs[1].shared)), "each pair gets fresh noise"
    again = F.apply(obs, "gaussian", sigma=0.3, seed=1)
    other = F.apply(obs, "gaussian", sigma=0.3, seed=2)
    assert torch.equal(flat(again.pairs[0].shared), flat(out.pairs[0].shared))
    assert not torch.equal(flat(other.pairs[0].shared), flat(out.pairs[0].shared))
    assert out.meta["defenses"] == ({"name": "gaussian", "sigma": 0.3, "seed": 1},)
    assert "defenses" not in obs.meta


def test_laplace_noise_has_the_requested_scale(obs):
    noise = flat(F.apply(obs, "laplace", scale=0.2).pairs[0].shared) - flat(obs.pairs[0].shared)
    assert abs(noise.abs().mean().item() / 0.2 - 1) < 0.05          # E|v| = b
    assert abs(noise.var().item() / (2 * 0.2 ** 2) - 1) < 0.1       # Var = 2 b^2
    assert abs(noise.median().item()) < 0.02


def test_clip_bounds_the_global_norm_and_keeps_direction(obs):
    before = flat(obs.pairs[0].shared)
    bound = before.norm().item() / 3
    out = flat(F.apply(obs, "clip", max_norm=bound).pairs[0].shared)
    assert out.norm().item() == pytest.approx(bound, rel=1e-5)
    torch.testing.assert_close(out, before * (bound / before.norm()), rtol=1e-5, atol=1e-8)
    untouched = F.apply(obs, "clip", max_norm=10 * before.norm().item())
    assert torch.equal(flat(untouched.pairs[0].shared), before)


def test_clip_per_layer(obs):
    out = F.apply(obs, "clip", max_norm=0.05, per_layer=True)
    for t, s in zip(obs.pairs[0].shared, out.pairs[0].shared):
        assert s.norm().item() <= 0.05 * (1 + 1e-5)
        if t.norm() <= 0.05:
            assert torch.equal(s, t)
    assert out.meta["defenses"][-1] == {"name": "clip", "max_norm": 0.05, "per_layer": True}


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9])
def test_topk_keeps_exactly_the_largest_entries(obs, keep):
    out = F.apply(obs, "topk", keep=keep)
    for t, s in zip(obs.pairs[0].shared, out.pairs[0].shared):
        kept = math.floor(keep * t.numel() + 0.5)
        assert int((s != 0).sum()) == kept
        assert torch.equal(s[s != 0], t[s != 0])
        if 0 < kept < t.numel():
            assert t[s != 0].abs().min() >= t[s == 0].abs().max()


def test_prune_zeroes_the_requested_fraction(obs):
    out = F.apply(obs, "prune", ratio=0.7)
    for t, s in zip(obs.pairs[0].shared, out.pairs[0].shared):
        assert int((s == 0).sum()) == math.floor(0.7 * t.numel() + 0.5)


@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_quantize_uses_at_most_2_to_the_bits_levels(obs, bits):
    out = F.apply(obs, "quantize", bits=bits)
    big = 0
    for t, s in zip(obs.pairs[0].shared, out.pairs[0].shared):
        levels = torch.unique(s).numel()
        assert levels <= 2 ** bits
        step = (t.max() - t.min()) / (2 ** bits - 1)
        assert (s - t).abs().max() <= step / 2 * (1 + 1e-4)
        if t.numel() >= 4 * 2 ** bits:
            big += 1
            assert levels >= 2
    assert big > 0
    assert torch.unique(F.apply(obs, "quantize", bits=1).pairs[0].shared[0]).numel() == 2


def test_defenses_apply_to_updates_and_chain(batch):
    upd = fedavg(M.build("lenet", 10), *batch, local_steps=2, lr=0.1)
    out = F.apply(F.apply(upd, "topk", keep=0.25), "gaussian", sigma=0.0)
    assert out.kind == "update"
    assert [d["name"] for d in out.meta["defenses"]] == ["topk", "gaussian"]


def test_dp_sgd_clips_each_example_and_adds_noise(batch):
    model = M.build("lenet", 10)
    x, y = batch
    # unclipped, the mean of per-example gradients is the batch gradient; in float64, because in float32 the
    # two round their convolutions' cancelling sums in orders the CPU's kernels choose
    model64, x64 = M.build("lenet", 10).double(), x.double()
    model64.load_state_dict(model.state_dict())
    loose = F.dp_sgd(model64, x64, y, clip=1e6, sigma=0.0)
    for a, b in zip(loose.pairs[0].shared, fedsgd(model64, x64, y).pairs[0].shared):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9 * float(b.abs().max()))
    clip = 0.1
    clipped = F.dp_sgd(model, x, y, clip=clip, sigma=0.0)
    manual = []
    for i in range(4):
        g = flat(fedsgd(model, x[i:i + 1], y[i:i + 1]).pairs[0].shared)
        assert g.norm() > clip, "the test needs examples above the bound"
        manual.append(g * clip / g.norm())
    torch.testing.assert_close(flat(clipped.pairs[0].shared), torch.stack(manual).mean(0), rtol=1e-4, atol=1e-7)
    noisy = F.dp_sgd(model, x, y, clip=clip, sigma=2.0, seed=3)
    noise = (flat(noisy.pairs[0].shared) - flat(clipped.pairs[0].shared)) * 4
    assert abs(noise.std().item() / (2.0 * clip) - 1) < 0.05
    assert noisy.meta["defenses"] == ({"name": "dp_sgd", "clip": clip, "sigma": 2.0, "seed": 3},)
    assert noisy.kind == "gradient" and noisy.num_samples == 4


def test_dp_sgd_refuses_batchnorm_in_train_mode(batch):
    with pytest.raises(ValueError, match="BatchNorm"):
        F.dp_sgd(M.build("convnet", 10, width=2), *batch, clip=1.0, sigma=1.0)


def test_bad_arguments(obs):
    with pytest.raises(ValueError, match="unknown defense 'blur'.*gaussian"):
        F.apply(obs, "blur")
    with pytest.raises(ValueError, match="sigma"):
        F.apply(obs, "gaussian", sigma=-1.0)
    with pytest.raises(TypeError, match="accepted: sigma, seed"):
        F.apply(obs, "gaussian", scale=1.0)
    with pytest.raises(TypeError, match="sigma"):
        F.apply(obs, "gaussian")
    with pytest.raises(ValueError, match="max_norm"):
        F.apply(obs, "clip", max_norm=0)
    with pytest.raises(ValueError, match="keep"):
        F.apply(obs, "topk", keep=1.5)
    with pytest.raises(ValueError, match="bits"):
        F.apply(obs, "quantize", bits=0)
    with pytest.raises(TypeError, match="seed"):
        F.apply(obs, "clip", max_norm=1.0, seed=3)
    with pytest.raises(TypeError, match="Observation"):
        F.apply([], "clip", max_norm=1.0)


def test_defended_observation_saves_with_its_record(obs, tmp_path):
    from fastleak.federated import load, save
    out = F.apply(F.apply(obs, "clip", max_norm=1.0), "gaussian", sigma=0.1, seed=5)
    save(out, tmp_path / "o.pt")
    back = load(tmp_path / "o.pt")
    assert back.meta["defenses"] == out.meta["defenses"]
    assert torch.equal(flat(back.pairs[1].shared), flat(out.pairs[1].shared))
