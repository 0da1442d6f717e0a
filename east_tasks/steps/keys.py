"""Every step's key: a fingerprint of exactly what the step reads, so equal inputs find the stored result.

  dataset_key = hash of the problem rows (`east_tasks.data.sources.load_splits`)
  gen_key     = model hash + dataset_key + split + sampling fields + seed + backend + prompt template + answer style
                (`style_key`; + the probe's question limit)
  topup_key   = an adaptive pool's: its first pass's gen_key (n0 samples) + n + max_n + stop_none_correct
  weight_key  = gen_key + weighting fields + loss (the loss decides the rows: responses, pairs or singles) + the
                monitor's target
  ckpt_key    = parent model hash + weight_key + train fields (`train_fields`) (+ the earlier rounds' weight keys,
                accumulating)
  eval_key    = the greedy and the sampled generation keys of a split
  logprobs    = scoring model hash + gen_key + the scored samples
  balance     = experiment + round (its rows are theirs) + the probes' gen keys + what scores them (weighting
                fields, the monitor's target)
  record      = what the round's row says (`east_tasks.store.schema.record_key`)
  backbone    = the bootstrap recipe of the embedded backbone (its result is its files)
These payloads are the store's compatibility contract: a change here makes every stored result unreachable
(`tests/test_keys.py` holds them to recorded values).
"""

from __future__ import annotations

import hashlib
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from east_tasks.core.answers import STYLES, answer_style
from east_tasks.core.styles import style_module
from east_tasks.core.weighting import MEASURES
from east_tasks.io import fingerprint
from east_tasks.store.schema import record_key

__all__ = ["backbone_key", "balance_key", "checkpoint_key", "eval_key", "gen_key", "logprob_key", "record_key",
           "shard_key", "style_key", "topup_key", "train_fields", "weight_key", "weighting_fields"]


def style_key(style: str) -> str:
    """`data.answer_style` as the generation key reads it: a built-in's name (the key every earlier store holds);
    a user's style, its value and its `version`, or else a hash of the file of the module that defines it, so
    that an edited checker grades its generations again."""
    if style in STYLES:
        return style
    version, module = answer_style(style).version, style_module(style)
    if version is None:
        spec = find_spec(module) if module else None
        origin = Path(spec.origin) if spec is not None and spec.origin else None
        version = hashlib.sha256(origin.read_bytes()).hexdigest()[:16] if origin and origin.is_file() else ""
    return f"{style}@{version}"


def gen_key(model_hash: str, dataset_key: str, split: str, spec: dict[str, Any], seed: int, backend: str,
            template: str, style: str, limit: int | None = None) -> str:
    # `backend` is `backend.engine` under its old name: renaming it in the payload would change every key
    return fingerprint({"model": model_hash, "data": dataset_key, "split": split, "spec": spec, "seed": seed,
                        "backend": backend, "prompt": template, "style": style,
                        **({"limit": limit} if limit is not None else {})})


def topup_key(first_key: str, n: int, max_n: int | None, stop_none_correct: bool) -> str:
    """An adaptive pool's generation (`sampling.adaptive`): what its first pass sampled (n0 is in its spec), and how
    the rest is spent. A fixed-n pool keeps its `gen_key`: these fields enter no other key."""
    return fingerprint({"topup": first_key, "n": n, "max_n": max_n, "stop_none_correct": stop_none_correct})


def shard_key(gen_key: str, shard: int, shards: int) -> str:
    return f"{gen_key}/shard-{shard}-of-{shards}"


# Weighting fields added after keys were first recorded: they enter a key only when set, so every stored result of
# a config that leaves them at their default is found.
_ADDED_WEIGHTING = {"keep_pass_rate": None}


def weighting_fields(weighting: Any) -> dict[str, Any]:
    """`weighting` (a WeightingConfig) as keys read it: later fields only when set, and a user's strategy
    (`module:function` or an entry point) with its version, so an edited function weights again."""
    fields = {k: v for k, v in weighting.model_dump().items()
              if k not in _ADDED_WEIGHTING or v != _ADDED_WEIGHTING[k]}
    if (version := MEASURES.version(weighting.strategy)) is not None:
        fields["strategy_version"] = version
    return fields


# Train fields added after keys were first recorded: like _ADDED_WEIGHTING, in the checkpoint key only when set.
_ADDED_TRAIN = {"group_by_length": False}


def train_fields(train: Any) -> dict[str, Any]:
    """`train` (a TrainConfig) as the checkpoint key reads it: later fields only when set."""
    return {k: v for k, v in train.model_dump().items() if k not in _ADDED_TRAIN or v != _ADDED_TRAIN[k]}


def weight_key(gen_key: str, weighting: dict[str, Any], loss: str, monitor_target: int) -> str:
    return fingerprint({"gen": gen_key, "weighting": weighting, "loss": loss, "monitor_target": monitor_target})


def checkpoint_key(parent_hash: str, weight_key: str, train: dict[str, Any], earlier: list[str]) -> str:
    return fingerprint({"parent": parent_hash, "weights": weight_key, "train": train,
                        **({"earlier": earlier} if earlier else {})})


def backbone_key(recipe: dict[str, Any]) -> str:
    return fingerprint({"backbone": recipe})


def eval_key(greedy_key: str, sampled_key: str | None) -> str:
    return fingerprint({"greedy": greedy_key, "sampled": sampled_key or greedy_key})


def logprob_key(model_hash: str, gen_key: str, samples: list[tuple[str, int]]) -> str:
    return fingerprint({"logprobs": model_hash, "gen": gen_key, "samples": sorted(samples)})


def balance_key(experiment: str, round_: int, probe_keys: list[str], weighting: dict[str, Any], target: int) -> str:
    return fingerprint({"balance": probe_keys, "experiment": experiment, "round": round_, "weighting": weighting,
                        "target": target})
