#!/usr/bin/env bash
# Both sides, interleaved case by case so that machine load falls on both alike, fastleak's time to
# breaching's quality (fastleak_side.py --to-peer), then the tables.
#
#   bash benchmarks/peers/compare.sh ITERATIONS RESTARTS [CASE_PREFIXES] [OUT]
#
# e.g. bash benchmarks/peers/compare.sh 300 1 ig_,dlg_     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
set -euo pipefail
cd "$(dirname "$0")/../.."
iterations="$1"; restarts="$2"; only="${3:-ig_,dlg_}"; out="${4:-runs/peers}"
ours="${PYTHON:-.venv/bin/python}"; peer="${PEER_PYTHON:-benchmarks/peers/.venv/bin/python}"
export OMP_WAIT_POLICY=PASSIVE OMP_NUM_THREADS=1
[ -d "$out/cases" ] || "$ours" benchmarks/peers/cases.py --out "$out/cases"
for case in "$out"/cases/*.pt; do
  name="$(basename "$case" .pt)"
  case ",$only," in *",${name%%_*}_,"*|*",$name,"*) ;; *) continue ;; esac
  "$peer" benchmarks/peers/breaching_side.py --cases "$out/cases" --only "$name" --iterations "$iterations" \
    --restarts "$restarts" --out "$out/breaching" 2>/dev/null
  "$ours" benchmarks/peers/fastleak_side.py --cases "$out/cases" --only "$name" --iterations "$iterations" \
    --restarts "$restarts" --out "$out/fastleak"
  "$ours" benchmarks/peers/fastleak_side.py --to-peer --cases "$out/cases" --only "$name" --iterations "$iterations" \
    --restarts "$restarts" --out "$out/fastleak" --peer "$out/breaching"
done
"$ours" benchmarks/peers/fastleak_side.py --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching"
