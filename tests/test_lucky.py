"""Checked reasoning in a real run: every embedded-task sample carries `steps_valid`, and a round's lucky share is
the share of its training rows that are right against gold with steps that are not, recomputed here from the text."""

from __future__ import annotations

import pandas as pd

from east_tasks.data.arith import steps_valid
from east_tasks.report.frames import round_results, to_records
from east_tasks.store import Store


def test_lucky_share_of_a_real_round(finished_run) -> None:
    cfg, _ = finished_run
    with Store(cfg.store_path) as store:
        gens = store.query("SELECT g.text, g.correct, g.steps_valid, p.question FROM generations g JOIN (SELECT "
                           "DISTINCT problem_id, question FROM problems) p USING (problem_id)")
        rounds = store.round_table(cfg.experiment)
        weight_key = rounds.weight_key.dropna().iloc[0]
        rows = store.query("SELECT g.text, g.correct, t.weight, p.tier, p.question FROM training_examples t "
                           "JOIN generations g USING (gen_key, problem_id, sample_idx) "
                           "JOIN (SELECT DISTINCT problem_id, tier, question FROM problems WHERE split = 'pool') p "
                           "USING (problem_id) WHERE t.weight_key = ? AND t.label", [weight_key])
        shares = store.lucky_shares([weight_key]).set_index("tier")
        records = to_records(round_results(store, cfg.experiment))
    assert gens.steps_valid.notna().all()  # the embedded task: every sample checked
    assert list(gens.steps_valid) == [steps_valid(q, t) for q, t in zip(gens.question, gens.text, strict=True)]
    assert (gens.steps_valid & ~gens.correct).sum() == 0  # the question's steps, right, end at the gold answer
    valid = [steps_valid(q, t) for q, t in zip(rows.question, rows.text, strict=True)]
    lucky = rows.correct & ~pd.Series(valid, index=rows.index, dtype=bool)
    assert shares.loc["all", "rows"] == len(rows) and shares.loc["all", "lucky"] == lucky.sum()
    assert abs(shares.loc["all", "lucky_share"] - lucky.mean()) < 1e-12
    weighted = rows.weight[lucky].sum() / rows.weight.sum()  # finished_run weights with a = 1: not the row share
    assert abs(shares.loc["all", "lucky_weight_share"] - weighted) < 1e-12
    for tier, group in lucky.groupby(rows.tier):
        assert shares.loc[str(tier), "lucky"] == group.sum()
    # east report (and --json) carries it per round; round 0 trains on nothing
    first = next(r for r in records if r["round"] == 1)
    assert first["lucky_share"] == shares.loc["all", "lucky_share"] and records[0]["lucky_share"] is None
    assert set(first["lucky_by_tier"]) == {str(t) for t in rows.tier.unique()}
