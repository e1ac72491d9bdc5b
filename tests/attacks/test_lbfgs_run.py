import torch

from fastleak.attacks import PRESETS
from fastleak.attacks.execution import Execution
from fastleak.attacks.lbfgs_run import LBFGSRun
from fastleak.attacks.problem import Problem


def run_for(case, **overrides):
    model, x, y, obs = case
    config = PRESETS.get("beyondinfering").replace(lbfgs_inner=1, **overrides)
    return LBFGSRun(Problem(model, [obs], config, 3, [y], 0, torch.device("cpu"), Execution()))


def test_boxed_lbfgs_keeps_the_images_in_the_box_and_unboxed_does_not(lenet_case):
    boxed, free = run_for(lenet_case), run_for(lenet_case, boxed=False)
    assert boxed.opt.x.min() < 0 and boxed.opt.x.max() > 1  # the gaussian start leaves the box
    for step in range(3):
        boxed.step(step)
        free.step(step)
        assert boxed.opt.x.min() >= 0 and boxed.opt.x.max() <= 1
    assert free.opt.x.min() < 0 or free.opt.x.max() > 1


def test_the_clamp_is_part_of_the_last_step_and_the_objective_is_evaluated_again(lenet_case):
    run = run_for(lenet_case)
    for step in range(4):
        before = run.opt.x.clone()
        run.step(step)
        s = run.opt.state
        moved = s["t"] > 0
        # the secant pair of the next iteration spans the move actually made, clamp included
        torch.testing.assert_close((s["d"] * s["t"][:, None])[moved], (run.opt.x - before)[moved],
                                   rtol=1e-4, atol=1e-5)
        assert not bool(s["evaluated"])
        # y_j . d for the stored pairs, kept up to date with the corrected direction
        count = int(s["count"].min())
        if count:
            expected = (s["pairs"][:, :count, 1] @ s["d"][..., None]).squeeze(-1)
            torch.testing.assert_close(s["yd"][:, :count], expected, rtol=1e-3, atol=1e-3 * float(expected.abs().max()))
    losses, _ = run.closure(run.opt.x)
    run.opt.step(run.closure)
    # the next iteration starts from the objective at the clamped images
    assert torch.equal(run.opt.state["prev_loss"], losses)
