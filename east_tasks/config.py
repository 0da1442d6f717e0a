"""Typed experiment configuration: the single source of defaults, validated before any model loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from east_tasks.errors import UserError, one_line
from east_tasks.io import mask_url
from east_tasks.paths import BACKBONE_DIR, CHECKPOINTS, DEFAULT_DATA_DIR, STORE_FILE

Loss = Literal["sft", "dpo", "kto"]
Strategy = Literal["entropy", "local", "accuracy", "rejected"]
Mapping = Literal["power", "exp"]
Tracker = Literal["mlflow", "wandb", "tensorboard"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnMap(_Strict):
    """Which dataset columns hold what. The gold answer is `answer` where that column exists and the row's
    value is non-empty, else the final answer of `solution` (gsm8k style: its `#### N`; math: its last
    \\boxed{}). Unset names take the source's defaults (`SOURCE_DEFAULTS`)."""

    question: str | None = None
    answer: str | None = None
    solution: str | None = None
    tier: str | None = Field(None, description="optional difficulty column (e.g. MATH's `level`), for per-tier metrics")


# Per-source defaults, applied by DataConfig's validator (and so recorded with each run).
SOURCE_DEFAULTS: dict[str, dict] = {
    "arith": {"answer_style": "gsm8k", "prompt": "zeroshot"},  # the backbone was trained on "Q: {q}\nA:"
    # The release's `answer` field is a solution ending in `#### N`.
    "gsm8k": {"answer_style": "gsm8k", "hub_config": "main", "columns": {"question": "question", "solution": "answer"}},
    "math": {"answer_style": "math", "columns": {"question": "problem", "answer": "answer", "solution": "solution",
                                                 "tier": "level"}},
    "table": {"columns": {"question": "question", "answer": "answer"}},
}


class DataConfig(_Strict):
    """Where questions come from: `arith` is the embedded task; `gsm8k`, `math` and `table` (any JSONL / Parquet /
    CSV with a column mapping) read a hub dataset name or a local dir with `<split>.jsonl|.json|.parquet|.csv`."""

    source: Literal["arith", "gsm8k", "math", "table"] = "arith"
    path: str | None = Field(None, description="hub name (openai/gsm8k) or a dir with <split>.jsonl|.parquet|.csv")
    hub_config: str | None = Field(None, description="the hub dataset's config name for `path` (gsm8k: main)")
    pool_split: str = Field("train", description="split of `path` the unlabelled questions come from")
    test_split: str = "test"
    test_path: str | None = Field(None, description="take the test split from this dataset instead (e.g. MATH-500)")
    columns: ColumnMap | None = None
    answer_style: Literal["gsm8k", "math"] | None = Field(None, description="how answers are extracted and compared")
    # zeroshot: "Q: {q}\nA:"; fewshot: worked examples in that format first; chat: the tokenizer's chat template;
    # auto: chat when the tokenizer has a template, else fewshot.
    prompt: Literal["auto", "chat", "fewshot", "zeroshot"] = "auto"
    stop: tuple[str, ...] | None = Field(None, description="stop strings (default: '\\nQ:' for plain prompts)")
    # arith: every split is disjoint from the backbone's labelled set by construction (east_tasks.data.arith).
    pool_size: int = Field(2000, ge=1, description="unlabelled self-training questions (only answers used)")
    validation_size: int = Field(0, ge=0, description="held-out questions every choice (lr, a, epochs) is made "
                                 "on; greedy only. Real data: taken from the pool split, after the pool")
    test_size: int = Field(600, ge=1)
    seed: int = 0
    on_invalid: Literal["error", "skip"] = Field("error", description="data with malformed lines, empty "
                                                 "questions or answers, conflicting duplicates, test questions "
                                                 "in the pool or prompts too long for backend.max_model_len: "
                                                 "refuse it (listing them), or drop those rows")

    @model_validator(mode="before")
    @classmethod
    def _source_defaults(cls, data: object) -> object:
        if not isinstance(data, dict):
            return data
        defaults = SOURCE_DEFAULTS.get(data.get("source", "arith"), {})
        out = {**{k: v for k, v in defaults.items() if k != "columns"}, **{k: v for k, v in data.items()
                                                                           if v is not None}}
        if "columns" in defaults:
            given = data.get("columns") or {}
            given = given.model_dump(exclude_none=True) if isinstance(given, ColumnMap) else given
            out["columns"] = {**defaults["columns"], **given}
        return out

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.source != "arith" and not self.path:
            raise ValueError(f"data.path is required for source {self.source!r} (hub name or local dir)")
        if self.answer_style is None:
            raise ValueError(f"data.answer_style is required for source {self.source!r}: 'gsm8k' or 'math'")
        return self


