#!/usr/bin/env bash
# Label recovery side by side: the label cases, every label strategy of breaching, fastleak's auto,
# then the table (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_labels.sh [TRIALS] [OUT]
#
# e.g. bash benchmarks/peers/compare_labels.sh 3 runs/peers/labels     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
set -euo pipefail
cd "$(dirname "$0")/../.."
trials="${1:-3}"; out="${2:-runs/peers/labels}"
ours="${PYTHON:-.venv/bin/python}"; peer="${PEER_PYTHON:-benchmarks/peers/.venv/bin/python}"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
[ -d "$out/cases" ] || "$ours" benchmarks/peers/label_cases.py --out "$out/cases" --trials "$trials"
"$peer" benchmarks/peers/breaching_labels.py --cases "$out/cases" --out "$out/breaching"
"$ours" benchmarks/peers/fastleak_labels.py --cases "$out/cases" --out "$out/fastleak"
"$ours" benchmarks/peers/fastleak_labels.py --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching" \
  | tee "$out/table.md"
