"""The fastleak side of the malicious-server comparison (breaching runs in its own venv, never here):
the case files hold one model's parameters and gradient, and the scorer counts exact, recognisable
and false images the same way for any framework's output."""
import sys
from pathlib import Path

import torch

PEERS = Path(__file__).resolve().parents[2] / "benchmarks" / "peers"
sys.path.insert(0, str(PEERS))
sys.path.insert(0, str(PEERS.parent))
from fastleak_malicious import run, score, singletons  # noqa: E402
from malicious_cases import write_case  # noqa: E402


def test_a_case_holds_the_gradient_of_its_model_and_fastleak_recovers_its_lone_digits(tmp_path):
    from fastleak import data

    x, y = data.load("mnist", 200, seed=0)
    public, _ = data.load("mnist", 2000, seed=0, split="train")
    path = write_case(tmp_path, "mnist", 16, "cumulative", 0, (x, y, public))
    case = torch.load(path, weights_only=False)
    assert len(case["parameters"]) == len(case["gradients"]) and case["images"].shape == (16, 1, 28, 28)
    assert case["gradients"][case["weight_idx"]].shape == (32, 784) and case["gradients"][case["bias_idx"]].shape == (32,)
    out = tmp_path / "fastleak"
    out.mkdir()
    result = torch.load(run(path, out, repeat=1), weights_only=False)
    counts = score(result["images"], case["images"])
    assert counts["exact"] == round(16 * singletons(path)) > 0 and counts["false"] == 0


def test_score_counts_exact_recognisable_and_false_images_and_ignores_zero_padding():
    from fastleak import data

    truth, _ = data.load("mnist", 6, seed=1)
    returned = torch.cat([truth[:2], 0.5 * truth[2:3] + 0.5 * truth[3:4], torch.zeros(3, 1, 28, 28)])
    counts = score(returned, truth)
    assert counts == {"returned": 3, "exact": 2, "recognisable": 2, "false": 1}
    noisy = (truth + 0.01 * torch.randn(truth.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    assert score(noisy, truth) == {"returned": 6, "exact": 0, "recognisable": 6, "false": 6}
