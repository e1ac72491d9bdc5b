"""Loading of the compiled operator library, and the pure-PyTorch fallback switch."""
from __future__ import annotations

import logging
import os

import torch

log = logging.getLogger("fastleak")

try:
    from fastleak import _C  # noqa: F401  (importing registers torch.ops.fastleak.*)

    LOADED = True
    LOAD_ERROR: Exception | None = None
except ImportError as exc:  # pragma: no cover - exercised only on broken installs
    LOADED = False
    LOAD_ERROR = exc

# FASTLEAK_REFERENCE_OPS=1 runs every op as its pure-PyTorch reference although the library loaded:
# to tell a kernel bug from a model bug, or to measure what the compiled kernels earn.
REFERENCE_OPS = os.environ.get("FASTLEAK_REFERENCE_OPS", "0") not in ("", "0")
_warned = False


def compiled_ops_available() -> bool:
    """True when fastleak._C is loaded and FASTLEAK_REFERENCE_OPS does not ask for the references;
    when it failed to load, warn once that the references are used."""
    global _warned
    if REFERENCE_OPS:
        return False
    if not LOADED and not _warned:
        log.warning("fastleak._C could not be loaded (%s); using the pure-PyTorch reference ops. "
                    "Rebuild with: pip install --no-build-isolation -e .", LOAD_ERROR)
        _warned = True
    return LOADED


def _op_names() -> list[str]:
    """The dispatcher names of every registered fastleak op (overloads included)."""
    return [n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastleak::")]


def has_cuda_kernels() -> bool:
    """True when the compiled library registered CUDA kernels for every fastleak op."""
    if not LOADED:
        return False
    names = _op_names()
    return bool(names) and all(torch._C._dispatch_has_kernel_for_dispatch_key(n, "CUDA") for n in names)


def describe() -> str:
    """One line: the torch the library runs on and which compiled kernels it registered."""
    if not LOADED:
        return f"fastleak: torch {torch.__version__}; compiled ops NOT loaded ({LOAD_ERROR}), using the references"
    ops = sorted({n.split("::")[1].split(".")[0] for n in _op_names()})
    return (f"fastleak: torch {torch.__version__}; compiled ops {', '.join(ops)}; CPU kernels with OpenMP; "
            f"CUDA kernels {'ON' if has_cuda_kernels() else 'OFF'}")
