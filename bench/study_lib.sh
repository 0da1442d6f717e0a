# Shared by the study scripts (sourced): `run NAME [east sweep options]` runs one sweep of the embedded default
# in the studies' store, times it into docs/results/timings.txt and copies its page and plots to docs/results as
# soon as it finishes (a session may end before the next one does; rerunning resumes from the cache).
EAST=.venv/bin/east
DATA=${EAST_STUDY_DATA:-data/studies}
mkdir -p docs/results

run() {  # name, then east sweep options
    local name=$1
    shift
    local t0=$SECONDS
    $EAST sweep --name "$name" --seeds "$SEEDS" --data-dir "$DATA" "$@"
    echo "$name ($SEEDS): $((SECONDS - t0)) s" | tee -a docs/results/timings.txt
    cp "$DATA/plots/$name".md docs/results/
    for plot in accuracy-vs-a accuracy-vs-round tiers-vs-round paired-differences entropy-vs-error \
        accuracy-vs-compute exploration-exploitation; do
        cp "$DATA/plots/$name-$plot.png" docs/results/ 2>/dev/null || true  # a sweep may lack some plots
    done
}
