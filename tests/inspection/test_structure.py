import torch

from fastleak.inspection.structure import direction_groups, distinct_count, lean
from fastleak.malicious.trap import TrapConfig, trap_weights


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