class SamplingConfig(_Strict):
    n: int = Field(8, ge=1, le=256, description="responses per question")
    temperature: float = Field(0.8, ge=0.0, le=5.0)
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    max_tokens: int = Field(96, ge=1)
    seed: int = 0
    chunk_size: int = Field(256, ge=1, description="questions per committed chunk of pool sampling (a crash "
                            "loses one); evaluation chunks hold as many sequences (greedy: n times the questions)")
    shards: int = Field(1, ge=1, description="a round's pool generation as this many flow runs of the "
                        "east-generate-shard deployment, each with its own engine on whichever worker takes it, "
                        "merged by key (a DuckLake store; east_tasks.engines.replicas)")


class WeightingConfig(_Strict):
    # entropy = EAST; the rest are the paper's baselines: local (the response's own mean token log-prob),
    # accuracy (1 - fraction correct), rejected (number of incorrect responses).
    strategy: Strategy = "entropy"
    mapping: Mapping = "power"
    a: float = Field(0.0, ge=-10.0, le=10.0, description="sharpness; 0 = vanilla self-training")
    eps: float = Field(1e-6, gt=0.0)
    drop_all_correct: bool = True
    require_wellformed_incorrect: bool = True
    responses_per_question: Literal["one", "all"] = "one"
    max_pairs_per_question: int = Field(4, ge=1, description="DPO pairs (KTO: singles of each kind) per question")
    # Label-free self-training (Sharpening, arXiv 2412.01951): the pool's gold answers are not used to select;
    # the majority answer of a question's samples is its pseudo-label, and the filters and weights above apply
    # to it unchanged. Gold answers, where the data has them, are only used to report how often it is right.
    labels: Literal["gold", "majority"] = Field("gold", description="what marks a sampled response correct for "
                                                "training: the gold answer, or the majority answer (label-free)")
    min_agreement: float = Field(0.5, gt=0.0, le=1.0, description="majority labels: the share of a question's "
                                 "samples the most common answer needs to become its pseudo-label")
    self_reward: Literal["none", "logprob"] = Field("none", description="majority labels: pick the response(s) "
                                                    "of the pseudo-label cluster at random, or by the sampling "
                                                    "model's own mean token log-prob (highest first)")
    collapse_entropy: float = Field(0.05, ge=0.0, description="majority labels: stop before training when the "
                                    "pool's mean answer entropy (bits) falls to this while the pseudo-labels' "
                                    "accuracy against gold (where there is gold) falls too")
    seed: int = 0


# The learning rate a loss gets unless the config sets one. SFT: chosen on validation on the embedded task (1 round,
# seed 0): 1e-4 0.582, 3e-4 0.584, 1e-3 0.518 greedy (backbone 0.556). Preference losses move the policy much
# further per step than SFT on the same data; the usual recipes use a learning rate 10-30x below SFT's. On the
# embedded task DPO and KTO at SFT's 3e-4 collapsed the model in one round (greedy 0.535 -> 0.10 / 0.05, 5 seeds).
# DPO / KTO chosen on validation (vanilla, 1 round, 5 seeds; docs/results/losses-lr.md): validation greedy
# 1e-5 0.474 / 0.460, 3e-6 0.545 / 0.522, 1e-6 0.550 / 0.549 (backbone 0.534); 1e-6 is the grid's edge.
# A preset that sets `train.lr` sets it for every loss.
DEFAULT_LR: dict[str, float] = {"sft": 3e-4, "dpo": 1e-6, "kto": 1e-6}


class LoraConfig(_Strict):
    """Low-rank adapters (peft) instead of full fine-tuning, for models too big to fine-tune whole. The
    adapters are merged into the weights before the checkpoint is saved, so vLLM serves it like any other."""

    r: int = Field(16, ge=1)
    alpha: float = Field(32.0, gt=0.0)
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


