"""Whether an op runs its compiled kernel or its pure-PyTorch reference, decided per device.

A compiled library built without CUDA kernels still serves CPU inputs, while CUDA inputs take
the reference; a library that failed to load sends every device to the references (with one
logged warning, see ``fastleak._ext``).
"""
from __future__ import annotations

import functools

import torch

from fastleak import _ext


def registered(op: str) -> bool:
    """True when the loaded compiled library defines ``fastleak::<op>``."""
    return _ext.LOADED and hasattr(torch.ops.fastleak, op)


@functools.cache
def _has_kernel(op: str, device_type: str) -> bool:
    if not registered(op):
        return False
    key = torch._C._dispatch_key_for_device(device_type)
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"fastleak::{op}", key)


def compiled_for(op: str, tensor: torch.Tensor) -> bool:
    """True when ``fastleak::<op>`` has a compiled kernel for ``tensor``'s device."""
    return _ext.compiled_ops_available() and _has_kernel(op, tensor.device.type)
