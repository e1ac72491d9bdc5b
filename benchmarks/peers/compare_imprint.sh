#!/usr/bin/env bash
# The imprint attack side by side: fastleak's recovery and breaching's ImprintAttacker on the same modified
# models (breaching's block layout) and the same FedSGD gradients, then the table (also written to OUT/table.md).
#
#   bash benchmarks/peers/compare_imprint.sh [SEEDS] [OUT] [CASE_OPTIONS...]
#
# e.g. bash benchmarks/peers/compare_imprint.sh 0,1,2 runs/peers/imprint     (1 thread per side, OMP_WAIT_POLICY=PASSIVE)
#      bash benchmarks/peers/compare_imprint.sh 0 runs/peers/imprint_quick --datasets mnist --batches 64
#      ROUNDS=3 BEFORE=DIR bash benchmarks/peers/compare_imprint.sh ...   (both sides ROUNDS times in turn, each
#        case's smallest median kept; BEFORE: another fastleak source tree run as a third side, see fastleak_imprint)
set -euo pipefail
source "$(dirname "$0")/common.sh"
seeds="${1:-0,1,2}"; out="${2:-runs/peers/imprint}"
[ -d "$out/cases" ] || ours imprint_cases --out "$out/cases" --seeds "$seeds" "${@:3}"
ours_dirs=(); peer_dirs=(); before_dirs=()
for round in $(seq 1 "${ROUNDS:-1}"); do
  suffix=$([ "$round" = 1 ] && echo "" || echo "_$round")
  peer breaching_imprint --cases "$out/cases" --out "$out/breaching$suffix"; peer_dirs+=("$out/breaching$suffix")
  ours fastleak_imprint --cases "$out/cases" --out "$out/fastleak$suffix"; ours_dirs+=("$out/fastleak$suffix")
  if [ -n "${BEFORE:-}" ]; then
    ours fastleak_imprint --cases "$out/cases" --out "$out/before$suffix" --tree "$BEFORE"; before_dirs+=("$out/before$suffix")
  fi
done
join() { local IFS=,; echo "$*"; }
ours fastleak_imprint --table --cases "$out/cases" --out "$(join "${ours_dirs[@]}")" --peer "$(join "${peer_dirs[@]}")" \
  ${BEFORE:+--before "$(join "${before_dirs[@]}")"} | tee "$out/table.md"
