"""The round's selection as set-based SQL over the store's tables (an exact-match answer style, gold labels):
clusters, the per-question statistics and B-STaR's monitor, so a pool of millions of samples never leaves DuckDB
(which spills past `store.memory_limit`). What needs Python is small: each distinct answer normalised once (by the
style's `normalize`), the one-row-per-question statistics frame the rules read, and the kept questions' (sample,
correct) pairs streamed in order to draw the rows with the weighting seed.

The store computes the statistics (`_QUESTION_STATS`, the frame `east_tasks.core.weighting` defines); the filters
and weights that read them are the core's, run on that frame, never written here. `tests/test_selection_sql.py`
holds this frame to the core's own over the same clusters, row for row and float for float (the entropy is the
core's `cluster_entropy` of each distinct histogram of cluster sizes). Responses are told apart by a 64-bit hash of
their text after trimming ASCII whitespace (a question's n samples never collide in practice), so the distinct count
holds no text in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import pandas as pd

from east_tasks.core.answers import NO_ANSWER
from east_tasks.core.weighting import cluster_entropy
from east_tasks.store.schema import TRIMMED_TEXT

if TYPE_CHECKING:
    import pyarrow as pa


_CLUSTERS = f"""
SELECT ? AS gen_key, g.problem_id, coalesce(c.canon, '{NO_ANSWER}') AS answer, count(*)::INTEGER AS size,
       coalesce(bool_or(c.graded = gd.gold_canon), false) AS correct
FROM generations g
JOIN problems p ON p.dataset_key = ? AND p.split = ? AND p.problem_id = g.problem_id
LEFT JOIN _gold gd ON gd.answer = p.answer
JOIN _canon c ON c.answer_key = coalesce(g.pred_answer, '{NO_ANSWER}')
WHERE g.gen_key = ?
GROUP BY g.problem_id, coalesce(c.canon, '{NO_ANSWER}')
"""

# A question's cluster sizes as a histogram ('{1=2, 3=1}': two clusters of 1, one of 3): its entropy depends on
# nothing else, so each distinct histogram's entropy is computed once, in Python, by the pure core's own
# `cluster_entropy` (a few hundred histograms among millions of questions), and joined back (`_entropies`). Plain
# hash aggregates, no per-group ordered state: DuckDB spills them past the memory limit.
_HISTOGRAMS = "SELECT DISTINCT histogram(size)::VARCHAR AS sizes FROM clusters WHERE gen_key = ? GROUP BY problem_id"
_COUNTS = f"""
SELECT problem_id, histogram(size)::VARCHAR AS sizes, sum(size)::BIGINT AS n,
       coalesce(sum(size) FILTER (correct), 0)::BIGINT AS n_correct,
       coalesce(max(size) FILTER (NOT correct), 0)::BIGINT AS max_wrong, max(size)::BIGINT AS max_size,
       count(*)::INTEGER AS n_clusters,
       coalesce(sum(size) FILTER (NOT correct AND answer != '{NO_ANSWER}'), 0)::INTEGER AS n_wellformed_incorrect
FROM clusters WHERE gen_key = ? GROUP BY problem_id
"""
# The statistics frame every rule reads (`east_tasks.core.weighting.STATISTICS`), as the core computes it from
# clusters. Parameter: gen_key.
_QUESTION_STATS = f"""
SELECT problem_id, e.entropy, n_correct / n AS frac_correct, max_wrong / n AS rejected_share,
       max_size / n AS majority_share, n_clusters, n::INTEGER AS n_samples, n_correct::INTEGER AS n_correct,
       (n - n_correct)::INTEGER AS n_incorrect, n_wellformed_incorrect
FROM ({_COUNTS}) JOIN _entropies e USING (sizes) ORDER BY problem_id
"""

# Per question: gold-correct samples, distinct correct texts, accepted samples (correct, of a kept question) and
# distinct ones among them, B-STaR's balance; then overall ('all') and by tier, over the questions with gold. A kept
# question accepts all its correct samples, so its accepted counts are its correct ones; the distinct texts are
# counted from (question, text hash) pairs made distinct first (DuckDB spills those; a DISTINCT aggregate per group
# would hold them all).
_MONITOR = f"""
WITH q AS (
  SELECT g.problem_id, count(*) FILTER (g.correct) AS n_correct, any_value(s.drop_reason IS NULL) AS kept
  FROM generations g JOIN question_stats s ON s.weight_key = ? AND s.problem_id = g.problem_id
  WHERE g.gen_key = ? GROUP BY g.problem_id),
d AS (
  SELECT problem_id, count(*) AS distinct_correct
  FROM (SELECT DISTINCT g.problem_id, hash({TRIMMED_TEXT}) FROM generations g WHERE g.gen_key = ? AND g.correct)
  GROUP BY problem_id),
c AS (
  SELECT q.problem_id, n_correct, coalesce(d.distinct_correct, 0) AS distinct_correct,
         CASE WHEN kept THEN n_correct ELSE 0 END AS n_accepted,
         CASE WHEN kept THEN coalesce(d.distinct_correct, 0) ELSE 0 END AS distinct_hits
  FROM q LEFT JOIN d USING (problem_id)),
m AS (
  SELECT c.*, p.tier, coalesce(trim(p.answer), '') != '' AS has_gold,
         least(distinct_hits / ?, 1.0) * CASE WHEN n_accepted > 0 THEN distinct_hits / n_accepted ELSE 0.0 END
             AS balance
  FROM c JOIN problems p ON p.dataset_key = ? AND p.split = ? AND p.problem_id = c.problem_id),
