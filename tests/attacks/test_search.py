import math

import pytest
import torch

import fastleak.data as data
import fastleak.models as models
from fastleak.attacks import PRESETS, attack
from fastleak.attacks.adam import AdamRun
from fastleak.attacks.presets import configure
from fastleak.attacks.problem import Problem
from fastleak.attacks.search import (RESTARTS, TV_GRID, candidates, default_restarts, discrepancy_ranks, halving_steps,
                                     holdout_mask, survivors)
from fastleak.errors import InvalidValueError
from fastleak.federated import fedsgd
from tests.attacks.resuming import straight_and_resumed

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def case():
    x, y = data.load("cifar10", 2, seed=1, labels="random")
    model = models.build("plainconv", 10, seed=0, width=4, depth=2).train()
    return model, x, y, fedsgd(model, x, y)


def searched(**options):
    return configure("inverting", 8, search={"tv": [1e3, 1e-6]}, halving=(), select="distance", **options)[0]


def test_candidates_are_every_combination_in_order():
    assert candidates({}) == [{}]
    assert candidates({"tv": (1.0, 2.0), "lr": (0.1, 0.2)}) == [
        {"tv": 1.0, "lr": 0.1}, {"tv": 1.0, "lr": 0.2}, {"tv": 2.0, "lr": 0.1}, {"tv": 2.0, "lr": 0.2}]


def test_halving_steps_lie_inside_the_run():
    assert halving_steps((1 / 8, 1 / 4, 1 / 2), 2000) == [250, 500, 1000]
    assert halving_steps((0.01, 0.99), 10) == [1, 9]
    assert halving_steps((0.5,), 1) == []


def test_survivors_are_each_problems_best_rows_in_order():
    scores = torch.tensor([3.0, 1.0, math.nan, 2.0, 0.5, 9.0, 0.1, math.inf])
    assert survivors(scores, 2, 2).tolist() == [1, 3, 4, 6]
    assert survivors(scores, 1, 3).tolist() == [1, 4, 6]


def test_the_discrepancy_principle_prefers_the_most_regularised_row_that_fits_about_as_well():
    distance = torch.tensor([1.0, 1.5, 3.0, 0.9, 2.0, 1.0, math.nan, 1.1])
    strength = torch.tensor([0.1, 1.0, 10.0, 0.0, 5.0, 1.0, 9.0, 1.0], dtype=torch.float64)
    ranks = discrepancy_ranks(distance, strength, 2, 2.0)
    assert ranks.tolist() == [1, 0, 3, 2, 0, 1, 3, 2]  # within twice the best: by strength, then by distance
    assert discrepancy_ranks(distance, strength, 2, 1.0).tolist() == [1, 2, 3, 0, 2, 0, 3, 1]


def test_a_search_by_discrepancy_returns_the_smoothest_candidate_that_fits(case):
    model, x, y, obs = case
    res = attack(obs, model, "inverting", labels=y, restarts=1, iterations=6, search={"tv": [1e-6, 1e-2]},
                 halving=(), select="discrepancy", discrepancy=1e6)
    assert res.search.chosen == {"tv": 1e-2}
    res = attack(obs, model, "inverting", labels=y, restarts=1, iterations=6, search={"tv": [1e-6, 1e-2]},
                 halving=(), select="discrepancy", discrepancy=1.0)
    assert res.search.chosen == {"tv": [1e-6, 1e-2][int(res.restart_scores.argmin())]}


def test_holdout_takes_every_kth_tensor_from_the_last():
    assert holdout_mask(8, 4).tolist() == [False, False, False, True, False, False, False, True]


@pytest.mark.parametrize("options, message", [
    ({"search": {"bn": [1.0]}}, "search: 'bn' is neither a prior of the configuration"),
    ({"search": {"tv": []}}, "search: tv needs a non-empty list of values"),
    ({"search": {"tv": [-1.0]}}, "search: tv values must be finite weights >= 0"),
    ({"search": {"lr": [0.0]}}, "search: lr values must be finite positive numbers"),
    ({"halving": (0.5, 0.25)}, r"halving must be increasing fractions of the run in \(0, 1\)"),
    ({"halving": (1.0,)}, "halving must be increasing fractions"),
    ({"select": "psnr"}, "select must be one of 'objective', 'distance', 'holdout', 'discrepancy'"),
    ({"select": "holdout", "holdout": 1}, "holdout must be >= 2 with select='holdout'"),
    ({"discrepancy": 0.5}, "discrepancy must be a finite factor >= 1, got 0.5"),
])
def test_search_options_are_checked(options, message):
    with pytest.raises(InvalidValueError, match=message):
        PRESETS.get("inverting").replace(**options)


