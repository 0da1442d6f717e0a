"""Answer entropy and EAST weights over a million sample rows: the pipeline's DuckDB SQL pass
(`selection.cluster_and_score`, gsm8k style) vs a pandas groupby, and vs clustering question by question.

    .venv/bin/python bench/entropy_sql.py [--questions 62500] [--samples 16]

Each method runs in its own fresh process on the same generated rows (GSM8K-like answers: several spellings
of a few numbers per question, some without an answer), so each peak RSS is its own. Prints seconds, peak
RSS, the ratios, and whether the entropies and weights agree.
"""

from __future__ import annotations

import argparse
import multiprocessing
import resource
import time

import numpy as np
import pandas as pd
from benchmarks import record

from east_tasks.core.answers import NO_ANSWER, normalize_answer
from east_tasks.core.selection import cluster_and_score, cluster_and_score_by_question
from east_tasks.core.weighting import entropy_weights

A = 0.5  # the a-grid's choice on validation; power mapping


def rows(questions: int, samples: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    gold = rng.integers(1, 2000, questions)
    # per sample: the gold answer (with a per-question chance, so some questions are all right or all wrong),
    # a near miss, another number, or none; each spelled as a model might
    right = rng.random((questions, samples)) < rng.random((questions, 1)) ** 0.5
    miss = rng.choice(np.array([1, -1, 10, 0], dtype=object), size=(questions, samples))
    offset = np.where(right, 0, np.where(miss == 0, None, miss))
    values = [None if o is None else int(g + o) for g, row in zip(gold, offset, strict=True) for o in row]
    spell = rng.integers(0, 3, questions * samples)
    preds = [None if v is None else (f"{v:,}", f"{v}.0", str(v))[s] for v, s in zip(values, spell, strict=True)]
    ids = [f"q{q:06d}" for q in range(questions)]
    gens = pd.DataFrame({"problem_id": np.repeat(ids, samples), "sample_idx": np.tile(np.arange(samples), questions),
                         "pred_answer": preds})
    return gens, pd.DataFrame({"problem_id": ids, "answer": [str(g) for g in gold]})


def weights(stats: pd.DataFrame) -> pd.Series:
    """Kept questions (some but not all correct) and their power-mapped entropy weights, mean 1."""
    kept = stats[(stats.n_correct > 0) & (stats.frac_correct < 1)]
    return pd.Series(entropy_weights(kept.entropy.to_numpy(), A), index=kept.problem_id)


def pandas_groupby(gens: pd.DataFrame, problems: pd.DataFrame) -> pd.DataFrame:
    """The same stats with pandas: a groupby over (question, answer), then over questions."""
    distinct = gens.pred_answer.dropna().unique()
    canon = pd.Series([normalize_answer(p) for p in distinct], index=distinct)
    df = gens.assign(answer=gens.pred_answer.map(canon).fillna(NO_ANSWER))
    gold = pd.Series([normalize_answer(a) for a in problems.answer], index=problems.problem_id)
    c = df.groupby(["problem_id", "answer"]).size().rename("size").reset_index()
    c["correct"] = (c.answer != NO_ANSWER) & (c.answer == c.problem_id.map(gold))
    n = c.groupby("problem_id")["size"].transform("sum")
    p = c["size"] / n
    c = c.assign(h=-(p * np.log2(p)), right=c["size"].where(c.correct, 0), wrong=c["size"].where(~c.correct, 0),
                 wellformed=c["size"].where(~c.correct & (c.answer != NO_ANSWER), 0), n=n)
    q = c.groupby("problem_id").agg(entropy=("h", "sum"), n_correct=("right", "sum"), n=("n", "first"),
                                    max_wrong=("wrong", "max"), n_clusters=("size", "size"),
                                    n_wellformed_incorrect=("wellformed", "sum")).reset_index()
    return q.assign(frac_correct=q.n_correct / q.n, rejected_share=q.max_wrong / q.n, n_incorrect=q.n - q.n_correct)


METHODS = {
    "duckdb sql": lambda g, p: cluster_and_score(g, p, "gsm8k")[1],
    "pandas groupby": pandas_groupby,
    "question by question": lambda g, p: cluster_and_score_by_question(g, p, "gsm8k")[1],
}


def run(method: str, questions: int, samples: int, out: multiprocessing.Queue) -> None:
    gens, problems = rows(questions, samples)
    t0 = time.perf_counter()
    stats = METHODS[method](gens, problems)
    w = weights(stats)
    seconds = time.perf_counter() - t0
    out.put((seconds, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
             stats.set_index("problem_id").entropy.sort_index(), w.sort_index()))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, default=62_500)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args()
    ctx = multiprocessing.get_context("spawn")
    results = {}
    for method in METHODS:
        queue = ctx.Queue()
        proc = ctx.Process(target=run, args=(method, args.questions, args.samples, queue))
        proc.start()
        results[method] = queue.get()
        proc.join()
    sql_s, sql_rss, sql_h, sql_w = results["duckdb sql"]
    lines = [f"{args.questions * args.samples:,} sample rows ({args.questions:,} questions x {args.samples}), "
             f"entropy and power a={A} weights of the kept questions; each method in its own process"]
    for method, (seconds, rss, h, w) in results.items():
        same = (h.index.equals(sql_h.index) and np.allclose(h, sql_h, rtol=0, atol=1e-12)
                and w.index.equals(sql_w.index) and np.allclose(w, sql_w, rtol=0, atol=1e-12))
        lines.append(f"{method:20s} {seconds:7.2f} s  peak RSS {rss:5.2f} GB  {seconds / sql_s:5.2f}x the SQL "
                     f"time  entropies and weights equal to SQL's: {same}  ({len(w):,} kept)")
    lines.append(f"duckdb sql vs pandas groupby: {results['pandas groupby'][0] / sql_s:.2f}x faster "
                 f"(target >= 3x), peak RSS {sql_rss:.2f} GB (target < 2 GB)")
    record("entropy-sql", "Entropy and weights over a million rows: DuckDB SQL vs pandas groupby", lines)


if __name__ == "__main__":
    main()