t AS (SELECT 'all' AS tier, * EXCLUDE (tier) FROM m
      UNION ALL SELECT tier::VARCHAR AS tier, * EXCLUDE (tier) FROM m WHERE tier IS NOT NULL)
SELECT ? AS weight_key, tier, count(*)::INTEGER AS questions,
       avg((n_correct > 0)::INTEGER) FILTER (has_gold) AS pass_at_n,
       avg(distinct_correct) FILTER (has_gold) AS distinct_correct,
       (count(*) FILTER (n_accepted > 0))::INTEGER AS kept_questions, sum(n_accepted)::INTEGER AS accepted,
       CASE WHEN sum(n_accepted) FILTER (has_gold) > 0
            THEN sum(n_accepted) FILTER (has_gold) / sum(n_accepted) FILTER (has_gold) END AS precision,
       CASE WHEN sum(n_correct) FILTER (has_gold) > 0
            THEN sum(n_accepted) FILTER (has_gold) / sum(n_correct) FILTER (has_gold) END AS recall,
       avg(balance) FILTER (has_gold) AS balance, NULL::INTEGER AS labelled, NULL::DOUBLE AS label_accuracy
FROM t GROUP BY tier
"""

_MONITOR_COLUMNS = ["weight_key", "tier", "questions", "pass_at_n", "distinct_correct", "kept_questions", "accepted",
                    "precision", "recall", "balance", "labelled", "label_accuracy"]


class SelectionQueries:
    """The selection's reads and `INSERT ... SELECT`s; `self` is a backend, inside the step's transaction."""

    def distinct_answers(self, gen_key: str) -> list[str]:
        """A generation's distinct extracted answers (a few thousand among a million samples)."""
        return [r[0] for r in self.execute(
            "SELECT DISTINCT pred_answer FROM generations WHERE gen_key = ? AND pred_answer IS NOT NULL "
            "AND pred_answer != ? ORDER BY 1", [gen_key, NO_ANSWER])]

    def distinct_gold(self, dataset_key: str, split: str) -> list[str]:
        return [r[0] for r in self.execute("SELECT DISTINCT answer FROM problems WHERE dataset_key = ? AND split = ? "
                                           "AND answer IS NOT NULL ORDER BY 1", [dataset_key, split])]

    def cluster_in_sql(self, gen_key: str, dataset_key: str, split: str, canon: pd.DataFrame,
                       gold: pd.DataFrame) -> None:
        """The generation's clusters (kept if present: every weighting of a pool clusters it alike).
        `canon`: answer_key, canon (normalised), graded (normalised again, as `answers_match` grades);
        `gold`: answer, gold_canon."""
        self.register("_canon", canon)
        self.register("_gold", gold)
        try:
            self.insert_select("clusters", ["gen_key", "problem_id", "answer", "size", "correct"], _CLUSTERS,
                               [gen_key, dataset_key, split, gen_key])
        finally:
            self.unregister("_canon")
            self.unregister("_gold")

    @contextmanager
    def _entropies(self, gen_key: str) -> Iterator[None]:
        """`_entropies(sizes, entropy)` for every cluster-size histogram of the generation, while in the block."""
        histograms = [h for (h,) in self.execute(_HISTOGRAMS, [gen_key])]
        self.register("_entropies", pd.DataFrame({"sizes": histograms,
                                                  "entropy": [cluster_entropy(_sizes(h)) for h in histograms]}))
        try:
            yield
        finally:
            self.unregister("_entropies")

    def question_stats_frame(self, gen_key: str) -> pd.DataFrame:
        """Every statistic of every clustered question of the generation, one row per question (the rules run on
        it in the core: `east_tasks.core.weighting.drop_reasons`)."""
        with self._entropies(gen_key):
            return self.query(_QUESTION_STATS, [gen_key])

    def monitor_in_sql(self, weight_key: str, gen_key: str, dataset_key: str, split: str, target_correct: int) -> None:
        self.execute("DELETE FROM round_monitor WHERE weight_key = ?", [weight_key])
        self.insert_select("round_monitor", _MONITOR_COLUMNS, _MONITOR,
                           [weight_key, gen_key, gen_key, target_correct, dataset_key, split, weight_key])

    def kept_samples(self, gen_key: str, kept: pd.DataFrame, rows: int = 100_000) -> Iterator[pa.RecordBatch]:
        """The samples (problem_id, sample_idx, correct, wellformed) of the `kept` questions (a frame of
        problem_ids) in order, batch by batch."""
        self.register("_kept", kept[["problem_id"]])
        try:
            yield from self.batches("SELECT g.problem_id, g.sample_idx, g.correct, g.pred_answer IS NOT NULL AS "
                                    "wellformed FROM generations g JOIN _kept k USING (problem_id) "
                                    "WHERE g.gen_key = ? ORDER BY g.problem_id, g.sample_idx", [gen_key], rows)
        finally:
            self.unregister("_kept")


def _sizes(histogram: str) -> list[int]:
    """'{1=2, 3=1}' -> [3, 1, 1]: the cluster sizes, largest first (the order `cluster_answers` sorts them in)."""
    counts = [tuple(map(int, item.split("="))) for item in histogram.strip("{}").split(", ")]
    return sorted((size for size, count in counts for _ in range(count)), reverse=True)
