"""Math-style grading: math-verify called in the calling thread (the naive way, unbounded against C-level
work) vs `east_tasks.core.answers` with `east_tasks.engines.grading` (worker processes, each call bounded), on
the same pairs, in one run.

    .venv/bin/python bench/grading.py [--data-dir /path/to/gsm8k] [--gsm8k 5276] [--math 500]

Pairs: GSM8K gold answers, each against itself boxed-as-written, an equal fraction and an off-by-one (all
three go through math-verify); and generated MATH-style answers (fractions, radicals, intervals, tuples,
degrees, text) against equal and unequal forms. Prints seconds for each path, the ratio, and agreement
between the paths and with the expected verdicts (100.0 % means no verdict changed).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from benchmarks import record

from east_tasks.core.answers import answers_match, answers_match_many
from east_tasks.engines import grading


def gsm8k_pairs(data_dir: Path, n: int) -> list[tuple[str, str, bool]]:
    """(pred, gold, expected) from GSM8K's gold answers: as written, as an equal fraction, off by one."""
    golds = [json.loads(line)["answer"].rsplit("####", 1)[1].strip()
             for split in ("test", "train") for line in (data_dir / f"{split}.jsonl").read_text().splitlines()][:n]
    pairs = []
    for gold in golds:
        number = int(gold.replace(",", "")) if gold.replace(",", "").lstrip("-").isdigit() else None
        pairs.append((gold + " ", gold, True))  # not byte-identical, so math-verify runs
        if number is not None:
            pairs += [(f"\\frac{{{2 * number}}}{{2}}", gold, True), (str(number + 1), gold, False)]
    return pairs


def math_pairs(n: int, seed: int = 0) -> list[tuple[str, str, bool]]:
    """(pred, gold, expected), MATH-500 style, half equal in another form, half not."""
    rng = random.Random(seed)
    out: list[tuple[str, str, bool]] = []
    while len(out) < n:
        a, b = rng.randint(1, 30), rng.randint(2, 30)
        kind = rng.randrange(6)
        if kind == 0:
            out += [(f"\\frac{{{2 * a}}}{{{2 * b}}}", f"\\frac{{{a}}}{{{b}}}", True),
                    (f"\\frac{{{a + 1}}}{{{b}}}", f"\\frac{{{a}}}{{{b}}}", False)]
        elif kind == 1:
            out += [(f"\\sqrt{{{4 * a}}}", f"2\\sqrt{{{a}}}", True), (f"\\sqrt{{{a + 1}}}", f"\\sqrt{{{a}}}", False)]
        elif kind == 2:
            out += [(f"[{a}, {a + b})", f"[{a},{a + b})", True), (f"({a}, {a + b})", f"[{a},{a + b}]", False)]
        elif kind == 3:
            out += [(f"({a}, -{b})", f"({a},-{b})", True), (f"({b}, -{a})", f"({a},-{b})", a == b)]
        elif kind == 4:
            out += [(f"{a * 10}^\\circ", f"{a * 10}", True), (f"{a * 10 + 5}^\\circ", f"{a * 10}", False)]
        else:
            out += [("\\text{Sunday}", "\\text{Sunday}", True), ("\\text{Monday}", "\\text{Sunday}", False)]
    return out[:n]


def naive(pairs: list[tuple[str, str, bool]]) -> list[bool]:
    """math-verify in this thread, as the library is used by default (no bound a C-level operation respects)."""
    from math_verify import parse, verify

    def check(pred: str, gold: str) -> bool:
        if pred.strip() == gold.strip():
            return True
        g, p = parse(f"\\boxed{{{gold}}}"), parse(f"\\boxed{{{pred}}}")
        return bool(g and p and verify(g, p))

    return [check(p, g) for p, g, _ in pairs]


def fresh_workers() -> None:
    """New worker processes (empty parse caches), started outside the timings."""
    grading.WORKERS.stop()
    answers_match_many(["1"] * 8, ["1.0"] * 8, "math")


def main() -> None:
    grading.install()
    parser = argparse.ArgumentParser()
    parser.add_argument("--data-dir", type=Path, required=True, help="a GSM8K dir with test.jsonl (train.jsonl)")
    parser.add_argument("--gsm8k", type=int, default=5276, help="GSM8K gold answers (3 pairs each, most of them)")
    parser.add_argument("--math", type=int, default=500, help="generated MATH-style pairs")
    args = parser.parse_args()
    lines = []
    for name, pairs in (("gsm8k", gsm8k_pairs(args.data_dir, args.gsm8k)), ("math", math_pairs(args.math))):
        t0 = time.perf_counter()
        ref = naive(pairs)
        t_naive = time.perf_counter() - t0
        fresh_workers()
        t0 = time.perf_counter()
        one_by_one = [answers_match(p, g, "math") for p, g, _ in pairs]
        t_one = time.perf_counter() - t0
        fresh_workers()
        t0 = time.perf_counter()
        batched = answers_match_many([p for p, _, _ in pairs], [g for _, g, _ in pairs], "math")
        t_many = time.perf_counter() - t0
        expected = [e for _, _, e in pairs]
        agree = sum(a == b for a, b in zip(ref, batched, strict=True)) / len(pairs)
        right = sum(a == b for a, b in zip(expected, batched, strict=True)) / len(pairs)
        assert one_by_one == batched
        lines.append(f"{name}: {len(pairs)} pairs | in-thread {t_naive:.2f}s | bounded, one call at a time "
                     f"{t_one:.2f}s ({t_one / t_naive:.2f}x) | bounded, batched over {os.cpu_count()} "
                     f"workers {t_many:.2f}s ({t_many / t_naive:.2f}x) | verdicts equal to in-thread "
                     f"{100 * agree:.1f} %, to expected {100 * right:.1f} % | timeouts {dict(grading.timeouts)}")
    record("grading", "Math grading: bounded worker processes vs math-verify in the calling thread", lines)


if __name__ == "__main__":
    main()
