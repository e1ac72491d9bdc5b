"""What this installation of fastleak is: its version, the torch it runs on and was built against,
its compiled kernels and the threading policy in force."""
from __future__ import annotations

import importlib
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Info:
    version: str
    torch_version: str
    built_against: str | None
    compiled_ops: bool
    cuda_kernels: bool
    cuda_device: bool
    threads: int
    wait_policy: str | None

    def __str__(self) -> str:
        built = (f"built against torch {self.built_against}" if self.built_against
                 else "build record missing (not built by setup.py)")
        if self.built_against and self.built_against != self.torch_version:
            built += f"; it runs on torch {self.torch_version}: rebuild fastleak against it"
        ops = ("compiled ops loaded, CUDA kernels " + ("ON" if self.cuda_kernels else "OFF")
               if self.compiled_ops else "compiled ops NOT loaded: the pure-PyTorch references run")
        policy = self.wait_policy or "unset (OpenMP's default: idle threads spin)"
        return (f"fastleak {self.version}\n"
                f"  torch {self.torch_version} ({'a CUDA device is visible' if self.cuda_device else 'CPU only'})\n"
                f"  extension: {built}; {ops}\n"
                f"  threads: {self.threads}, OMP_WAIT_POLICY={policy}")


def info() -> Info:
    """This installation, as ``print(fastleak.info())`` shows it."""
    import torch

    from fastleak import __version__, _ext

    try:
        build = importlib.import_module("fastleak._build")
        built_against = build.TORCH_VERSION
    except ImportError:
        built_against = None
    return Info(version=__version__, torch_version=torch.__version__, built_against=built_against,
                compiled_ops=_ext.LOADED, cuda_kernels=_ext.has_cuda_kernels(),
                cuda_device=torch.cuda.is_available(), threads=torch.get_num_threads(),
                wait_policy=os.environ.get("OMP_WAIT_POLICY"))
