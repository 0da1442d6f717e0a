#!/usr/bin/env bash
# B-STaR's monitor, auto-balance and label-free self-training on the embedded default (docs/results/bstar-*.md),
# 3 rounds each, paired by seed with the gold-filtered fixed-temperature reference:
#   bstar-gold          gold labels, T = 0.8 (vanilla and EAST): the reference, and the exploration /
#                       exploitation curves of ordinary self-training (the same steps as the rounds study, so
#                       cached after bench/studies.sh)
#   bstar-auto-balance  vanilla, the temperature chosen before each round by the balance score (balance.auto)
#   bstar-label-free    majority pseudo-labels instead of gold (vanilla and EAST)
#
#     bash bench/bstar_studies.sh [SEEDS] [A]      # defaults: 0,1,2 and the a-grid's validation choice a = 0.5
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-0,1,2}
A=${2:-0.5}
source bench/study_lib.sh

versus() {  # sweep, reference: the paired round-by-round differences, appended to the sweep's page
    {
        echo
        $EAST report --sweep "$1" --versus "$2" --data-dir "$DATA"
    } | tee -a "docs/results/$1.md"
}

run bstar-gold --a "0,$A" --rounds 3
run bstar-auto-balance --a 0 --rounds 3 --set balance.auto=true
versus bstar-auto-balance bstar-gold
run bstar-label-free --a "0,$A" --rounds 3 --set weighting.labels=majority
versus bstar-label-free bstar-gold
echo "the B-STaR studies: $SECONDS s" | tee -a docs/results/timings.txt