class TrainConfig(_Strict):
    loss: Loss = "sft"
    beta: float = Field(0.1, gt=0.0, description="DPO / KTO temperature on the policy-reference log-ratio")
    lr: float = Field(None, gt=0.0, description="default: DEFAULT_LR for the loss")  # type: ignore[assignment]

    epochs: float = Field(3.0, gt=0.0)
    batch_size: int = Field(16, ge=1)
    weight_decay: float = Field(0.0, ge=0.0)
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0)
    max_grad_norm: float = Field(1.0, gt=0.0)
    # bf16 autocast over fp32 weights. Off by default: on CPU it was 16x slower than fp32 on one machine and
    # 0.82x on another (bench/train_precision.py measures both); the GPU presets turn it on.
    bf16: bool = False
    # Lee et al. 2025 (arXiv 2502.01612) train each round on the union of every round's self-made data so far;
    # on the embedded task this is what keeps the easy tiers from being forgotten as the frontier moves.
    accumulate: bool = Field(False, description="round r trains on the kept examples of rounds 1..r (each "
                             "round's weights as they were), not on round r's alone")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters (then merge them) instead of all weights")
    seed: int = 0
    launcher: Literal["inprocess", "torchrun"] = Field("inprocess", description="torchrun: train in nproc_per_node "
                                                      "DDP processes (gloo on CPU, NCCL on GPUs; "
                                                      "east_tasks.engines.launch)")
    nproc_per_node: int = Field(1, ge=1, description="torchrun's processes on this machine (one per GPU); each "
                                "takes batch_size / nproc_per_node of every batch")
    # Sharded training for models one GPU cannot hold, handed to transformers' Trainer as they are (not run on the
    # CPU machines: no GPU, no deepspeed package); examples in docs/distributed-training.md.
    fsdp: str = Field("", description="torchrun on GPUs: transformers' FSDP option, e.g. 'full_shard auto_wrap'")
    deepspeed: Path | None = Field(None, description="torchrun on GPUs: a DeepSpeed JSON config (ZeRO stage, "
                                   "offload), e.g. docs/deepspeed-zero2.json; needs the deepspeed package")

    @model_validator(mode="after")
    def _batch_splits_evenly(self) -> TrainConfig:
        if self.launcher == "torchrun" and self.batch_size % self.nproc_per_node:
            raise ValueError(f"train.batch_size {self.batch_size} must be a multiple of train.nproc_per_node "
                             f"{self.nproc_per_node}: every process takes an equal share of each batch")
        if (self.fsdp or self.deepspeed) and self.launcher != "torchrun":
            raise ValueError("train.fsdp / train.deepspeed shard training over processes: set train.launcher=torchrun")
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_lr(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("lr") is None and data.get("loss", "sft") in DEFAULT_LR:
            data = {**data, "lr": DEFAULT_LR[data.get("loss", "sft")]}
        return data


class EvalConfig(_Strict):
    k: int = Field(8, ge=0, description="samples per test question for maj@k / pass@k; 0 = greedy only")
    temperature: float = Field(0.8, ge=0.0)
    max_tokens: int = Field(96, ge=1)
    seed: int = 1234


class BackendConfig(_Strict):
    backend: Literal["vllm", "hf"] = "vllm"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    # On the CPU build this is the share of the machine's RAM reserved for the KV cache (given to vLLM as bytes,
    # see vllm_backend.cpu_kv_cache_bytes): 5 % of 24 GB holds ~290 k tokens of the tiny model, more than 1,024
    # sequences of 256; the engine zero-fills it at start (16-25 s at 5 %, 49 s at 30 %).
    gpu_memory_utilization: float = Field(0.05, gt=0.0, le=1.0, description="on the CPU build: share of RAM")
    tensor_parallel_size: int = Field(1, ge=1, description="GPUs one vLLM engine spans (vLLM's own tensor parallelism)")
    data_parallel_size: int = Field(1, ge=1, description="engine replicas sampling one generation side by side, each "
                                    "its own process on tensor_parallel_size GPUs (east_tasks.engines.replicas); "
                                    "needs a DuckLake store")
    enforce_eager: bool | None = Field(None, description="skip vLLM's graph capture / compilation; default: "
                                       "on for the CPU build, off on GPUs")
    max_model_len: int = Field(256, ge=16, description="at most the model's context; every prompt plus its "
                               "max_tokens (sampling's for the pool, eval's for validation and test) must fit, "
                               "checked before any engine starts")
    max_num_seqs: int | None = Field(None, ge=1, description="sequences per engine step; default: 1,024 on the CPU "
                                     "build (vLLM's 256 there: 1.23x fewer samples/s in "
                                     "bench/generation_throughput.py, identical output), vLLM's own on GPUs")
    max_num_batched_tokens: int | None = Field(None, ge=16, description="tokens per engine step (vLLM's default)")
    hf_batch_size: int = Field(32, ge=1, description="prompts per transformers.generate call")
    weight_sync: bool = Field(True, description="load a new checkpoint's weights into the running vLLM engine "
                              "instead of restarting it (where the engine can stay up while training: the CPU "
                              "build); a checkpoint with another architecture or tokenizer restarts it")
    trust_remote_code: bool = False


class BalanceConfig(_Strict):
    """B-STaR's exploration / exploitation monitor (arXiv 2412.17256), reported every round, and its
    auto-balancing of the sampling temperature (and, optionally, the sample count), off by default."""

    target_correct: int = Field(4, ge=1, description="B-STaR's n*: the distinct correct responses per question "
                                "the balance score asks for")
    auto: bool = Field(False, description="before each round, probe the candidates on a subset of the pool and "
                       "sample the round with the one of the best balance score")
    temperatures: tuple[float, ...] = Field((0.6, 0.8, 1.0, 1.2, 1.4), min_length=1,
                                            description="auto: the temperatures probed")
    sample_counts: tuple[int, ...] = Field((), description="auto: the sample counts probed (empty: sampling.n)")
    probe_size: int = Field(200, ge=1, description="auto: pool questions probed (the first of the pool, whose "
                            "order is random)")

    @model_validator(mode="after")
    def _check(self) -> BalanceConfig:
        if any(t <= 0 or t > 5 for t in self.temperatures):
            raise ValueError(f"balance.temperatures {self.temperatures}: each must be in (0, 5]")
        if any(n < 1 or n > 256 for n in self.sample_counts):
            raise ValueError(f"balance.sample_counts {self.sample_counts}: each must be in 1..256")
        return self


class StoreConfig(_Strict):
    """Where results live: one DuckDB file in data_dir (the default: one writer process at a time), or a DuckLake
    that many workers on many machines write at once (east_tasks.store.LakeStore)."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)  # errors never echo a URL

    url: str | None = Field(
        default_factory=lambda: os.environ.get("EAST_STORE_URL") or None,
        validate_default=True,  # $EAST_STORE_URL is checked like a given value
        pattern=r"^ducklake:(postgres|sqlite):\S",
        description="None: <data_dir>/east.duckdb. A DuckLake: 'ducklake:postgres:dbname=east host=... user=...' "
                    "(many machines) or 'ducklake:sqlite:/shared/east.sqlite' (many processes on one machine); "
                    "default from $EAST_STORE_URL. The password never goes here: PGPASSWORD or a ~/.pgpass file")
    data_path: str | None = Field(None, description="where the lake's Parquet files go: a directory every worker "
                                  "sees, or object storage (s3://...); default <data_dir>/lake")
    lock_timeout_s: float = Field(600.0, ge=0, description="how long a step waits for another "
                                  "process's write lock on the DuckDB file (with backoff, logging the holder), or "
                                  "retries a write that conflicted with another worker's on a lake")
    memory_limit: str | None = Field("512MB", pattern=r"^\d+(\.\d+)?\s*[KMGT]i?B$", description="DuckDB's memory "
                                     "limit for the file store: beyond it a query (a round's selection) spills to "
                                     "disk instead of growing; None: DuckDB's default, 80% of the RAM")
    lease_s: float = Field(60.0, gt=0, description="lake only: a worker computing a step renews its claim every "
                           "lease_s / 3; a claim not renewed for lease_s (its worker died) is taken over")

    @field_validator("url")
    @classmethod
    def _no_password(cls, url: str | None) -> str | None:
        if url and re.search(r"password\s*=|://[^/@\s]+:[^@\s]*@", url, re.I):
            raise ValueError("a store URL would print its password in logs and the recorded config: leave it out "
                             "and set PGPASSWORD (or a ~/.pgpass file, PGPASSFILE) in the workers' environment")
        return url


class TrackingConfig(_Strict):
    """Experiment trackers, off by default: each round's training curve through transformers' `report_to`, and
    the round's metrics (accuracy by tier, kept questions, entropy, cost) on one run per experiment."""

    report_to: tuple[Tracker, ...] = Field((), description="any of mlflow, wandb, tensorboard (each needs its package)")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<data_dir>/mlflow.db")
    project: str = Field("east", min_length=1, description="MLflow experiment / W&B project the runs go to")
    tensorboard_dir: Path | None = Field(None, description="event files; default: <data_dir>/tensorboard")


class ExperimentConfig(_Strict):
    # The outermost model's setting rules a validation error's text: a store URL with a password is never echoed.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # it names files (plots, checkpoints' run names): a letter or digit first, and short enough for any file system
    experiment: str = Field("tiny", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128,
                            description="the experiment's name: one configuration per name in a store")
    preset: str = Field("tiny", description="the preset these values came from (recorded; `load_config` applies it)")
    rounds: int = Field(2, ge=0, le=100)
    base_model: str = Field(str(BACKBONE_DIR), description="local dir or hub name of an HF causal LM")
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="the store, checkpoints and plots (a directory of its own)")
    data: DataConfig = DataConfig()
    sampling: SamplingConfig = SamplingConfig()
    weighting: WeightingConfig = WeightingConfig()
    train: TrainConfig = TrainConfig()
    eval: EvalConfig = EvalConfig()
    backend: BackendConfig = BackendConfig()
    balance: BalanceConfig = BalanceConfig()
    store: StoreConfig = Field(default_factory=StoreConfig)  # built per config: $EAST_STORE_URL is read then
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("data_dir")
    @classmethod
    def _own_directory(cls, path: Path) -> Path:
        # `east gc` removes what it does not know under <data_dir>/checkpoints: never a system directory's
        if path.expanduser().resolve() in (Path(path.expanduser().resolve().anchor), Path.home().resolve()):
            raise ValueError(f"data_dir {str(path)!r} is a file system root or the home directory; give the run a "
                             "directory of its own, e.g. ./data")
        return path

    @property
    def store_path(self) -> Path:
        return self.data_dir / STORE_FILE

    @property
    def store_location(self) -> str:
        """The store, fit to show: the file, or the lake's URL without secrets."""
        return mask_url(self.store.url) if self.store.url else str(self.store_path)

    @property
    def checkpoint_dir(self) -> Path:
        return self.data_dir / CHECKPOINTS


