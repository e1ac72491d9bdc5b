"""fastleak: fast gradient-inversion attacks on federated learning."""
import importlib
import logging

logging.getLogger("fastleak").addHandler(logging.NullHandler())

# Loaded on first use, so that ``fastleak.cli`` can set OpenMP's wait policy before torch loads.
_LAZY = {"attack": "fastleak.attacks", "attack_many": "fastleak.attacks", "has_cuda_kernels": "fastleak._ext",
         "info": "fastleak._about", "inspect": "fastleak.inspection"}

__all__ = ["attack", "attack_many", "has_cuda_kernels", "info", "inspect"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'fastleak' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_LAZY])
