import pytest
import torch

import fastleak.labels as L
from fastleak.labels.sign import llg_counts

ROWS = torch.tensor([[0.3, 0.1, 0.2],
                     [-0.9, 0.2, -0.4],
                     [0.1, 0.0, 0.3],
                     [-0.2, -0.6, 0.1]], dtype=torch.float64)
# row sums 0.6, -1.1, 0.4, -0.7; row minima 0.1, -0.9, 0.0, -0.6


def test_idlg_takes_the_row_with_the_smallest_sum(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, torch.zeros(4, dtype=torch.float64), num_samples=1)
    out = L.counts(obs, model, "idlg")
    assert out.counts.tolist() == [0, 1, 0, 0] and out.labels.tolist() == [1]
    assert out.method == "idlg" and out.requested == "idlg"


def test_yin_takes_the_rows_with_the_most_negative_minima(make_head, make_observation):
    model = make_head(3, 4)
    rows = ROWS.clone()
    rows[0, 1] = -0.7  # row 0: minimum -0.7 beats row 3's -0.6 though its sum stays positive
    obs = make_observation(model, rows, torch.zeros(4, dtype=torch.float64), num_samples=2)
    assert L.recover(obs, model, "yin").tolist() == [0, 1]


def test_llg_stage_one_and_two_by_hand():
    # negatives: classes 0 and 1; impact m = (-3 - 2.5) * (1 + 1/4) / 4 = -1.71875
    # stage 1 -> g = [-1.28125, -0.78125, 2, 3.5]; stage 2 takes class 0 (g0 -> 0.4375), then class 1.
    g = torch.tensor([[-3.0, -2.5, 2.0, 3.5]], dtype=torch.float64)
    assert llg_counts(g, torch.tensor([4])).tolist() == [[2.0, 2.0, 0.0, 0.0]]


def test_llg_stage_two_subtracts_the_impact_from_the_class_it_picked():
    # Regression for the public defect that updated the wrong index in stage 2, so argmin kept
    # returning the same class: here a correct stage 2 spreads the three extra labels over 0, 1, 0.
    g = torch.tensor([[-4.0, -3.0, 1.0, 1.0, 1.0]], dtype=torch.float64)
    # m = -7 * 1.2 / 5 = -1.68; after stage 1: [-2.32, -1.32]; picks: 0 (-> -0.64), 1 (-> 0.36), 0
    assert llg_counts(g, torch.tensor([5])).tolist() == [[3.0, 2.0, 0.0, 0.0, 0.0]]


def test_llg_keeps_the_most_negative_when_stage_one_overflows():
    g = torch.tensor([[-1.0, -3.0, -2.0, 6.0]], dtype=torch.float64)
    assert llg_counts(g, torch.tensor([2])).tolist() == [[0.0, 1.0, 1.0, 0.0]]


def test_llg_and_bias_methods_read_their_own_tensor(make_head, make_observation):
    model = make_head(3, 4)
    bias_grad = torch.tensor([0.3, 0.2, -0.9, 0.4], dtype=torch.float64)
    obs = make_observation(model, ROWS, bias_grad, num_samples=3)
    assert L.counts(obs, model, "llg").counts.tolist() == [0, 2, 0, 1]   # sums -1.1 and -0.7
    assert L.counts(obs, model, "bias").counts.tolist() == [0, 0, 3, 0]  # only class 2 negative


def test_sign_rules_flip_for_updates(make_head, make_observation):
    # An update is -lr * gradient: the same rows, negated and scaled, give the same labels.
    model = make_head(3, 4)
    grad = make_observation(model, ROWS, torch.zeros(4, dtype=torch.float64), num_samples=2)
    upd = make_observation(model, -0.05 * ROWS, torch.zeros(4, dtype=torch.float64), num_samples=2,
                           kind="update", local_lr=0.05, local_steps=1)
    for method in ("llg", "yin"):
        assert torch.equal(L.counts(grad, model, method).counts, L.counts(upd, model, method).counts)
    assert L.recover(upd, model, "llg").tolist() == [1, 3]


def test_idlg_refuses_batches(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, torch.zeros(4, dtype=torch.float64), num_samples=2)
    with pytest.raises(ValueError, match="batch size 1 only.*num_samples is 2"):
        L.counts(obs, model, "idlg")


def test_yin_refuses_more_samples_than_classes(make_head, make_observation):
    model = make_head(3, 4)
    obs = make_observation(model, ROWS, torch.zeros(4, dtype=torch.float64), num_samples=5)
    with pytest.raises(ValueError, match="unique labels.*num_samples=5 > 4"):
        L.counts(obs, model, "yin")
