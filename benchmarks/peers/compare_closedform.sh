#!/usr/bin/env bash
# The closed-form attacks side by side: fastleak's analytic, rgap and april against breaching's analytic,
# rgap and april_analytic on the same models, gradients and images, case by case so that machine load
# falls on both alike, then the tables (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_closedform.sh [SEEDS] [OUT] [REPEAT]
#
# e.g. bash benchmarks/peers/compare_closedform.sh 0,1,2 runs/peers/closedform 3   (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
set -euo pipefail
source "$(dirname "$0")/common.sh"
seeds="${1:-0,1,2}"; out="${2:-runs/peers/closedform}"; repeat="${3:-3}"
[ -d "$out/cases" ] || ours closedform_cases --out "$out/cases" --seeds "$seeds"
for case in "$out"/cases/*.pt; do
  name="$(basename "$case" .pt)"
  peer breaching_closedform --cases "$out/cases" --only "$name" --repeat "$repeat" --out "$out/breaching" 2>/dev/null
  ours fastleak_closedform --cases "$out/cases" --only "$name" --repeat "$repeat" --out "$out/fastleak"
done
ours fastleak_closedform --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching" | tee "$out/table.md"
