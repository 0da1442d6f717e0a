"""Answer extraction and equivalence on GSM8K's reference solutions (all rows of train + test).

    .venv/bin/python bench/answer_extraction.py [--data-dir /path/to/gsm8k] [--limit N]

Prints, side by side:
1. marker: extract (gsm8k style) from the full reference solution and compare with its `####` answer. The
   solution contains `#### N` itself, so this mainly checks the `####` rule and the normalisation.
2. no marker: the same with the `#### N` line removed, so the fallbacks (`The answer is`, `A: N`, the last
   number) must find the answer; the harder and more honest number.
3. math style on the same rows: the gold as written, boxed, must match itself (commas and all); the gold
   rewritten as an equal fraction \\frac{2N}{2} must match and N + 1 must not (each of these goes through
   math-verify: identical strings are short-cut, these are not); and on the last number as written in the
   marker-free solution, math-style and gsm8k-style verdicts must agree.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

from tqdm import tqdm

from east_tasks.core.answers import answers_match, extract_answer
from east_tasks.engines import grading

MARKER_LINE = re.compile(r"\n?####[^\n]*$")
LAST_NUMBER = re.compile(r"-?[\d,]*\.?\d+")  # a number as written (the gsm8k fallback's pattern, unnormalised)


def load_rows(data_dir: Path) -> list[tuple[str, str]]:
    """(reference solution, gold answer after `####`) for every row of train.jsonl and test.jsonl."""
    rows = []
    for split in ("train", "test"):
        for line in (data_dir / f"{split}.jsonl").read_text().splitlines():
            solution = json.loads(line)["answer"]
            rows.append((solution, solution.rsplit("####", 1)[1].strip()))
    return rows


def main() -> None:
    grading.install()
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True, help="a GSM8K dir with test.jsonl (train.jsonl)")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only (quick look)")
    parser.add_argument("--show", type=int, default=5, help="misses to print per check")
    args = parser.parse_args()
    rows = load_rows(args.data_dir)[: args.limit]
    n = len(rows)

    checks = {
        "marker": "gsm8k style, full solution (has '#### N')",
        "no_marker": "gsm8k style, '#### N' line removed (fallbacks)",
        "math_boxed_gold": "math style, \\boxed{gold as written} vs gold",
        "math_rewritten": "math style, \\frac{2N}{2} vs gold (must match)",
        "math_off_by_one": "math style, N + 1 vs gold (must NOT match)",
        "styles_agree": "math vs gsm8k verdicts on the raw last number",
    }
    counts = dict.fromkeys(checks, 0)
    misses: dict[str, list[str]] = {k: [] for k in checks}

    def record(key: str, ok: bool, detail: str) -> None:
        counts[key] += ok
        if not ok:
            misses[key].append(detail)

    t_math, n_math, raw_differs = 0.0, 0, 0
    for solution, gold in tqdm(rows, desc="rows", unit="row"):
        record("marker", answers_match(extract_answer(solution, "gsm8k"), gold, "gsm8k"),
               f"{gold!r} <- {solution[-80:]!r}")
        stripped = MARKER_LINE.sub("", solution)
        pred = extract_answer(stripped, "gsm8k")
        record("no_marker", answers_match(pred, gold, "gsm8k"), f"gold {gold!r}, got {pred!r} <- ...{stripped[-70:]!r}")

        number = int(gold.replace(",", ""))
        raw = LAST_NUMBER.findall(stripped)[-1]
        raw_differs += raw.strip() != gold.strip()
        t0 = time.perf_counter()
        record("math_boxed_gold", answers_match(extract_answer(f"so $\\boxed{{{gold}}}$.", "math"), gold, "math"),
               repr(gold))
        record("math_rewritten", answers_match(f"\\frac{{{2 * number}}}{{2}}", gold, "math"), repr(gold))
        record("math_off_by_one", not answers_match(str(number + 1), gold, "math"), repr(gold))
        math_verdict = answers_match(raw, gold, "math")
        t_math += time.perf_counter() - t0
        n_math += 4
        gsm8k_verdict = answers_match(raw, gold, "gsm8k")
        record("styles_agree", math_verdict == gsm8k_verdict,
               f"gold {gold!r}, raw {raw!r}: gsm8k {gsm8k_verdict}, math {math_verdict}")

    print(f"\n{n} GSM8K reference solutions ({args.data_dir})")
    for key, label in checks.items():
        print(f"  {label:50s} {counts[key]:5d} / {n} = {counts[key] / n:.4f}")
    print(f"  (the raw last number differs from the gold string in {raw_differs} rows; those reach math-verify)")
    print(f"  math style: {1000 * t_math / n_math:.2f} ms per answers_match call (math-verify, cached parses)")
    for key, items in misses.items():
        for item in items[: args.show]:
            print(f"  miss [{key}] {item}")


if __name__ == "__main__":
    main()
