"""A new checkpoint into vLLM: live weight sync into the running engine vs a fresh engine, side by side.

    .venv/bin/python bench/weight_sync.py [--prompts 1500]

Times both ways of getting an engine for a second checkpoint of the backbone (every weight moved a little, as
training does), then checks that greedy output on the embedded default's test split is identical both ways.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch
from benchmarks import record
from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks import steps
from east_tasks.config import BackendConfig, load_config
from east_tasks.data.sources import load_splits
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.paths import BACKBONE_DIR


def second_checkpoint(out: Path) -> Path:
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(BACKBONE_DIR)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05 * p.std().clamp_min(0.01))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(BACKBONE_DIR).save_pretrained(out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=1500)
    args = parser.parse_args()
    cfg = load_config("tiny")
    prompter = steps.prompter_for(cfg, str(BACKBONE_DIR))
    questions = load_splits(cfg.data).splits["test"].question[: args.prompts]
    prompts, seeds = [prompter(q) for q in questions], list(range(len(questions)))
    greedy = replace(SampleSpec(1, 0.0, 1.0, cfg.eval.max_tokens), stop=prompter.stop)
    backend = BackendConfig()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = str(second_checkpoint(Path(tmp) / "ckpt"))
        engine = get_generator(str(BACKBONE_DIR), backend)
        engine.generate(prompts, seeds, greedy)
        t0 = time.perf_counter()
        assert get_generator(ckpt, backend) is engine
        t_sync = time.perf_counter() - t0
        synced = engine.generate(prompts, seeds, greedy)
        release_generator()
        t0 = time.perf_counter()
        fresh_engine = get_generator(ckpt, backend)
        fresh_engine.generate(prompts[:1], seeds[:1], greedy)  # a restart is only done once it answers
        t_restart = time.perf_counter() - t0
        fresh = fresh_engine.generate(prompts, seeds, greedy)
        release_generator()
    same = sum(a[0].text == b[0].text for a, b in zip(synced, fresh, strict=True))
    line = (f"live sync {t_sync:.3f}s | restart {t_restart:.1f}s | restart / sync {t_restart / t_sync:.0f}x | "
            f"greedy output equal on {same} / {len(prompts)} test prompts")
    record("weight-sync", "A new checkpoint into vLLM: live weight sync vs engine restart", [line])


if __name__ == "__main__":
    main()
