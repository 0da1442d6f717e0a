"""Data-parallel sampling on one machine (`backend.data_parallel_size = n`): n engine replicas, each its own
process on its own GPUs (`backend.tensor_parallel_size` each), sampling one shard of the generation
(`pipeline.generate(shard=(i, n))`: whole chunks, so the samples equal one engine's) into the shared store.

A process per replica is how vLLM runs offline data parallelism: its `LLM` class refuses data_parallel_size > 1
in one process. The replicas write side by side, so the store must be a DuckLake (a SQLite catalog will do on one
machine); across machines, the shards of a generation run as flow runs on a work pool instead.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from east_tasks.errors import UserError
from east_tasks.store import require_shared_store

if TYPE_CHECKING:
    from east_tasks.config import ExperimentConfig
    from east_tasks.generation import SampleSpec
    from east_tasks.pipeline import ModelRef


def replica_devices(replicas: int, per_replica: int, visible: list[str]) -> list[str | None]:
    """CUDA_VISIBLE_DEVICES of each replica: consecutive groups of `per_replica` of the `visible` GPUs (None: no
    GPUs, the CPU build)."""
    if not visible:
        return [None] * replicas
    if len(visible) < replicas * per_replica:
        raise UserError(f"backend.data_parallel_size {replicas} x tensor_parallel_size {per_replica} needs "
                        f"{replicas * per_replica} GPUs; {len(visible)} are visible ({','.join(visible)})")
    return [",".join(visible[i * per_replica:(i + 1) * per_replica]) for i in range(replicas)]


def _visible_gpus() -> list[str]:
    import torch

    if not torch.cuda.is_available():
        return []
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    return listed.split(",") if listed else [str(i) for i in range(torch.cuda.device_count())]


def sample_data_parallel(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, spec: SampleSpec,
                         seed: int, step: str, limit: int | None) -> str:
    """Every shard of one generation in its own replica process; returns what ran (for the step's log)."""
    replicas = cfg.backend.data_parallel_size
    require_shared_store(cfg.store.url, f"backend.data_parallel_size {replicas}")
    job = {"config": cfg.model_dump(mode="json"), "model": {"path": model.path, "hash": model.hash},
           "dataset_key": dataset_key, "split": split, "spec": asdict(spec), "seed": seed, "step": step,
           "limit": limit}
    devices = replica_devices(replicas, cfg.backend.tensor_parallel_size, _visible_gpus())
    procs = [subprocess.Popen([sys.executable, "-m", "east_tasks.shards", json.dumps({**job, "shard": [i, replicas]})],
                              env={**os.environ, **({"CUDA_VISIBLE_DEVICES": d} if d else {})})
             for i, d in enumerate(devices)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"{step}: data-parallel replicas exited with {codes}; the shards they committed stay in "
                           "the store and a retry resumes from them")
    return f"{replicas} data-parallel replicas" + (f" on GPUs {' | '.join(devices)}" if devices[0] else "")


def _main(job: dict) -> None:
    from east_tasks import pipeline
    from east_tasks.config import ExperimentConfig
    from east_tasks.generation import SampleSpec, release_generator

    cfg = ExperimentConfig.model_validate(job["config"])
    spec = SampleSpec(**{**job["spec"], "stop": tuple(job["spec"]["stop"] or ())})
    try:
        pipeline.generate(cfg, pipeline.ModelRef(**job["model"]), job["dataset_key"], job["split"], spec,
                          job["seed"], f"{job['step']} [shard {job['shard'][0] + 1}/{job['shard'][1]}]", job["limit"],
                          shard=tuple(job["shard"]))
    finally:
        release_generator()


if __name__ == "__main__":
    _main(json.loads(sys.argv[1]))
