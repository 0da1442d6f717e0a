"""The experiment's configuration as typed sections: every field's default, bounds and description (the reference
page is generated from them), validated before any model loads."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from east_tasks.config.base import Section, read_old_name
from east_tasks.config.data import DataConfig
from east_tasks.core.weighting import MAPPINGS, MEASURES
from east_tasks.io import mask_url
from east_tasks.paths import BACKBONE_DIR, CHECKPOINTS, DEFAULT_DATA_DIR, STORE_FILE

Loss = Literal["sft", "dpo", "kto"]
Tracker = Literal["mlflow", "wandb", "tensorboard"]


class SamplingConfig(Section):
    """How each round samples the unlabelled pool: n responses per question."""

    n: int = Field(8, ge=1, le=256, description="responses per question")
    temperature: float = Field(0.8, ge=0.0, le=5.0, description="sampling temperature of the pool's responses")
    top_p: float = Field(1.0, gt=0.0, le=1.0, description="nucleus sampling: the probability mass sampled from")
    max_tokens: int = Field(96, ge=1, description="new tokens per pool response at most")
    seed: int = Field(0, description="base of the per-question sampling seeds (round r samples with seed + r), "
                      "so samples do not depend on batching, chunking or resume points")
    chunk_size: int = Field(256, ge=1, description="questions per committed chunk of pool sampling (a crash "
                            "loses one); evaluation chunks hold as many sequences (greedy: n times the questions)")
    shards: int = Field(1, ge=1, description="a round's pool generation as this many flow runs of the "
                        "east-generate-shard deployment, each with its own engine on whichever worker takes it, "
                        "merged by key (a DuckLake store; east_tasks.engines.replicas)")
    # DART-Math (arXiv 2407.13690) spends samples by difficulty; prime-rl and open-instruct stop solved prompts
    adaptive: bool = Field(False, description="an adaptive budget: each pool question first gets n0 samples; one "
                           "decided by them (every sample correct, so dropped as all_correct; with "
                           "stop_none_correct also none correct) stops there, the rest are topped up to n (with "
                           "max_n: in proportion to difficulty). Gold labels only (docs/concepts/algorithm.md)")
    n0: int = Field(4, ge=1, le=256, description="adaptive: the first pass's samples per question (below n)")
    stop_none_correct: bool = Field(False, description="adaptive: also stop a question none of whose n0 samples "
                                    "is correct (dropped as no_correct), rather than topping it up")
    max_n: int | None = Field(None, ge=1, le=256, description="adaptive: the samples the stopped questions did not "
                              "take go to the undecided ones, in proportion to their first pass's fail rate "
                              "(DART-Math), up to max_n per question; null: every undecided question gets n")

    @model_validator(mode="after")
    def _adaptive_budget(self) -> SamplingConfig:
        if self.adaptive and self.n0 >= self.n:
            raise ValueError(f"sampling.n0 {self.n0} must be below sampling.n {self.n}: the first pass is what "
                             "adaptive sampling tops up from")
        if self.max_n is not None and self.max_n < self.n:
            raise ValueError(f"sampling.max_n {self.max_n} must be at least sampling.n {self.n}")
        return self


class WeightingConfig(Section):
    """Which questions and responses a round trains on, and each one's weight (east_tasks.core.weighting)."""

    strategy: str = Field("entropy", description="what the weight measures: " + MEASURES.describe() + "; or a "
                          "'module:function' of the rows' statistics frame, or an entry point of group "
                          "east.weightings (docs/concepts/algorithm.md)")
    mapping: str = Field("power", description="uncertainty f to weight, then normalised to mean 1: "
                         + MAPPINGS.describe())
    a: float = Field(0.0, ge=-10.0, le=10.0, description="sharpness; 0 = vanilla self-training")
    eps: float = Field(1e-6, gt=0.0, description="power mapping: f is floored at eps, so a question of entropy 0 "
                       "keeps a finite weight when a < 0")
    drop_all_correct: bool = Field(True, description="drop questions every response of which is correct "
                                   "(nothing left to learn)")
    require_wellformed_incorrect: bool = Field(True, description="drop questions whose incorrect responses all "
                                               "lack an answer (the authors' filter)")
    keep_pass_rate: tuple[float, float] | None = Field(None, description="keep only questions whose pass rate "
                                                       "(fraction of correct samples) lies in [lo, hi]; the others "
                                                       "are dropped as outside_pass_band. null keeps every rate")
    responses_per_question: Literal["one", "all"] = Field("one", description="SFT rows per kept question: one "
                                                          "random correct response, or every correct one")
    max_pairs_per_question: int = Field(4, ge=1, description="DPO pairs (KTO: singles of each kind) per question")
    # label-free as in Sharpening (arXiv 2412.01951): gold answers, if any, only measure the pseudo-labels
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
    seed: int = Field(0, description="draws the training responses of each question (and DPO / KTO's order)")

    @field_validator("strategy")
    @classmethod
    def _registered_strategy(cls, name: str) -> str:
        return MEASURES.check_name(name)

    @field_validator("mapping")
    @classmethod
    def _registered_mapping(cls, name: str) -> str:
        return MAPPINGS.check_name(name)

    @field_validator("keep_pass_rate")
    @classmethod
    def _band(cls, band: tuple[float, float] | None) -> tuple[float, float] | None:
        if band is not None and not 0.0 <= band[0] <= band[1] <= 1.0:
            raise ValueError(f"keep_pass_rate must be [lo, hi] with 0 <= lo <= hi <= 1, not {list(band)}")
        return band


