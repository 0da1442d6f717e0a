#!/usr/bin/env bash
# Every study of docs/results on the embedded default, in one store, each sweep timed and its page copied to
# docs/results as soon as it finishes (a session may end before the last one does; rerunning resumes from
# the cache). The a-grid runs first; the weighted setting it scores best on *validation* (mapping and `a`)
# is the one the rounds, baselines and losses studies use, unless A (and MAPPING) are given:
#
#     bash bench/studies.sh [SEEDS] [A] [MAPPING]        # defaults: 0,1,2,3,4, then chosen on validation
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-0,1,2,3,4}
source bench/study_lib.sh

run a-grid --a 0,0.5,1,2 --mappings power,exp
if [[ -z "${2:-}" ]]; then
    read -r A MAPPING < <($EAST report --sweep a-grid --json --data-dir "$DATA" | .venv/bin/python -c \
        'import json, sys; b = json.load(sys.stdin)["best_on_validation"]; print(b["a"], b["mapping"])')
    echo "chosen on validation: a=$A mapping=$MAPPING" | tee -a docs/results/timings.txt
else
    A=$2
    MAPPING=${3:-power}
fi
run rounds --a "0,$A" --mappings "$MAPPING" --rounds 3
run baselines --a "0,$A" --mappings "$MAPPING" --strategies local,accuracy,rejected
run losses --a "0,$A" --mappings "$MAPPING" --losses sft,dpo,kto --set weighting.max_pairs_per_question=1
echo "the four studies of the testbed issue: $SECONDS s" | tee -a docs/results/timings.txt
# The testbed's one design choice beyond the backbone: train each round on every round's kept examples so far
# (train.accumulate, the tiny preset) or on that round's alone. Vanilla both ways, paired by seed.
run rounds-each-round-alone --a 0 --rounds 3 --set train.accumulate=false