def test_setting_a_searched_knob_pins_it():
    config = PRESETS.get("inverting").replace(search={"tv": (1e-4, 1e-2), "lr": (0.1, 0.05)})
    assert set(config.replace(tv=1e-3).search) == {"lr"}
    assert set(config.replace(lr=0.2).search) == {"tv"}
    assert set(config.with_priors({"tv": {"weight": 0.05}}).search) == {"lr"}
    assert set(config.with_priors({"tv": {"weight": 0.05}}).search) == {"lr"}
    assert config.replace(iterations=3).search == config.search
    assert configure(config, None, priors={"tv": {"weight": 1e-3}})[0].search == {"lr": (0.1, 0.05)}


def test_rows_rank_by_gradient_distance_and_not_by_their_priors(case):
    """Two candidates, TV weight 1000 and 1e-6: with the same images the huge weight has by far the larger
    objective but the same distance; with images that explain the gradient better it wins despite it."""
    model, x, y, obs = case
    problem = Problem(model, [obs], searched(), 1, [y], 0, CPU)
    assert [s["tv"] for s in problem.settings] == [1e3, 1e-6]
    same = problem.init_images()[:1].expand(2, -1, -1, -1, -1).clone()
    losses = problem.objective(same, None)
    assert losses[0] > 1e3 * losses[1]
    torch.testing.assert_close(problem.scores(losses)[0], problem.scores(losses)[1])
    better = torch.stack([x, problem.init_images()[1]])  # row 0 holds the true batch
    losses = problem.objective(better, None)
    scores = problem.scores(losses)
    assert losses[0] > losses[1] and scores[0] < scores[1]
    assert torch.equal(scores, problem.last_distance)


def test_halving_drops_the_worse_half_and_frees_its_memory(case, monkeypatch):
    model, x, y, obs = case
    config = configure("inverting", 6, search={"tv": [1e-4, 1e-3, 1e-2, 5e-2]}, halving=(0.5,), select="distance")[0]
    problem = Problem(model, [obs, obs], config, 1, [y, y], 0, CPU)
    run = AdamRun(problem)
    for step in range(3):
        run.step(step)
    scores = torch.tensor([4.0, 1.0, 3.0, 2.0, 0.5, 0.7, 0.1, 0.9])
    monkeypatch.setattr(problem, "scores", lambda losses: scores)
    run.halve(3)
    assert problem.rows.tolist() == [1, 3, 4, 6]
    assert [s["tv"] for s in problem.settings] == [1e-3, 5e-2, 1e-4, 1e-2]
    assert problem.Q == 4 and problem.R == 2
    assert run.x.shape[0] == 4 and run.opt.state[run.x]["exp_avg"].shape[0] == 4
    assert all(p.shape[0] == 4 for sim in problem.sims for p in sim.params.values())
    assert all(t.shape[0] == 4 for sim in problem.sims for t in sim._targets)
    assert problem.hard_labels.shape[0] == 4 and problem.row_values["tv"].tolist() == [1e-3, 5e-2, 1e-4, 1e-2]
    assert run.dropped_at.tolist() == [3, -1, 3, -1, -1, 3, -1, 3]
    run.step(3)  # the kept rows go on
    assert torch.isfinite(run.losses()).all() and run.losses().shape == (4,)


def test_a_search_reports_what_it_tried_and_chose(case):
    model, x, y, obs = case
    res = attack(obs, model, "inverting", labels=y, restarts=2, iterations=8, record_every=1,
                 search={"tv": [1e-4, 1e-2]}, halving=(0.5,), select="distance")
    report = res.search
    assert [c.values for c in report.candidates] == [{"tv": 1e-4}, {"tv": 1e-2}]
    assert res.restart_images.shape[0] == 2 and res.history.shape == (8, 4)
    assert torch.isnan(res.history[4:]).sum() == 8 and not torch.isnan(res.history[:4]).any()
    assert report.chosen in [c.values for c in report.candidates]
    assert res.restart_scores[res.best_restart] == res.restart_scores.min()
    assert min(c.score for c in report.candidates) == pytest.approx(float(res.restart_scores.min()))
    assert report.as_dict()["chosen"] == dict(report.chosen)


