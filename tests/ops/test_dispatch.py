"""fastleak.ops._dispatch: every op falls back to its reference per device."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from fastleak import _ext
from fastleak.ops import (_dispatch, fc_row_stats, fc_row_stats_reference, grad_distance, grad_distance_reference,
                          total_variation, total_variation_reference)
from tests.ops.devices import CUDA, compiled, graph_node_names

DEVICES = ["cpu", CUDA]
OPS = ["grad_distance", "total_variation", "fc_row_stats"]
# The compiled op whose kernels each wrapper looks up.
COMPILED_OP = {"grad_distance": "grad_distance_partials", "total_variation": "total_variation",
               "fc_row_stats": "fc_row_stats"}


def randn(*shape, seed: int, device: str) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64).to(device)


def inputs(op: str, device: str) -> list[torch.Tensor]:
    shapes = {"grad_distance": [(2, 4, 5), (2, 6)], "total_variation": [(3, 2, 5, 6)], "fc_row_stats": [(2, 4, 9)]}
    return [randn(*shape, seed=seed, device=device).requires_grad_(True) for seed, shape in enumerate(shapes[op])]


def outputs(op: str, reference: bool, xs: list[torch.Tensor]) -> list[torch.Tensor]:
    """The op's outputs, through the public wrapper or the reference."""
    if op == "grad_distance":
        target = [randn(4, 5, seed=3, device=xs[0].device), randn(6, seed=4, device=xs[0].device)]
        fn = grad_distance_reference if reference else grad_distance
        return [fn(xs, target, "cosine", batched=True)]
    if op == "total_variation":
        return [(total_variation_reference if reference else total_variation)(*xs)]
    return list((fc_row_stats_reference if reference else fc_row_stats)(*xs))


def values_and_gradients(op: str, reference: bool, device: str) -> list[torch.Tensor]:
    xs = inputs(op, device)
    out = outputs(op, reference, xs)
    loss = sum((o * torch.linspace(0.5, 1.5, o.numel(), dtype=o.dtype, device=device).view(o.shape)).sum()
               for o in out)
    return [*out, *torch.autograd.grad(loss, xs)]


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS)
def test_compiled_path_off_for_one_device_gives_the_reference(monkeypatch, op, device):
    monkeypatch.setattr(_dispatch, "_has_kernel", lambda name, device_type: device_type != device)
    assert not _dispatch.compiled_for(COMPILED_OP[op], torch.zeros(1, device=device))
    out = outputs(op, False, inputs(op, device))
    assert not any("fastleak" in name for o in out for name in graph_node_names(o))
    for value, expected in zip(values_and_gradients(op, False, device), values_and_gradients(op, True, device)):
        assert torch.equal(value, expected)


@compiled
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("op", OPS)
def test_compiled_path_on(op, device):
    xs = inputs(op, device)
    assert _dispatch.compiled_for(COMPILED_OP[op], xs[0])
    assert any("fastleak" in name for name in graph_node_names(outputs(op, False, xs)[0]))


@compiled
def test_kernel_lookup_is_per_op_and_device():
    assert _dispatch._has_kernel("total_variation", "cpu")
    assert not _dispatch._has_kernel("no_such_op", "cpu")
    assert _dispatch._has_kernel("total_variation", "cuda") == _ext.has_cuda_kernels()


@compiled
@pytest.mark.parametrize("op", OPS)
def test_reference_ops_switch_gives_the_reference_without_a_warning(monkeypatch, caplog, op):
    monkeypatch.setattr(_ext, "REFERENCE_OPS", True)
    monkeypatch.setattr(_ext, "_warned", False)
    with caplog.at_level("WARNING", logger="fastleak"):
        out = outputs(op, False, inputs(op, "cpu"))
        got = values_and_gradients(op, False, "cpu")
    assert not any("fastleak" in name for o in out for name in graph_node_names(o))
    for value, expected in zip(got, values_and_gradients(op, True, "cpu")):
        assert torch.equal(value, expected)
    assert not caplog.records


def test_reference_ops_switch_reads_the_environment():
    code = "from fastleak import _ext; print(_ext.REFERENCE_OPS)"
    for value, expected in (("1", "True"), ("0", "False"), ("", "False")):
        env = {**os.environ, "FASTLEAK_REFERENCE_OPS": value}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == expected
