"""Whether a checkpoint's weights can be synced into a running vLLM engine is decided by what the engine serves,
not by file layout: a tokenizer whose chat template transformers 5 moved into chat_template.jinja syncs in place;
another template, vocabulary or architecture restarts the engine, and the log says why."""

import json
import logging
import shutil
from pathlib import Path

import pytest
from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks.config import BackendConfig
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.engines.generation.vllm_backend import engine_differences
from east_tasks.paths import BACKBONE_DIR

LOGGER = "east_tasks.engines.generation.vllm_backend"
TEMPLATE = "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"


def _chat_model(out: Path, where: str, template: str = TEMPLATE) -> Path:
    """The backbone with a chat template, its tokenizer saved with the template `where` a transformers version
    puts it: "inline" (tokenizer_config.json), "jinja" (chat_template.jinja, transformers 5) or "json"
    (chat_template.json, the processors' file)."""
    shutil.copytree(BACKBONE_DIR, out)
    tok = AutoTokenizer.from_pretrained(BACKBONE_DIR)
    tok.chat_template = template
    tok.save_pretrained(out, save_jinja_files=where == "jinja")
    if where == "json":
        config = json.loads((out / "tokenizer_config.json").read_text())
        (out / "chat_template.json").write_text(json.dumps({"chat_template": config.pop("chat_template")}))
        (out / "tokenizer_config.json").write_text(json.dumps(config))
    return out


@pytest.fixture()
def base(tmp_path) -> Path:
    """A hub-style base: its template inline, written by another transformers version in another dtype."""
    out = _chat_model(tmp_path / "base", "inline")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "dtype": "bfloat16", "transformers_version": "4.57.1"}))
    return out


def _trained(base: Path, out: Path) -> Path:
    """A checkpoint of `base` saved the way training saves one (engines/training.py): float32, no KV cache
    flag, the tokenizer saved by transformers 5, so its chat template moves into chat_template.jinja."""
    model = AutoModelForCausalLM.from_pretrained(base)
    model.config.use_cache = False
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(base).save_pretrained(out)
    return out


def _edit_json(path: Path, edit) -> None:
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))


def test_a_moved_chat_template_is_the_same_engine(base, tmp_path) -> None:
    ckpt = _trained(base, tmp_path / "ckpt")
    assert (ckpt / "chat_template.jinja").read_text() == TEMPLATE
    assert "chat_template" not in json.loads((ckpt / "tokenizer_config.json").read_text())
    assert engine_differences(base, ckpt) == []
    assert engine_differences(base, _chat_model(tmp_path / "json", "json")) == []
    assert engine_differences(BACKBONE_DIR, base) == ["chat template differs (default)"]
    assert engine_differences(base, "Qwen/Qwen2.5-0.5B") == ["not a local model directory"]


def test_what_the_engine_serves_differs_with_the_reason(base, tmp_path) -> None:
    other_template = _chat_model(tmp_path / "template", "jinja", template=TEMPLATE + "{{ eos_token }}")
    assert engine_differences(base, other_template) == ["chat template differs (default)"]

    vocab = _trained(base, tmp_path / "vocab")
    _edit_json(vocab / "tokenizer.json", lambda t: t["model"]["vocab"].update({"zz": t["model"]["vocab"].pop("1")}))
    assert engine_differences(base, vocab) == ["vocabulary differs (vocab)"]

    layers = _trained(base, tmp_path / "layers")
    _edit_json(layers / "config.json", lambda c: c.update(num_hidden_layers=3))
    assert engine_differences(base, layers) == ["architecture differs (num_hidden_layers)"]

    eos = _trained(base, tmp_path / "eos")
    _edit_json(eos / "tokenizer_config.json", lambda c: c.update(eos_token="<pad>"))
    _edit_json(eos / "generation_config.json", lambda g: g.update(repetition_penalty=1.3))
    assert engine_differences(base, eos) == ["special tokens differ (eos_token)",
                                             "generation defaults differ (repetition_penalty)"]


def test_the_engine_syncs_a_moved_template_in_place_and_says_why_it_restarts(base, tmp_path, caplog) -> None:
    ckpt = _trained(base, tmp_path / "ckpt")
    other_template = _chat_model(tmp_path / "template", "jinja", template=TEMPLATE + "{{ eos_token }}")
    backend = BackendConfig()
    engine = get_generator(str(base), backend)
    try:
        with caplog.at_level(logging.INFO, logger=LOGGER):
            assert get_generator(str(ckpt), backend) is engine  # synced in place, not restarted
            assert not engine.load_weights(str(other_template))
        ours = [r for r in caplog.records if r.name == LOGGER]
        assert [r.levelno for r in ours] == [logging.INFO, logging.WARNING]  # synced; then refused, saying why
        warning = ours[-1]
        assert "chat template differs (default)" in warning.getMessage()
        assert "a restart costs the engine's start-up" in warning.getMessage()
        out = engine.generate(["Q: 2 + 3 = ?\nA:"], [0], SampleSpec(1, 0.0, 1.0, 8))
        assert out[0][0].num_tokens > 0  # the engine still serves, with the synced checkpoint's weights
        assert engine.model_path == str(ckpt)
    finally:
        release_generator()
