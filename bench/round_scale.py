"""The real selection + weighting step on synthetic GSM8K-shaped rounds, 0.1 M to 10 M samples.

    .venv/bin/python bench/round_scale.py [--questions Q ...] [--n 16] [--work DIR]

Each round is Q questions x n samples with realistic text lengths (~600-character prompts, ~1,100-character
responses, mostly incompressible), built in SQL straight into a store (reused when it is already there). The step
(`east_tasks.steps.select_and_weight`, gsm8k style, gold labels: the in-store path) then runs in a fresh process,
which reports its wall time and its own peak RSS (VmHWM); the peak after importing the step's stack (torch,
transformers, Prefect's pydantic models) is printed beside it. Each size prints `questions=Q rows=R select_s=S
peak_rss_gb=M` as its last line. The default sizes follow with the growth of time per row and of peak RSS. For one
size the store is also built in the layout before prompts were stored once (a prompt per sample), and both stores'
size per million rows is printed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from benchmarks import record

DEFAULT_SIZES = (6_250, 25_000, 100_000, 625_000)
GEN_KEY, DATASET_KEY = "round-scale-gen", "round-scale-data"

# ~600 characters of prompt and ~1,100 of response: hex digests (incompressible) and a few phrases (compressible),
# so the store's size is close to real text's rather than to a repeated string's.
_PROMPT = ("'Question: ' || {digests} || ' How many are left? Answer step by step, then give the final answer "
           "after ####.'")
_TEXT = "{digests} || ' So the total is ' || {answer} || '. #### ' || {answer}"


def _digests(seed: str, count: int) -> str:
    return " || ' ' || ".join(f"md5({seed} || '-{k}')" for k in range(count))


def build(path: Path, questions: int, n: int, v0_layout: bool = False) -> float:
    """The synthetic round's problems, prompts and samples, in SQL; seconds taken."""
    from east_tasks.store import Store

    t0 = time.time()
    with Store(path) as store:
        store.execute(f"""CREATE TEMP TABLE q AS SELECT i, 'q' || lpad(i::VARCHAR, 7, '0') AS problem_id,
                          (hash(i) % 1000)::VARCHAR AS gold, (hash(i * 7) % 100) / 100.0 AS p, i % 6 + 1 AS tier,
                          {_PROMPT.format(digests=_digests("i::VARCHAR", 15))} AS prompt
                          FROM range({questions}) t(i)""")
        store.execute("INSERT INTO problems SELECT ?, 'pool', i, problem_id, prompt, gold, tier FROM q", [DATASET_KEY])
        if not v0_layout:
            store.execute("INSERT INTO prompts SELECT md5(prompt), prompt FROM q")
        answer = ("CASE WHEN u < 0.05 THEN NULL WHEN u < 0.05 + 0.95 * p THEN gold "
                  "ELSE ((hash(i * 31 + s) % 3 + 1) * 7)::VARCHAR END")
        prompt_col = "prompt" if v0_layout else "md5(prompt)"
        store.execute(f"""
            INSERT INTO generations (gen_key, problem_id, sample_idx, prompt_key, text, pred_answer, correct,
                                     num_tokens)
            SELECT ?, problem_id, s, {prompt_col},
                   {_TEXT.format(digests=_digests("(i * 64 + s)::VARCHAR", 33), answer="coalesce(a, 'none')")},
                   a, coalesce(a = gold, false), 300
            FROM (SELECT *, {answer} AS a FROM (SELECT q.*, s, (hash(i * 131 + s) % 1000) / 1000.0 AS u
                                                FROM q, range({n}) r(s)))""", [GEN_KEY])
        if v0_layout:
            store.execute("ALTER TABLE generations RENAME COLUMN prompt_key TO prompt")
        store.execute("CHECKPOINT")
    return time.time() - t0


