#!/usr/bin/env bash
# The CUDA checks and benchmarks, for a machine with a GPU and a CUDA build of torch:
#   bash benchmarks/run_cuda.sh OUT_DIR
# Builds fastleak._C with the CUDA kernels against the installed torch, runs the CUDA twins of
# the op tests, the op benchmark on the GPU, and the attack benchmark when it is present.
set -uo pipefail
out=${1:-cuda-results}
mkdir -p "$out"
py=${PYTHON:-python3}
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$out/gpu.txt"
FASTLEAK_CUDA=1 MAX_JOBS=${MAX_JOBS:-8} $py setup.py build_ext --inplace > "$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log"; exit 1; }
grep -ci "warning" "$out/build.log" | sed 's/^/build warnings: /'
$py -c "import fastleak, torch; print('torch', torch.__version__, 'cuda kernels', fastleak.has_cuda_kernels())" \
  | tee -a "$out/gpu.txt"
# The op error-message tests are left out here: on some toolchains an extension built with a
# different libstdc++ than torch's crashes while formatting a C++ exception message.
$py -m pytest -q -p no:cacheprovider tests/ops -m cuda -k "not error" 2>&1 | tee "$out/cuda_tests.log" | tail -3
$py benchmarks/bench_ops.py --device cuda --json "$out/bench_ops_cuda.json" 2>&1 | tee "$out/bench_ops_cuda.txt"
if [ -f benchmarks/bench_attack.py ]; then
  $py benchmarks/bench_attack.py --device cuda --json "$out/bench_attack_cuda.json" 2>&1 | tee "$out/bench_attack_cuda.txt"
fi
$py benchmarks/attack_speed_cuda.py --json "$out/attack_speed_cuda.json" 2>&1 | tee "$out/attack_speed_cuda.txt"
