"""fastleak: fast gradient-inversion attacks on federated learning."""
import logging

from fastleak._ext import has_cuda_kernels

logging.getLogger("fastleak").addHandler(logging.NullHandler())

__all__ = ["has_cuda_kernels"]
__version__ = "0.1.0"