def peak_rss_gb() -> float:
    """This process's own peak resident memory (VmHWM). Not getrusage's ru_maxrss: on Linux that survives fork and
    exec, so a child started by a parent that built the store reports the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (Linux only)")


def child(work: Path) -> None:
    """The step in this fresh process: prints a JSON line with its time and peak RSS."""
    from east_tasks.config import load_config
    from east_tasks.steps import ModelRef, select_and_weight
    from east_tasks.steps.keys import weight_key, weighting_fields
    from east_tasks.store import Store

    imports_gb = peak_rss_gb()
    cfg = load_config("tiny", data_dir=work)
    key = weight_key(GEN_KEY, weighting_fields(cfg.weighting), cfg.train.loss, cfg.balance.target_correct)
    with Store(cfg.store_path) as store:  # measure the computation, not a cache hit
        store.execute("DELETE FROM step_status WHERE step_key = ?", [key])
    t0 = time.time()
    result = select_and_weight(cfg, GEN_KEY, DATASET_KEY, ModelRef(path="unused", hash="h"))
    seconds = time.time() - t0
    print(json.dumps({"select_s": seconds, "peak_rss_gb": peak_rss_gb(),
                      "imports_rss_gb": imports_gb, "examples": result.info["examples"]}))


def run_size(work_root: Path, questions: int, n: int) -> dict:
    work = work_root / f"q{questions}-n{n}"
    store = work / "east.duckdb"
    built = None
    if not store.exists():
        work.mkdir(parents=True, exist_ok=True)
        store.with_suffix(".building").unlink(missing_ok=True)  # a build that was stopped
        built = build(store.with_suffix(".building"), questions, n)
        store.with_suffix(".building").rename(store)
    out = subprocess.run([sys.executable, __file__, "--child", str(work)], capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rows = questions * n
    print(f"questions={questions} rows={rows} select_s={result['select_s']:.1f} "
          f"peak_rss_gb={result['peak_rss_gb']:.2f}", flush=True)
    return {"questions": questions, "rows": rows, "built_s": built, "store_gb": store.stat().st_size / 2**30,
            **result}


def store_sizes(work_root: Path, questions: int, n: int) -> tuple[float, float]:
    """GB per million rows of the store as it is and in the layout before prompts were stored once."""
    now = work_root / f"q{questions}-n{n}" / "east.duckdb"
    before = work_root / f"q{questions}-n{n}-v0-layout.duckdb"
    if not before.exists():
        before.with_suffix(".building").unlink(missing_ok=True)
        build(before.with_suffix(".building"), questions, n, v0_layout=True)
        before.with_suffix(".building").rename(before)
    per_m = 1e6 / (questions * n) / 2**30
    return now.stat().st_size * per_m, before.stat().st_size * per_m


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--questions", type=int, nargs="*", default=list(DEFAULT_SIZES))
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("data/round-scale"))
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    results = [run_size(args.work, q, args.n) for q in args.questions]
    lines = [f"synthetic GSM8K-shaped rounds, n = {args.n}; the selection + weighting step in a fresh process each",
             "questions       rows   select s   us/row   peak RSS GB   (imports GB)   store GB   training rows"]
    for r in results:
        lines.append(f"{r['questions']:>9,} {r['rows']:>10,} {r['select_s']:>10.1f}"
                     f" {1e6 * r['select_s'] / r['rows']:>8.2f} {r['peak_rss_gb']:>13.2f}"
                     f" {r['imports_rss_gb']:>14.2f} {r['store_gb']:>10.2f} {r['examples']:>15,}")
    if len(results) > 1:
        base = next((r for r in results if r["rows"] >= 400_000), results[0])
        last, at_100k = results[-1], next((r for r in results if r["questions"] == 100_000), None)
        lines.append(f"time per row, {last['rows']:,} vs {base['rows']:,} rows: "
                     f"{(last['select_s'] / last['rows']) / (base['select_s'] / base['rows']):.2f}x (target <= 1.3x)")
        if at_100k:
            lines.append(f"peak RSS at 100,000 questions: {at_100k['peak_rss_gb']:.2f} GB (target <= 1.5 GB); "
                         f"at {last['rows']:,} rows: {last['peak_rss_gb'] / at_100k['peak_rss_gb']:.2f}x that "
                         "(target <= 1.3x)")
    size_at = min(args.questions, key=lambda q: abs(q - 25_000))
    now, before = store_sizes(args.work, size_at, args.n)
    lines.append(f"store size per million rows ({size_at:,} questions): {before:.2f} GB with a prompt per sample, "
                 f"{now:.2f} GB with prompts stored once ({before / now:.2f}x)")
    if args.questions == list(DEFAULT_SIZES):
        record("round-scale", "A round's selection + weighting from 0.1 M to 10 M samples", lines)
    else:
        print("\n".join(lines))


if __name__ == "__main__":
    main()