def test_a_searched_rate_is_each_rows_own(case):
    """The candidates share their starting images, and each row follows the run of its own settings."""
    model, x, y, obs = case
    opts = dict(labels=y, restarts=1, iterations=4, seed=3)
    both = attack(obs, model, "inverting", search={"lr": [0.1, 0.02]}, halving=(), select="objective",
                  **opts).restart_images
    for q, lr in enumerate([0.1, 0.02]):
        alone = attack(obs, model, "inverting", lr=lr, search={}, **opts).restart_images
        torch.testing.assert_close(both[q], alone[0], rtol=0, atol=1e-5)
    assert not torch.allclose(both[0], both[1])


def test_the_candidates_share_their_restarts_draws(case):
    model, x, y, obs = case
    config = configure("inverting", 4, search={"tv": [1e-4, 1e-2, 5e-2]})[0]
    problem = Problem(model, [obs, obs], config, 2, [y, y], 0, CPU)
    images = problem.init_images()
    plain = Problem(model, [obs, obs], configure("inverting", 4, search={})[0], 2, [y, y], 0, CPU).init_images()
    assert images.shape[0] == 12
    for p in range(2):
        for c in range(3):
            assert torch.equal(images[p * 6 + c * 2:p * 6 + c * 2 + 2], plain[p * 2:p * 2 + 2])


def test_an_interrupted_search_resumes_with_the_same_candidates(case, tmp_path):
    model, x, y, obs = case
    opts = dict(labels=y, restarts=1, iterations=8, seed=0, record_every=1, checkpoint_every=2,
                search={"tv": [1e-4, 1e-3, 1e-2, 5e-2]}, halving=(0.25, 0.5), select="distance")
    straight, resumed = straight_and_resumed(obs, model, "inverting", tmp_path / "run.ckpt", **opts)
    assert resumed.search == straight.search
    assert torch.equal(resumed.restart_images, straight.restart_images)
    assert torch.equal(resumed.history.nan_to_num(-1), straight.history.nan_to_num(-1))


def test_holdout_leaves_its_tensors_out_of_the_objective(case):
    model, x, y, obs = case
    config = configure("inverting", 4, select="holdout", holdout=2, tv=0.0)[0]
    problem = Problem(model, [obs], config, 1, [y], 0, CPU)
    images = problem.init_images()
    losses = problem.objective(images, None)
    n = len(obs.param_names)
    held = holdout_mask(n, 2)
    assert problem.weights.tolist() == [0.0 if h else 1.0 for h in held.tolist()]
    assert problem.holdout_weights.tolist() == [1.0 if h else 0.0 for h in held.tolist()]
    assert torch.equal(problem.scores(losses), problem.last_holdout)
    assert not torch.allclose(problem.last_holdout, losses)


def test_the_presets_search_their_tv_weight_until_it_is_pinned():
    for name in ("inverting", "geng"):
        config = PRESETS.get(name)
        assert config.search == {"tv": TV_GRID} and config.halving == (0.5,) and config.select == "discrepancy"
        assert default_restarts(config.search) == 1
        for pinned in (config.replace(tv=1e-4), config.with_priors({"tv": {"weight": 1e-4}}),
                       config.replace(priors={"tv": {"weight": 1e-4}})):
            assert (pinned.search, pinned.halving, pinned.select) == ({}, (), "objective")
            assert pinned.prior_weight("tv") == 1e-4 and default_restarts(pinned.search) == RESTARTS
        kept = config.replace(tv=1e-4, select="distance", halving=(0.25,))
        assert (kept.select, kept.halving) == ("distance", (0.25,))


def test_an_attack_without_restarts_runs_one_row_per_candidate(case):
    model, x, y, obs = case
    res = attack(obs, model, "inverting", labels=y, iterations=4, record_every=1)
    assert res.history.shape == (4, len(TV_GRID)) and len(res.search.candidates) == len(TV_GRID)
    assert res.restart_images.shape[0] == len(TV_GRID) // 2  # the worse half dropped at step 2
    plain = attack(obs, model, "inverting", labels=y, iterations=2, tv=1e-4)
    assert plain.search is None and plain.restart_images.shape[0] == RESTARTS
