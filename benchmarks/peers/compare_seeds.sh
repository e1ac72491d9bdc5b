#!/usr/bin/env bash
# One case over several attack seeds: breaching at ITERATIONS, fastleak at each of BUDGETS, seed by
# seed (one thread per side), then the table with fastleak's time to breaching's quality per seed.
#
#   bash benchmarks/peers/compare_seeds.sh CASE ITERATIONS BUDGETS SEEDS [OUT]
#
# e.g. bash benchmarks/peers/compare_seeds.sh dlg_lenet_b1 300 "150 200 300" "0 1 2 3 4 5" runs/peers_seeds
set -euo pipefail
source "$(dirname "$0")/common.sh"
name="$1"; iterations="$2"; budgets="$3"; seeds="$4"; out="${5:-runs/peers_seeds}"
[ -d "$out/cases" ] || ours cases --out "$out/cases"
for seed in $seeds; do
  peer breaching_side --cases "$out/cases" --only "$name" --iterations "$iterations" --restarts 1 --seed "$seed" \
    --out "$out/breaching/s$seed" 2>/dev/null
  for budget in $budgets; do
    ours fastleak_side --cases "$out/cases" --only "$name" --iterations "$budget" --restarts 1 --seed "$seed" \
      --out "$out/fastleak/s$seed"
  done
done
ours fastleak_side --seeds-table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching"
