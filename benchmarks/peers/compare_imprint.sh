#!/usr/bin/env bash
# The imprint attack side by side: fastleak's recovery and breaching's ImprintAttacker on the same modified
# models (breaching's block layout) and the same FedSGD gradients, then the table (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_imprint.sh [SEEDS] [OUT] [CASE_OPTIONS...]
#
# e.g. bash benchmarks/peers/compare_imprint.sh 0,1,2 runs/peers/imprint     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
#      bash benchmarks/peers/compare_imprint.sh 0 runs/peers/imprint_quick --datasets mnist --batches 64
set -euo pipefail
source "$(dirname "$0")/common.sh"
seeds="${1:-0,1,2}"; out="${2:-runs/peers/imprint}"
[ -d "$out/cases" ] || ours imprint_cases --out "$out/cases" --seeds "$seeds" "${@:3}"
peer breaching_imprint --cases "$out/cases" --out "$out/breaching"
ours fastleak_imprint --cases "$out/cases" --out "$out/fastleak"
ours fastleak_imprint --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching" | tee "$out/table.md"
