#!/usr/bin/env bash
# The imprint attack side by side: fastleak's recovery and breaching's ImprintAttacker on the same modified
# models (breaching's block layout) and the same FedSGD gradients, then the table (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_imprint.sh [SEEDS] [OUT]
#
# e.g. bash benchmarks/peers/compare_imprint.sh 0,1,2 runs/peers/imprint     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
set -euo pipefail
cd "$(dirname "$0")/../.."
seeds="${1:-0,1,2}"; out="${2:-runs/peers/imprint}"
ours="${PYTHON:-.venv/bin/python}"; peer="${PEER_PYTHON:-benchmarks/peers/.venv/bin/python}"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
[ -d "$out/cases" ] || "$ours" benchmarks/peers/imprint_cases.py --out "$out/cases" --seeds "$seeds"
"$peer" benchmarks/peers/breaching_imprint.py --cases "$out/cases" --out "$out/breaching"
"$ours" benchmarks/peers/fastleak_imprint.py --cases "$out/cases" --out "$out/fastleak"
"$ours" benchmarks/peers/fastleak_imprint.py --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching" \
  | tee "$out/table.md"
