"""Weighted SFT on CPU: fp32 vs bf16 autocast (`train.bf16`), the same examples and steps, in one run.

    .venv/bin/python bench/train_precision.py [--examples 320] [--batch-size 16] [--model DIR]

Trains the committed backbone through `train_weighted` (the pipeline's own trainer) once per precision and
prints seconds per optimizer step and the ratio; the `tiny` preset's `train.bf16` follows from it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pandas as pd
import torch
from benchmarks import record

from east_tasks.config import TrainConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.training import train_weighted
from east_tasks.paths import BACKBONE_DIR


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--examples", type=int, default=320)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--model", default=str(BACKBONE_DIR))
    args = parser.parse_args()
    problems = make_split("pool", args.examples, seed=3)
    examples = pd.DataFrame({"prompt": [format_prompt(p.question) for p in problems],
                             "response": [format_completion(p.solution) for p in problems],
                             "weight": 1.0})
    seconds = {}
    for bf16 in (False, True, False, True):  # twice each, interleaved: the second pass is the one reported
        cfg = TrainConfig(epochs=1, batch_size=args.batch_size, bf16=bf16)
        with tempfile.TemporaryDirectory() as out:
            t0 = time.time()
            summary = train_weighted(args.model, examples, cfg, Path(out) / "ckpt")
            seconds["bf16" if bf16 else "fp32"] = (time.time() - t0) / summary["steps"]
    lines = [f"{args.examples} examples, batch {args.batch_size}, {torch.get_num_threads()} threads, "
             f"{'cuda' if torch.cuda.is_available() else 'cpu'}",
             *(f"{name}: {s:.3f} s/step" for name, s in seconds.items()),
             f"bf16 / fp32 time: {seconds['bf16'] / seconds['fp32']:.2f}x"]
    record("train-precision", "Weighted SFT: bf16 autocast vs fp32", lines)


if __name__ == "__main__":
    main()
