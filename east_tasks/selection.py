"""From clustered generations to weighted training examples (the EAST data step).

Per question: cluster the n responses by answer, compute H, A (fraction correct) and R (share of the most
common wrong answer), apply the authors' filters, pick the training response(s), then map the
uncertainty to a weight normalised over the kept questions.
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd

from east_tasks.answers import cluster_answers
from east_tasks.config import WeightingConfig
from east_tasks.weighting import drop_reason, entropy_weights, question_stats


def cluster_and_score(gens: pd.DataFrame, problems: pd.DataFrame, style: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cluster rows and per-question stats (without filtering) for every question with generations."""
    gold = dict(zip(problems.problem_id, problems.answer, strict=True))
    cluster_rows, stat_rows = [], []
    for pid, group in gens.groupby("problem_id", sort=False):
        preds = [None if pd.isna(p) else p for p in group.pred_answer]
        clusters = cluster_answers(preds, gold[pid], style)
        stats = question_stats(clusters)
        cluster_rows += [{"problem_id": pid, "answer": c.answer, "size": c.size, "correct": c.correct}
                         for c in clusters]
        stat_rows.append({"problem_id": pid, **stats.__dict__})
    return pd.DataFrame(cluster_rows), pd.DataFrame(stat_rows)


def select_examples(gens: pd.DataFrame, stats: pd.DataFrame, cfg: WeightingConfig) -> pd.DataFrame:
    """Kept questions' correct responses with their weights. Adds `drop_reason` to `stats` in place."""
    stats["drop_reason"] = [
        drop_reason(s, cfg.drop_all_correct, cfg.require_wellformed_incorrect)
        for s in stats.itertuples(index=False)
    ]
    kept = stats[stats.drop_reason.isna()].set_index("problem_id")
    rng = random.Random(cfg.seed)
    rows = []
    correct = gens[gens.correct].sort_values(["problem_id", "sample_idx"])
    for pid, group in correct.groupby("problem_id", sort=True):
        if pid not in kept.index:
            continue
        if cfg.responses_per_question == "one":
            picks = [group.iloc[rng.randrange(len(group))]]
        else:
            picks = [row for _, row in group.iterrows()]
        rows += [{"problem_id": pid, "prompt": r.prompt, "response": r.text,
                  "uncertainty": kept.at[pid, "entropy"]} for r in picks]
    examples = pd.DataFrame(rows, columns=["problem_id", "prompt", "response", "uncertainty"])
    examples["weight"] = entropy_weights(examples.uncertainty.to_numpy(np.float64), cfg.a, cfg.mapping, cfg.eps)
    examples.insert(0, "example_idx", range(len(examples)))
    return examples
