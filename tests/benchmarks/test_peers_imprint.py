"""The fastleak side of the imprint comparison with breaching (breaching runs in its own venv, never here):
a case holds a model in breaching's block layout and that model's gradient, fastleak recovers the
batch's lone samples from it, and the scorer counts exact, recognisable and false images the same
way for any framework's output."""
import pytest
import torch

from benchmarks.peers.fastleak_imprint import matched_psnr, run, score
from benchmarks.peers.imprint_cases import GAIN, model_of, write_case


@pytest.fixture(scope="module")
def tiny_pool():
    from fastleak import data

    x, y = data.load("mnist", 200, seed=0)
    public, _ = data.load("mnist", 2000, seed=0, split="train")
    return x, y, public


@pytest.mark.parametrize("structure", ["cumulative", "sparse"])
def test_a_case_holds_breachings_layout_and_its_gradient_and_fastleak_recovers_its_lone_digits(
        tmp_path, tiny_pool, structure):
    from fastleak import federated

    path = write_case(tmp_path, "mnist", 16, 32, structure, 0, tiny_pool)
    case = torch.load(path, weights_only=False)
    gain, lower = GAIN[structure], case["edges"][:-1]
    scale = gain if structure == "cumulative" else 1 / (case["edges"][1:] - lower)
    assert torch.allclose(case["block"]["bins.bias"].double(), -scale * lower, rtol=1e-6)
    assert bool((case["block"]["readout.weight"] == 1 / gain).all())
    assert case["param_names"][case["weight_idx"]] == "block.bins.weight" and case["weight_idx"] == 0
    model = model_of(case)
    fresh = federated.fedsgd(model, case["images"], case["labels"])
    assert all(torch.equal(a, b) for a, b in zip(fresh.pairs[0].shared, case["gradients"]))
    out = tmp_path / "fastleak"
    out.mkdir()
    result = torch.load(run(path, out, repeat=1), weights_only=False)
    counts = score(result["images"], case["images"])
    assert counts["exact"] == int(case["alone"].sum()) > 0 and counts["false"] == 0
    assert result["seconds"] > 0 and result["seconds_with_labels"] > 0


def test_identical_images_score_100_db_and_exact():
    from fastleak import data

    truth, _ = data.load("mnist", 6, seed=1)
    values, returned = matched_psnr(truth.flip(0), truth)
    assert returned == 6 and bool((values == 100.0).all())
    assert score(truth, truth) == {"returned": 6, "exact": 6, "recognisable": 6, "false": 0}


def test_mixed_images_are_false_and_zero_padding_is_not_returned():
    from fastleak import data

    truth, _ = data.load("mnist", 6, seed=1)
    returned = torch.cat([truth[:2], 0.5 * truth[2:3] + 0.5 * truth[3:4], torch.zeros(3, 1, 28, 28)])
    values, count = matched_psnr(returned, truth)
    assert count == 3 and int(values.isnan().sum()) == 3 and bool((values[:2] == 100.0).all())
    assert score(returned, truth) == {"returned": 3, "exact": 2, "recognisable": 2, "false": 1}
    noisy = (truth + 0.01 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert score(noisy, truth) == {"returned": 6, "exact": 0, "recognisable": 6, "false": 6}
