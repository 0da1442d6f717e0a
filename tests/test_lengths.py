"""Prompt lengths and unloadable model directories are refused before any engine starts, with the row or the file
named (issue 26): counted with the embedded backbone's own tokenizer (context 256) on a few GSM8K rows that do not
fit it (tests/fixtures/lengths)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoTokenizer

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.data.sources import load_splits
from east_tasks.errors import UserError
from east_tasks.models.checks import context_length
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import Store

FIXTURES = Path(__file__).parent / "fixtures"
LENGTHS = FIXTURES / "lengths"
TRAIN, TEST = LENGTHS / "train.jsonl", LENGTHS / "test.jsonl"


def _cfg(tmp_path: Path, **data):
    return load_config("tiny-test", data_dir=tmp_path, data={
        "source": "gsm8k", "path": str(LENGTHS), "prompt": "zeroshot", "pool_size": 5, "validation_size": 0,
        "test_size": 3, **data})


def test_a_prompt_too_long_is_refused_naming_its_line_and_count(tmp_path) -> None:
    with pytest.raises(UserError) as err:
        steps.prepare_data(_cfg(tmp_path))
    message = str(err.value)
    assert message.startswith("the data has 3 problem(s) (3 too_long):\n")
    # zero-shot "Q: ...\nA:" of GSM8K train row 3 is 216 tokens of the backbone's; 96 more to sample: 312 > 256
    assert (f"{TRAIN} line 2: zeroshot prompt of 216 tokens + sampling.max_tokens 96 = 312 > backend.max_model_len "
            "256") in message
    assert f"{TRAIN} line 4: zeroshot prompt of 185 tokens" in message
    assert f"{TEST} line 2: zeroshot prompt of 215 tokens + eval.max_tokens 96 = 311" in message  # eval's budget
    assert "line 6" not in message  # 112 + 96 fits
    assert "data.on_invalid=skip" in message and "backend.max_model_len (at most the model's context)" in message
    assert not (tmp_path / "east.duckdb").exists()  # refused before the data step opened the store


def test_the_count_is_the_prompt_generation_builds_in_the_models_tokens(tmp_path) -> None:
    cfg = _cfg(tmp_path, prompt="auto")  # the backbone has no chat template: few-shot, as generation builds it
    question = json.loads(TRAIN.read_text().splitlines()[0])["question"]
    expected = len(AutoTokenizer.from_pretrained(BACKBONE_DIR)(steps.prompter_for(cfg, str(BACKBONE_DIR))(question))
                   .input_ids)
    first = rf"{re.escape(str(TRAIN))} line 1: fewshot prompt of {expected} tokens "
    with pytest.raises(UserError, match=rf"(?s)problem\(s\) \(8 too_long\).*{first}.*and 3 more"):
        # the few-shot examples alone exceed 256 - 96
        steps.prepare_data(cfg)


def test_max_model_len_above_the_models_context_is_refused(tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path, backend={"max_model_len": 512})
    with pytest.raises(UserError, match=rf"^backend.max_model_len 512 is above the context of base_model "
                       rf"'{re.escape(str(BACKBONE_DIR))}' \(config.json max_position_embeddings = 256\); set "
                       r"backend.max_model_len to at most 256$"):
        steps.prepare_data(cfg)


@pytest.mark.parametrize(("config", "tokenizer_max", "context"), [
    ({"n_positions": 1024}, None, (1024, "config.json n_positions = 1024")),
    ({"max_position_embeddings": 4096, "seq_length": 2048}, None, (2048, "config.json seq_length = 2048")),
    ({"max_position_embeddings": 32768}, 16384, (16384, "the tokenizer's model_max_length = 16384")),
    ({"max_position_embeddings": 4096, "rope_scaling": {"type": "linear", "factor": 2.0}}, None,
     (8192, "config.json max_position_embeddings = 4096 x RoPE factor 2.0")),
    ({"max_position_embeddings": 131072, "rope_parameters": {"rope_type": "llama3", "factor": 32.0}}, None,
     (131072, "config.json max_position_embeddings = 131072")),  # already the scaled length, as vLLM reads it
    ({"text_config": {"max_position_embeddings": 8192}}, None, (8192, "config.json max_position_embeddings = 8192")),
    ({"hidden_size": 64}, None, None),  # none given: vLLM takes max_model_len as it is
])
def test_the_context_is_read_as_vllm_derives_it(config, tokenizer_max, context) -> None:
    assert context_length(config, tokenizer_max) == context


def test_skip_drops_long_rows_and_records_them_under_a_key_of_their_own(tmp_path) -> None:
    cfg = _cfg(tmp_path / "a", on_invalid="skip")
    result = steps.prepare_data(cfg)
    assert result.info["dropped"] == {"too_long": 3} and (result.info["pool"], result.info["test"]) == (3, 2)
    with Store(cfg.store_path) as store:
        rows = store.query("SELECT location, kind, detail FROM data_findings WHERE dataset_key = ?", [result.key])
        kept = store.problems(result.key, "pool").question.tolist()
    assert rows.location.tolist() == [f"{TRAIN} line 2", f"{TRAIN} line 4", f"{TEST} line 2"]
    assert set(rows.kind) == {"too_long"} and rows.detail[0].startswith("zeroshot prompt of 216 tokens")
    assert kept == ["What is 2 + 3?", "What is 7 - 4?", "What is 6 * 2?"]

    # The same rows without the long ones have their own key: what was cut, and against which limits, is in it.
    trimmed = tmp_path / "trimmed"
    trimmed.mkdir()
    for name, cut in (("train.jsonl", {1, 3}), ("test.jsonl", {1})):
        lines = (LENGTHS / name).read_text().splitlines()
        (trimmed / name).write_text("".join(line + "\n" for i, line in enumerate(lines) if i not in cut))
    plain = _cfg(tmp_path / "b", path=str(trimmed))
    plain_key = steps.prepare_data(plain).key
    assert plain_key == load_splits(plain.data)[0]  # nothing dropped for length: the key it had before the check
    assert steps.prepare_data(_cfg(tmp_path / "c", path=str(trimmed), on_invalid="skip")).key == plain_key
    assert result.key != plain_key
    lower = cfg.model_copy(update={"sampling": cfg.sampling.model_copy(update={"max_tokens": 90})})
    assert steps.prepare_data(lower).key not in (result.key, plain_key)  # the same rows cut, against other limits


def test_the_embedded_default_keeps_its_dataset_key(tmp_path) -> None:
    recorded = json.loads((FIXTURES / "keys_v0.json").read_text())["dataset_key"]
    assert steps.prepare_data(load_config("tiny-test", data_dir=tmp_path)).key == recorded


def _pickle_only(model: Path) -> None:
    torch.save(load_file(model / "model.safetensors"), model / "pytorch_model.bin")
    (model / "model.safetensors").unlink()


def _truncated(model: Path) -> None:
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])


@pytest.mark.parametrize(("damage", "message"), [
    (lambda m: shutil.rmtree(m), "no such directory (give a local model dir or a hub name)"),
    (lambda m: (m / "config.json").unlink(), "no config.json, so not a transformers model directory"),
    (lambda m: (m / "config.json").write_text('{"model_type": "llama",'),
     "config.json is not valid JSON (Expecting property name enclosed in double quotes at line 1, column 24)"),
    (_pickle_only, "weights only as pickle (pytorch_model.bin), which east does not load (unpickling can run code); "
                   "if you trust the file, convert it once to safetensors: python -c \"import transformers as t; "),
    (lambda m: (m / "model.safetensors").unlink(), "no weights (no *.safetensors file)"),
    (_truncated, "model.safetensors cannot be read (Error while deserializing header: incomplete metadata, file "
                 "not fully covered): truncated or corrupt, copy or download it again"),
    (lambda m: [(m / f).unlink() for f in ("tokenizer.json", "tokenizer_config.json")],
     "no tokenizer (none of tokenizer.json, *.model, vocab.json, vocab.txt, *.tiktoken); save the model's "
     "tokenizer into it (tokenizer.save_pretrained)"),
], ids=["missing", "no-config", "bad-config", "pickle", "no-weights", "truncated", "no-tokenizer"])
def test_an_unloadable_model_dir_is_one_line_saying_why(tmp_path, damage, message) -> None:
    model = tmp_path / "model"
    shutil.copytree(BACKBONE_DIR, model)
    damage(model)
    cfg = load_config("tiny-test", data_dir=tmp_path / "store", base_model=str(model))
    with pytest.raises(UserError) as err:
        steps.preflight(cfg)
    assert str(err.value).startswith(f"base_model '{model}': ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_a_tokenizer_that_does_not_load_is_named(tmp_path) -> None:
    model = tmp_path / "model"
    shutil.copytree(BACKBONE_DIR, model)
    (model / "tokenizer.json").write_text('{"version": "1.0"}')
    with pytest.raises(UserError, match=rf"^base_model '{re.escape(str(model))}': its tokenizer does not load "
                       r"\(KeyError: 'added_tokens'\)$"):
        steps.prepare_data(load_config("tiny-test", data_dir=tmp_path / "store", base_model=str(model)))
