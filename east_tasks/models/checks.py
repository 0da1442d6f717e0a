"""Cheap checks on a model before any engine starts: a local directory has what loading it needs (a config, weights
whose safetensors headers read, a tokenizer), and `backend.max_model_len` fits the model's context. Otherwise vLLM
fails inside its engine processes with pages of tracebacks ("Engine core initialization failed")."""

from __future__ import annotations

import json
from pathlib import Path

from east_tasks.errors import UserError

PICKLES = ("*.bin", "*.pt", "*.pth", "*.ckpt")
TOKENIZER_FILES = ("tokenizer.json", "*.model", "vocab.json", "vocab.txt", "*.tiktoken")
# Where a config gives its context length, as vLLM reads them (its derive_max_model_len_and_key): the smallest wins.
CONTEXT_KEYS = ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length", "model_max_length",
                "max_target_positions", "max_sequence_length", "max_seq_length", "seq_len")
# RoPE types whose max_position_embeddings is already the scaled context (vLLM's _get_and_verify_max_len).
ROPE_PRESCALED = ("su", "longrope", "llama3", "yarn", "deepseek_yarn", "deepseek_llama_scaling")


def read_config(path: Path) -> dict:
    """A model directory's config.json, or a UserError saying why it cannot be read."""
    where = f"base_model {str(path)!r}"
    file = path / "config.json"
    if not file.is_file():
        raise UserError(f"{where}: no config.json, so not a transformers model directory")
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        why = f"{err.msg} at line {err.lineno}, column {err.colno}" if isinstance(err, json.JSONDecodeError) else err
        raise UserError(f"{where}: {file} is not valid JSON ({why})") from err
    if not isinstance(config, dict):
        raise UserError(f"{where}: {file} holds a JSON {type(config).__name__}, not an object")
    return config


def check_model_dir(path: Path, weights: bool = True) -> None:
    """A local model directory that vLLM and transformers can load: its config parses, its weights are safetensors
    whose headers read (a truncated download fails here), and it has a tokenizer. `weights=False` leaves the
    weights out (the embedded backbone's are rebuilt when missing)."""
    where = f"base_model {str(path)!r}"
    if not path.is_dir():
        raise UserError(f"{where}: no such directory (give a local model dir or a hub name)")
    read_config(path)
    if weights:
        _check_weights(path, where)
    if not any(next(path.glob(pattern), None) for pattern in TOKENIZER_FILES):
        raise UserError(f"{where}: no tokenizer (none of {', '.join(TOKENIZER_FILES)}); save the model's tokenizer "
                        "into it (tokenizer.save_pretrained)")


def _check_weights(path: Path, where: str) -> None:
    from safetensors import SafetensorError, safe_open

    index = path / "model.safetensors.index.json"
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, AttributeError) as err:
            raise UserError(f"{where}: {index.name} has no readable weight_map ({err})") from err
        files = [path / shard for shard in shards]
        if missing := [f.name for f in files if not f.is_file()]:
            raise UserError(f"{where}: {index.name} names {len(missing)} missing shard(s): {', '.join(missing[:3])}")
    else:
        files = sorted(path.glob("*.safetensors"))
    if not files:
        pickles = sorted(f.name for pattern in PICKLES for f in path.glob(pattern))
        if not pickles:
            raise UserError(f"{where}: no weights (no *.safetensors file)")
        raise UserError(
            f"{where}: weights only as pickle ({', '.join(pickles[:3])}), which east does not load (unpickling can "
            "run code); if you trust the file, convert it once to safetensors: python -c \"import transformers as t; "
            f"p = '{path}'; t.AutoModelForCausalLM.from_pretrained(p).save_pretrained(p + '-safetensors'); "
            "t.AutoTokenizer.from_pretrained(p).save_pretrained(p + '-safetensors')\" and use that directory")
    for file in files:
        try:
            with safe_open(file, "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise UserError(f"{where}: {file.name} cannot be read ({err}): truncated or corrupt, copy or download it "
                            "again") from err


def context_length(config: dict, tokenizer_max: int | None) -> tuple[int, str] | None:
    """The longest sequence the model takes, and where that comes from, as vLLM derives it: the smallest context
    field of the (text) config, capped by the tokenizer's model_max_length, times a RoPE scaling factor. None when
    the config gives none (vLLM then takes max_model_len as it is)."""
    text = config.get("text_config") or config
    found = {k: text[k] for k in CONTEXT_KEYS if isinstance(text.get(k), int)}
    if not found:
        return None
    key = "model_max_length" if "model_max_length" in found else min(found, key=found.get)
    length, source = found[key], f"config.json {key} = {found[key]}"
    if tokenizer_max is not None and tokenizer_max < length:
        length, source = tokenizer_max, f"the tokenizer's model_max_length = {tokenizer_max}"
    factor = 1.0
    if "gemma3" not in str(config.get("model_type")):  # Gemma 3 gives the scaled length
        rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
        per_layer = rope.values() if all(isinstance(v, dict) for v in rope.values()) else [rope]
        for params in filter(None, per_layer):
            if params.get("rope_type", params.get("type")) not in ROPE_PRESCALED:
                factor = params.get("factor") or factor
    if factor != 1.0:
        length, source = int(length * factor), f"{source} x RoPE factor {factor}"
    return length, source


def check_max_model_len(model: str, max_model_len: int, context: tuple[int, str] | None) -> None:
    """`backend.max_model_len` no longer than the model's context, which vLLM refuses with a long traceback."""
    if context is not None and max_model_len > context[0]:
        raise UserError(f"backend.max_model_len {max_model_len} is above the context of base_model {model!r} "
                        f"({context[1]}); set backend.max_model_len to at most {context[0]}")
