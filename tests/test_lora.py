"""LoRA on the real backbone: only adapters train, the loss falls, and the merged checkpoint is a plain model."""

import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from test_training import _losses  # same directory: pytest puts it on sys.path
from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks.config import LoraConfig, TrainConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.engines.lora import add_lora
from east_tasks.engines.training import train_weighted
from east_tasks.paths import BACKBONE_DIR


def test_lora_trains_adapters_and_saves_a_merged_model(tmp_path) -> None:
    problems = make_split("pool", 8, seed=99, tiers=(3,))  # a tier the backbone solves about 3 times in 4
    examples = pd.DataFrame({
        "prompt": [format_prompt(p.question) for p in problems],
        "response": [format_completion(p.solution.replace(f"#### {p.answer}", f"#### {int(p.answer) + 1}"))
                     for p in problems],
        "weight": [1.0] * 8,
    })
    lora = LoraConfig(r=8, alpha=16, dropout=0.0, target_modules=("q_proj", "v_proj", "not_in_llama"))
    model = add_lora(AutoModelForCausalLM.from_pretrained(BACKBONE_DIR), lora)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)  # base weights frozen
    assert sum(model.get_nb_trainable_parameters()) and len(trainable) == 4 * 2 * 2  # 4 layers x q,v x A,B

    before = _losses(BACKBONE_DIR, examples)
    cfg = TrainConfig(lr=1e-2, epochs=4, batch_size=8, warmup_ratio=0.0, lora=lora)
    summary = train_weighted(str(BACKBONE_DIR), examples, cfg, tmp_path / "ckpt")
    after = _losses(tmp_path / "ckpt", examples)
    assert summary["steps"] == 4
    assert after.mean() < 0.8 * before.mean()  # the merged adapters learned the examples

    base, merged = load_file(BACKBONE_DIR / "model.safetensors"), load_file(tmp_path / "ckpt" / "model.safetensors")
    assert set(merged) == set(base)  # a plain checkpoint: no adapter tensors, same names
    changed = {k for k in base if not torch.equal(base[k], merged[k])}
    assert changed == {f"model.layers.{i}.self_attn.{m}.weight" for i in range(4) for m in ("q_proj", "v_proj")}

    tok = AutoTokenizer.from_pretrained(tmp_path / "ckpt")
    out = AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").generate(
        **tok(examples.prompt[0], return_tensors="pt"), max_new_tokens=12, do_sample=False)
    assert out.shape[1] > len(tok(examples.prompt[0]).input_ids)


def test_lora_targets_must_exist() -> None:
    with pytest.raises(ValueError, match="none is a module of this model"):
        add_lora(AutoModelForCausalLM.from_pretrained(BACKBONE_DIR), LoraConfig(target_modules=("c_attn",)))
