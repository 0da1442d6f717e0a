"""Two-process DDP training through torchrun (gloo on CPU) against one process on the same weighted data."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from safetensors.numpy import load_file

from east_tasks.config import TrainConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.launch import train_with_torchrun
from east_tasks.engines.training import train_weighted
from east_tasks.io import hash_dir
from east_tasks.paths import BACKBONE_DIR


def _examples() -> pd.DataFrame:
    problems = make_split("pool", 16, seed=5, tiers=(2, 3))
    weights = np.linspace(0.2, 1.8, len(problems))  # mean 1, as entropy_weights normalises them
    return pd.DataFrame({"prompt": [format_prompt(p.question) for p in problems],
                         "response": [format_completion(p.solution) for p in problems], "weight": weights})


def test_two_ddp_processes_take_the_one_process_steps(tmp_path) -> None:
    examples = _examples()
    one = TrainConfig(lr=3e-4, epochs=2, batch_size=8, warmup_ratio=0.0)
    two = one.model_copy(update={"launcher": "torchrun", "nproc_per_node": 2})
    single = train_weighted(str(BACKBONE_DIR), examples, one, tmp_path / "one")
    ddp = train_with_torchrun(str(BACKBONE_DIR), examples, two, tmp_path / "two", 256, False, None)
    assert single["steps"] == ddp["steps"] == 4  # 16 examples, global batch 8, 2 epochs
    assert ddp["model_hash"] == hash_dir(tmp_path / "two")
    assert ddp["train_loss"] == pytest.approx(single["train_loss"], rel=1e-4)  # the weighted loss, all ranks
    a, b = load_file(tmp_path / "one" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert a.keys() == b.keys()
    moved = max(np.abs(a[k] - load_file(BACKBONE_DIR / "model.safetensors")[k]).max() for k in a)
    gap = max(np.abs(a[k] - b[k]).max() for k in a)
    assert moved > 1e-4 and gap < moved / 100  # training moved the weights; the two runs agree far closer


def test_torchrun_needs_a_batch_that_splits_evenly() -> None:
    with pytest.raises(ValueError, match="multiple of train.nproc_per_node"):
        TrainConfig(batch_size=9, launcher="torchrun", nproc_per_node=2)


def test_sharded_training_options_need_torchrun() -> None:
    with pytest.raises(ValueError, match="set train.launcher=torchrun"):
        TrainConfig(fsdp="full_shard auto_wrap")
    example = Path(__file__).parents[1] / "docs" / "deepspeed-zero2.json"  # the one docs/distributed-training.md names
    cfg = TrainConfig(launcher="torchrun", nproc_per_node=8, deepspeed=example)
    assert json.loads(cfg.deepspeed.read_text())["zero_optimization"]["stage"] == 2
