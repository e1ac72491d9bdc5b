#!/usr/bin/env bash
# bench_ops and bench_attack --quick on two source trees with built extensions, interleaved,
# one thread each, OMP_WAIT_POLICY=PASSIVE, with the same Python:
#   bash benchmarks/compare_trees.sh BEFORE_TREE AFTER_TREE [OUT_DIR]
# A tree is a checkout whose extension was built in place
# (python setup.py build_ext --inplace); the default OUT_DIR is runs/compare_trees. A tree from
# before benchmarks/ became a package runs its scripts by path.
set -euo pipefail
before=$(realpath "$1"); after=$(realpath "$2"); out=$(realpath -m "${3:-runs/compare_trees}")
py=$(realpath -s "$(command -v "${PYTHON:-python}")")  # absolute, venv symlink kept
mkdir -p "$out"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
tree() { [ "$1" = before ] && echo "$before" || echo "$after"; }
bench() {  # bench SIDE NAME ARGS...: benchmarks.NAME in SIDE's tree, with SIDE's fastleak
  local root; root=$(tree "$1")
  if [ -f "$root/benchmarks/__init__.py" ]; then
    (cd "$root" && PYTHONPATH="$root" "$py" -m "benchmarks.$2" "${@:3}")
  else
    (cd "$root" && PYTHONPATH="$root" "$py" "benchmarks/$2.py" "${@:3}")
  fi
}
for round in 1 2; do
  for side in before after; do
    bench $side bench_ops --repeat 15 --json "$out/ops_${side}_$round.json" > "$out/ops_${side}_$round.txt" 2>&1
  done
done
for side in before after; do
  bench $side bench_attack --quick --threads 1 --plot "$out/scaling_$side.png" --json "$out/attack_$side.json" \
    > "$out/attack_$side.txt" 2>&1
done
echo "results in $out"
