import torch

from fastleak.inspection.structure import direction_groups, distinct_count, lean
from fastleak.malicious.trap import TrapConfig, trap_weights
from tests.inspection.conftest import shrunk_rows


def test_rows_of_one_direction_with_their_own_thresholds_form_one_group():
    u = torch.randn(300, dtype=torch.float64)
    scales = torch.rand(12, dtype=torch.float64) + 0.5
    others = torch.randn(5, 300, dtype=torch.float64)
    weight = torch.cat([scales[:, None] * u, others]).float()
    bias = torch.cat([-scales * torch.linspace(0, 1, 12, dtype=torch.float64), torch.zeros(5, dtype=torch.float64)])
    groups = direction_groups(weight, bias.float())
    assert len(groups) == 1 and groups[0].rows == tuple(range(12)) and groups[0].thresholds == 12


def test_random_and_trained_looking_rows_share_no_direction():
    gen = torch.Generator().manual_seed(0)
    assert direction_groups(torch.randn(256, 784, generator=gen), torch.randn(256, generator=gen)) == []


def test_constant_rows_share_one_direction_but_not_thresholds():
    (group,) = direction_groups(torch.full((8, 50), 0.01), torch.zeros(8))
    assert len(group.rows) == 8 and group.thresholds == 1


def test_opposite_rows_and_zero_rows_do_not_group():
    u = torch.randn(20)
    weight = torch.stack([u, -u, torch.zeros(20)])
    assert direction_groups(weight, None) == []


def test_distinct_count_ignores_float_noise():
    assert distinct_count(torch.tensor([1.0, 1.0 + 1e-9, 2.0, 3.0], dtype=torch.float64)) == 3
    assert distinct_count(torch.tensor([], dtype=torch.float64)) == 0


def test_random_rows_do_not_lean_and_trap_rows_lean_together(public_digits):
    random_rows = lean(torch.randn(512, 784, generator=torch.Generator().manual_seed(1)))
    assert abs(random_rows.ratio) < 0.3 and 0.8 < random_rows.spread < 1.2
    trap = lean(trap_weights(public_digits, TrapConfig(rows=64, activation_rate=1 / 64)))
    assert trap.ratio < -4 and trap.spread < 1.25 and trap.rows == 64
    assert lean(torch.zeros(3, 4)).ratio == 0.0


def test_rows_shrunk_too_little_to_lean_show_it_in_their_magnitudes_with_balanced_signs():
    trap = lean(shrunk_rows(16, 0.95))
    assert trap.ratio > -2.5                                     # too little lean for the mean over spread
    assert trap.shrink < -8 and abs(trap.balance) < 4
    random_rows = lean(shrunk_rows(16, 1.0))
    assert abs(random_rows.shrink) < 4 and abs(random_rows.balance) < 4


def test_rows_leaned_by_adding_to_their_entries_move_their_signs():
    g = torch.Generator().manual_seed(1)
    w = shrunk_rows(64, 1.0)
    pixels = (torch.rand(3072, generator=g, dtype=torch.float64) < 0.3).double()   # where the images are bright
    trained = w - 0.5 * w.abs().mean() * pixels * torch.rand(64, 1, generator=g, dtype=torch.float64)
    moved = lean(trained)
    assert moved.shrink < -8 and moved.balance < -4
    assert lean(torch.ones(4, 5)).shrink == 0.0 and lean(torch.ones(4, 5)).balance == 0.0   # no row holds both signs
