#!/usr/bin/env bash
# Both sides, interleaved case by case so that machine load falls on both alike, fastleak's time to
# breaching's quality (fastleak_side --to-peer), then the tables.
#
#   bash benchmarks/peers/compare.sh ITERATIONS RESTARTS [CASE_PREFIXES] [OUT]
#
# e.g. bash benchmarks/peers/compare.sh 300 1 ig_,dlg_     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
set -euo pipefail
source "$(dirname "$0")/common.sh"
iterations="$1"; restarts="$2"; only="${3:-ig_,dlg_}"; out="${4:-runs/peers}"
[ -d "$out/cases" ] || ours cases --out "$out/cases"
for case in "$out"/cases/*.pt; do
  name="$(basename "$case" .pt)"
  case ",$only," in *",${name%%_*}_,"*|*",$name,"*) ;; *) continue ;; esac
  peer breaching_side --cases "$out/cases" --only "$name" --iterations "$iterations" --restarts "$restarts" \
    --out "$out/breaching" 2>/dev/null
  ours fastleak_side --cases "$out/cases" --only "$name" --iterations "$iterations" --restarts "$restarts" \
    --out "$out/fastleak"
  ours fastleak_side --to-peer --cases "$out/cases" --only "$name" --iterations "$iterations" --restarts "$restarts" \
    --out "$out/fastleak" --peer "$out/breaching"
done
ours fastleak_side --table --cases "$out/cases" --out "$out/fastleak" --peer "$out/breaching"