class SweepGrid(_Strict):
    """A grid of EAST settings, run as one experiment per point; `a = 0` is vanilla whatever the rest says."""

    a_values: list[float] = Field([0.0, 0.5, 1.0, 2.0], min_length=1)
    mappings: list[Mapping] = Field(["power"], min_length=1)
    losses: list[Loss] = Field(["sft"], min_length=1)
    strategies: list[Strategy] = Field(["entropy"], min_length=1)
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="each sets the sampling, selection and training seed")


PRESETS: dict[str, dict] = {
    # The embedded default: tiny backbone, easy-to-hard arithmetic task, 3 rounds on a laptop CPU. The test split
    # is large and graded greedily only (k = 0), so sweeps can resolve small paired differences cheaply.
    "tiny": {
        "rounds": 3,
        "data": {"pool_size": 1000, "validation_size": 500, "test_size": 1500},
        # lr: DEFAULT_LR for the loss. Accumulating the rounds' data (docs/results/testbed.md, 5 seeds, vanilla):
        # test 0.586 after 3 rounds against 0.576 training on each round's data alone; validation cannot tell them
        # apart (-0.3 +- 1.9 points).
        "train": {"accumulate": True},
        "eval": {"k": 0},
    },
    # Smaller than the demo, for the integration test.
    "tiny-test": {
        "rounds": 2,
        "data": {"pool_size": 160, "validation_size": 40, "test_size": 90},
        "sampling": {"n": 8, "chunk_size": 64},
        "train": {"accumulate": True},
        "eval": {"k": 4},
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
        "eval": {"k": 8, "max_tokens": 512},
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
        "eval": {"k": 8, "max_tokens": 1024},
        "backend": {"dtype": "bfloat16", "gpu_memory_utilization": 0.85, "tensor_parallel_size": 1,
                    "max_model_len": 4096},
    },
}


def _merge(base: dict, override: dict) -> dict:
    out = dict(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# An 8B model on GSM8K with LoRA adapters (merged into each round's checkpoint); raise
# backend.tensor_parallel_size to spread vLLM over more GPUs.
PRESETS["gsm8k-8b-lora"] = _merge(PRESETS["gsm8k-1b"], {
    "base_model": "meta-llama/Llama-3.1-8B-Instruct",
    "train": {"lr": 1e-4, "lora": {"r": 16, "alpha": 32}},
})


def load_config(preset: str = "tiny", **overrides) -> ExperimentConfig:
    """Preset, then nested overrides (e.g. weighting={'a': 1.0}); raises a readable ValidationError."""
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; allowed: {', '.join(PRESETS)}")
    merged = _merge(PRESETS[preset], {k: v for k, v in overrides.items() if v is not None})
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
