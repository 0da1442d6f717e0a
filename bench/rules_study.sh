#!/usr/bin/env bash
# The rules study (docs/results/rules.md, rules.json): vanilla, EAST at the a-grid's a, learnability, the pass-rate
# band with uniform weights and EAST inside the band, three rounds each, on three regimes of the embedded task, in
# one store. Rules that share a seed share its first-round pool (same key). Each page is rewritten as each sweep
# finishes, so a session that ends early keeps what finished; rerunning resumes from the cache.
#
#     bash bench/rules_study.sh [A]        # A: EAST's a, default 0.5 (docs/results/a-grid.md, chosen on validation)
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:-0.5}
export EAST_STUDY_DATA=${EAST_STUDY_DATA:-data/studies-rules}
source bench/study_lib.sh
BAND='weighting.keep_pass_rate=[0.2,0.8]'

regime() {  # regime preset seeds: seed by seed, every rule, so a stopped study still pairs every rule it reached
    local regime=$1 preset=$2 seed
    for seed in ${3//,/ }; do
        SEEDS=$seed
        run "rules-$regime-vanilla" --preset "$preset" --rounds 3 --a 0
        run "rules-$regime-east" --preset "$preset" --rounds 3 --a "$A"
        run "rules-$regime-learnability" --preset "$preset" --rounds 3 --a 1 --strategies learnability
        run "rules-$regime-band" --preset "$preset" --rounds 3 --a 0 --set "$BAND"
        run "rules-$regime-east-band" --preset "$preset" --rounds 3 --a "$A" --set "$BAND"
        .venv/bin/python bench/rules_study.py --data-dir "$DATA" --out docs/results
    done
}

regime default tiny 0,1,2,3,4
regime skewed tiny-skewed 0,1,2
regime guessable tiny-guessable 0,1,2
