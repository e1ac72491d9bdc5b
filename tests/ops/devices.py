"""The devices the op tests run on: each test on the CPU and, as its GPU twin, on CUDA, where it
skips cleanly without a GPU and the CUDA kernels."""
from __future__ import annotations

import pytest
import torch

import fastleak
from fastleak import _ext

CUDA_MARKS = (pytest.mark.cuda,
              pytest.mark.skipif(not (torch.cuda.is_available() and fastleak.has_cuda_kernels()),
                                 reason="needs a CUDA device and the CUDA kernels"))
compiled = pytest.mark.skipif(not _ext.LOADED, reason="fastleak._C is not built")
CUDA = pytest.param("cuda", marks=CUDA_MARKS)


def cuda_only(test):
    """Mark a test that runs on CUDA alone with the GPU twins' marks."""
    for mark in CUDA_MARKS:
        test = mark(test)
    return test


def graph_node_names(out: torch.Tensor) -> list[str]:
    """The names of every autograd node behind ``out``."""
    names, seen, stack = [], set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            names.append(node.name())
            stack.extend(f for f, _ in node.next_functions)
    return names