# Per loss, each chosen on validation: preference losses collapse at SFT's rate (docs/results/losses-lr.md,
# docs/results/testbed.md). A preset that sets `train.lr` sets it for every loss.
DEFAULT_LR: dict[str, float] = {"sft": 3e-4, "dpo": 1e-6, "kto": 1e-6}


class LoraConfig(Section):
    """Low-rank adapters (peft) instead of full fine-tuning, for models too big to fine-tune whole. The
    adapters are merged into the weights before the checkpoint is saved, so vLLM serves it like any other."""

    r: int = Field(16, ge=1, description="the adapters' rank")
    alpha: float = Field(32.0, gt=0.0, description="LoRA's scaling numerator: updates scale by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0, description="dropout on the adapters' input")
    target_modules: tuple[str, ...] = Field(("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj",
                                             "down_proj"), description="the linear layers that get adapters")


class TrainConfig(Section):
    """The round's weighted fine-tune (east_tasks.engines.training, east_tasks.core.losses)."""

    loss: Loss = Field("sft", description="sft (weighted cross-entropy), or the preference losses dpo, kto "
                       "(east_tasks.core.losses)")
    beta: float = Field(0.1, gt=0.0, description="DPO / KTO temperature on the policy-reference log-ratio")
    lr: float = Field(None, gt=0.0, description="default: DEFAULT_LR for the loss")  # type: ignore[assignment]

    epochs: float = Field(3.0, gt=0.0, description="passes over the round's training rows")
    batch_size: int = Field(16, ge=1, description="examples per optimizer step (global, over every process)")
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW's weight decay")
    warmup_ratio: float = Field(0.05, ge=0.0, lt=1.0, description="share of the steps the learning rate warms up")
    max_grad_norm: float = Field(1.0, gt=0.0, description="gradient clipping norm")
    # off by default: on CPUs its speed against fp32 varies by machine (docs/concepts/engines.md#training-precision)
    bf16: bool = Field(False, description="bf16 autocast over fp32 weights (the GPU presets); fp32 otherwise")
    # as Lee et al. 2025 (arXiv 2502.01612): the easy tiers are not forgotten as the frontier moves
    accumulate: bool = Field(False, description="round r trains on the kept examples of rounds 1..r (each "
                             "round's weights as they were), not on round r's alone")
    # off by default: another data order trains another model (bench/trainer_vs_trl.py measures what it saves)
    group_by_length: bool = Field(False, description="batches of rows of similar length (transformers' "
                                  "LengthGroupedSampler): less padding to compute, in another order")
    lora: LoraConfig | None = Field(None, description="train LoRA adapters (then merge them) instead of all weights")
    seed: int = Field(0, description="the trainer's seed and data order (transformers' seed and data_seed)")
    launcher: Literal["inprocess", "torchrun"] = Field("inprocess", description="torchrun: train in nproc_per_node "
                                                      "DDP processes (gloo on CPU, NCCL on GPUs; "
                                                      "east_tasks.engines.launch)")
    nproc_per_node: int = Field(1, ge=1, description="torchrun's processes on this machine (one per GPU); each "
                                "takes batch_size / nproc_per_node of every batch")
    # handed to transformers' Trainer as they are; examples in docs/distributed-training.md
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


def default_ks(n: int) -> tuple[int, ...]:
    """The k of pass@k / maj@k reported unless eval.ks says: the powers of two up to n, and n."""
    powers = {2 ** i for i in range(n.bit_length())}  # 1, 2, 4, ... up to n
    return tuple(sorted(powers | {n})) if n else ()


class EvalConfig(Section):
    """Test evaluation: greedy accuracy, and from n samples per question sampled pass@1 (± its standard error),
    pass@k (the unbiased estimator of Chen et al. 2021) and maj@k, as verl, lighteval and prime-rl report them."""

    n: int = Field(8, ge=0, description="samples per test question (at eval.temperature) for pass@1, pass@k and "
                   "maj@k; 0 = greedy only")
    ks: tuple[int, ...] = Field(  # type: ignore[assignment]
        None, description="the k of pass@k and maj@k reported, each in 1..n (every k is stored, so changing them "
        "recomputes nothing); default: the powers of two up to n, and n")
    temperature: float = Field(0.8, ge=0.0, description="sampling temperature of the n samples")
    max_tokens: int = Field(96, ge=1, description="tokens per answer, greedy and sampled")
    seed: int = Field(1234, description="sampling seed of the evaluations")

    @model_validator(mode="before")
    @classmethod
    def _old_name_and_default_ks(cls, data: object) -> object:
        """`eval.k` is read as eval.n (configs recorded before the rename); ks defaults from n."""
        data = read_old_name("eval", data)
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if data.get("ks") is None:
            n = data.get("n", cls.model_fields["n"].default)
            data["ks"] = default_ks(n) if isinstance(n, int) and n >= 0 else ()  # a bad n: only n's error
        return data

    @field_validator("ks")
    @classmethod
    def _sorted(cls, ks: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(sorted(set(ks)))

    @model_validator(mode="after")
    def _ks_within_n(self) -> EvalConfig:
        if any(k < 1 or k > self.n for k in self.ks):
            raise ValueError(f"eval.ks {list(self.ks)}: each k must be in 1..eval.n ({self.n}), the samples per "
                             "question")
        return self


class BackendConfig(Section):
    """The generation engine (vLLM or transformers) and its resources."""

    engine: Literal["vllm", "hf"] = Field("vllm", description="the generation engine: vLLM, or transformers' "
                                          "generate")
    dtype: Literal["float32", "bfloat16", "float16"] = Field("float32", description="the generation engine's "
                                                              "weights and activations")
    # handed to the CPU build as bytes (vllm_backend.cpu_kv_cache_bytes); sized in docs/concepts/engines.md
    gpu_memory_utilization: float = Field(0.05, gt=0.0, le=1.0, description="the share of GPU memory vLLM takes "
                                          "for weights and KV cache; on the CPU build: the share of RAM reserved "
                                          "for the KV cache")
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
                                     "build (more samples/s than vLLM's 256 there, identical output), vLLM's "
                                     "own on GPUs")
    max_num_batched_tokens: int | None = Field(None, ge=16, description="tokens per engine step (vLLM's default)")
    hf_batch_size: int = Field(32, ge=1, description="prompts per transformers.generate call")
    weight_sync: bool = Field(True, description="load a new checkpoint's weights into the running vLLM engine "
                              "instead of restarting it (where the engine can stay up while training: the CPU "
                              "build); a checkpoint with another architecture or tokenizer restarts it")
    trust_remote_code: bool = Field(False, description="run the model repository's own Python code (off: "
                                    "only transformers' built-in architectures load)")

    @model_validator(mode="before")
    @classmethod
    def _old_name(cls, data: object) -> object:
        """`backend.backend` is read as backend.engine (configs recorded before the rename)."""
        return read_old_name("backend", data)


class BalanceConfig(Section):
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


class StoreConfig(Section):
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


class TrackingConfig(Section):
    """Experiment trackers, off by default: each round's training curve through transformers' `report_to`, and
    the round's metrics (accuracy by tier, kept questions, entropy, cost) on one run per experiment."""

    report_to: tuple[Tracker, ...] = Field((), description="any of mlflow, wandb, tensorboard (each needs its package)")
    mlflow_uri: str | None = Field(None, description="MLflow tracking URI; default: sqlite:///<data_dir>/mlflow.db")
    project: str = Field("east", min_length=1, description="MLflow experiment / W&B project the runs go to")
    tensorboard_dir: Path | None = Field(None, description="event files; default: <data_dir>/tensorboard")


class GuardConfig(Section):
    """What stops a round that wrecks the model before the experiment builds on it (east_tasks.core.guard). A
    non-finite loss or gradient norm always fails the train step; this section is the check after evaluation. It
    changes no step's result, only whether the round is accepted, so it is not part of an experiment's identity."""

    max_val_drop: float | None = Field(5.0, ge=0.0, le=100.0, description="reject a round whose validation "
                                       "greedy accuracy falls more than this many points (of 100) below its "
                                       "parent's, and more than two standard errors of the difference (the noise "
                                       "of the split): recorded as rejected, the run stops, the experiment stays at "
                                       "its last accepted round. "
                                       "null: accept every round. Needs data.validation_size > 0 (without a "
                                       "validation split the check is off, with a warning)")


class ExperimentConfig(Section):
    """One experiment: a preset's values with any overrides, recorded in the store under its name."""

    # The outermost model's setting rules a validation error's text: a store URL with a password is never echoed.
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    # it names files (plots, checkpoints' run names): a letter or digit first, and short enough for any file system
    experiment: str = Field("tiny", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=128,
                            description="the experiment's name: one configuration per name in a store")
    preset: str = Field("tiny", description="the preset these values came from (recorded; `load_config` applies it)")
    rounds: int = Field(2, ge=0, le=100, description="self-training rounds after the base model's evaluation")
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
    guard: GuardConfig = GuardConfig()

    @model_validator(mode="after")
    def _adaptive_with_gold(self) -> ExperimentConfig:
        """Adaptive sampling stops a question by its first pass's gold grading, and sets each count itself."""
        if self.sampling.adaptive and self.weighting.labels != "gold":
            raise ValueError("sampling.adaptive needs weighting.labels=gold: it stops a question by its first "
                             "pass's gold grading, which a label-free round has not")
        if self.sampling.adaptive and self.balance.auto and self.balance.sample_counts:
            raise ValueError("sampling.adaptive spends the sample count itself: leave balance.sample_counts empty")
        return self

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


class SweepGrid(Section):
    """A grid of EAST settings, run as one experiment per point; `a = 0` is vanilla whatever the rest says."""

    a_values: list[float] = Field([0.0, 0.5, 1.0, 2.0], min_length=1, description="weighting.a values")
    mappings: list[str] = Field(["power"], min_length=1, description="weighting.mapping values")
    losses: list[Loss] = Field(["sft"], min_length=1, description="train.loss values")
    strategies: list[str] = Field(["entropy"], min_length=1, description="weighting.strategy values")
    bands: list[tuple[float, float] | None] = Field([None], min_length=1, description="weighting.keep_pass_rate "
                                                    "values: [lo, hi] pass-rate bands, or null for every rate")
    seeds: list[int] = Field([0, 1, 2], min_length=1, description="each sets the sampling, selection and training seed")

    @field_validator("strategies")
    @classmethod
    def _registered_strategies(cls, names: list[str]) -> list[str]:
        return [MEASURES.check_name(n) for n in names]

    @field_validator("mappings")
    @classmethod
    def _registered_mappings(cls, names: list[str]) -> list[str]:
        return [MAPPINGS.check_name(n) for n in names]

    @field_validator("bands")
    @classmethod
    def _bands(cls, bands: list[tuple[float, float] | None]) -> list[tuple[float, float] | None]:
        return [WeightingConfig._band(b) for b in bands]

