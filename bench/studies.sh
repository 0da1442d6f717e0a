#!/usr/bin/env bash
# Every study of docs/results on the embedded default, in one store, each sweep timed and its page copied to
# docs/results as soon as it finishes (a session may end before the last one does; rerunning resumes from
# the cache). `a` for the baselines, losses and rounds studies is the one the a-grid picks on validation:
#
#     bash bench/studies.sh [SEEDS] [A]        # defaults: 0,1,2,3,4 and 1
set -euo pipefail
cd "$(dirname "$0")/.."
SEEDS=${1:-0,1,2,3,4}
A=${2:-1}
EAST=.venv/bin/east
DATA=${EAST_STUDY_DATA:-data/studies}
mkdir -p docs/results

run() {  # name, then east sweep options
    local name=$1
    shift
    local t0=$SECONDS
    $EAST sweep --name "$name" --seeds "$SEEDS" --data-dir "$DATA" "$@"
    echo "$name: $((SECONDS - t0)) s" | tee -a docs/results/timings.txt
    cp "$DATA/plots/$name".md docs/results/
    for plot in accuracy-vs-a accuracy-vs-round tiers-vs-round paired-differences entropy-vs-error; do
        cp "$DATA/plots/$name-$plot.png" docs/results/ 2>/dev/null || true  # a sweep may lack some plots
    done
}

run a-grid --a 0,0.5,1,2 --mappings power,exp
run baselines --a "0,$A" --strategies local,accuracy,rejected
run losses --a "0,$A" --losses sft,dpo,kto --set weighting.max_pairs_per_question=1
run rounds --a "0,$A" --rounds 3
