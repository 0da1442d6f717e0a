"""The presets a run starts from, and how a preset, a file and the command line's values merge into one config."""

from __future__ import annotations

from pydantic import ValidationError

from east_tasks.config.base import new_names
from east_tasks.config.schema import ExperimentConfig
from east_tasks.errors import UserError, one_line


def merge_fields(base: dict, override: dict) -> dict:
    """`override` over `base`, section by section (nested dicts merge; any other value replaces)."""
    out = dict(base)
    for key, value in override.items():
        out[key] = merge_fields(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) \
            else value
    return out


PRESETS: dict[str, dict] = {
    # The embedded default: tiny backbone, easy-to-hard arithmetic task, 3 rounds on a laptop CPU. The test split
    # is large and graded greedily only (n = 0), so sweeps can resolve small paired differences cheaply.
    "tiny": {
        "rounds": 3,
        "data": {"pool_size": 1000, "validation_size": 500, "test_size": 1500},
        # lr: DEFAULT_LR for the loss; accumulating: docs/results/testbed.md
        "train": {"accumulate": True},
        "eval": {"n": 0},
    },
    # Regimes of the embedded task for the rules study (docs/results/rules.md), each the demo's with another pool.
    # Skewed: two thirds of the pool from tiers 1-2, as a real pool is mostly easy for a tuned model.
    "tiny-skewed": {
        "rounds": 3,
        "data": {"pool_size": 1000, "validation_size": 500, "test_size": 1500,
                 "pool_tiers": (1, 1, 1, 1, 2, 2, 2, 2, 3, 4, 5, 6)},
        "train": {"accumulate": True},
        "eval": {"n": 0},
    },
    # Guessable: pool answers from 0 to 9, so a wrong chain of steps often lands on the right number.
    "tiny-guessable": {
        "rounds": 3,
        "data": {"pool_size": 1000, "validation_size": 500, "test_size": 1500, "pool_answers": (0, 9)},
        "train": {"accumulate": True},
        "eval": {"n": 0},
    },
    # Smaller than the demo, for the integration test.
    "tiny-test": {
        "rounds": 2,
        "data": {"pool_size": 160, "validation_size": 40, "test_size": 90},
        "sampling": {"n": 8, "chunk_size": 64},
        "train": {"accumulate": True},
        "eval": {"n": 4},
    },
    # GPU presets (documented and config-tested; not run on the CPU machines). Data and models are hub names;
    # point them at local copies with --set data.path=/dir --set base_model=/dir. Prompts use each model's chat
    # template; max_tokens is per dataset (MATH solutions run longer than GSM8K's).
    "gsm8k-1b": {
        "rounds": 3,
        "base_model": "meta-llama/Llama-3.2-1B-Instruct",
        "data": {"source": "gsm8k", "path": "openai/gsm8k", "pool_size": 7473, "test_size": 1319},
        "sampling": {"n": 16, "temperature": 0.8, "max_tokens": 512, "chunk_size": 512},
        "train": {"lr": 2e-6, "epochs": 3, "batch_size": 16, "bf16": True},
        "eval": {"n": 8, "max_tokens": 512},
        "backend": {"dtype": "bfloat16", "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1,
                    "max_model_len": 2048},
    },
    # MATH train (7,500) as the pool, MATH-500 as the test set.
    "math-1.5b": {
        "rounds": 3,
        "base_model": "Qwen/Qwen2.5-Math-1.5B-Instruct",
        "data": {"source": "math", "path": "DigitalLearningGmbH/MATH-lighteval", "pool_size": 7500,
                 "test_path": "HuggingFaceH4/MATH-500", "test_size": 500},
        "sampling": {"n": 16, "temperature": 0.8, "max_tokens": 1024, "chunk_size": 512},
        "train": {"lr": 2e-6, "epochs": 3, "batch_size": 16, "bf16": True},
        "eval": {"n": 8, "max_tokens": 1024},
        "backend": {"dtype": "bfloat16", "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1,
                    "max_model_len": 4096},
    },
}



# An 8B model on GSM8K with LoRA adapters (merged into each round's checkpoint); raise
# backend.tensor_parallel_size to spread vLLM over more GPUs.
PRESETS["gsm8k-8b-lora"] = merge_fields(PRESETS["gsm8k-1b"], {
    "base_model": "meta-llama/Llama-3.1-8B-Instruct",
    "train": {"lr": 1e-4, "lora": {"r": 16, "alpha": 32}},
})


def load_config(preset: str = "tiny", **overrides) -> ExperimentConfig:
    """Preset, then nested overrides (e.g. weighting={'a': 1.0}); raises a readable ValidationError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    overrides = new_names({k: v for k, v in overrides.items() if v is not None})  # an old name beats a preset's new
    merged = merge_fields(PRESETS[preset], overrides)
    merged.setdefault("preset", preset)
    merged.setdefault("experiment", preset)
    return ExperimentConfig.model_validate(merged)


def checked_config(preset: str = "tiny", **overrides) -> ExperimentConfig:
    """`load_config` for what a person typed (the CLI's options, a deployment's form): bad input is one line, the
    same from both, naming each field and what it allows (a UserError: exit 2)."""
    try:
        return load_config(preset, **overrides)
    except ValidationError as err:
        raise UserError(f"invalid configuration: {one_line(err)}") from None
    except ValueError as err:
        raise UserError(f"invalid configuration: {err}") from None

