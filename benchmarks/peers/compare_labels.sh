#!/usr/bin/env bash
# Label recovery side by side: the label cases, every label strategy of breaching, fastleak's auto,
# then the table (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_labels.sh [TRIALS] [OUT] [--grid]
#
# e.g. bash benchmarks/peers/compare_labels.sh 3 runs/peers/labels     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
# --grid adds the FedSGD cells of the trained-model grid (every state, its label patterns).
set -euo pipefail
source "$(dirname "$0")/common.sh"
trials="${1:-3}"; out="${2:-runs/peers/labels}"; grid="${3:-}"
[ -d "$out/cases" ] || ours label_cases --out "$out/cases" --trials "$trials" $grid
peer breaching_labels --cases "$out/cases" --out "$out/breaching"
ours fastleak_labels --cases "$out/cases" --out "$out/fastleak"
ours fastleak_labels --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching" | tee "$out/table.md"
