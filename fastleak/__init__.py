"""fastleak: fast gradient-inversion attacks on federated learning."""
import logging

from fastleak._ext import has_cuda_kernels
from fastleak.attacks import attack, attack_many

logging.getLogger("fastleak").addHandler(logging.NullHandler())

__all__ = ["attack", "attack_many", "has_cuda_kernels"]
__version__ = "0.1.0"
