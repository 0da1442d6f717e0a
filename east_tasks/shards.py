"""A generation split into shards (`pipeline.generate(shard=(i, n))`: whole chunks, so the merged samples equal
one engine's), each sampled by its own engine into the shared store, then merged by key:

- `backend.data_parallel_size = n`: n engine replicas on this machine, each its own process on its own GPUs
  (`backend.tensor_parallel_size` each). A process per replica is how vLLM runs offline data parallelism: its
  `LLM` class refuses data_parallel_size > 1 in one process.
- `sampling.shards = n`: n flow runs of the east-generate-shard deployment, which the work pool's workers (other
  GPUs, other machines) run side by side (flows/self_train.py passes the runner; this module knows no Prefect).

Shards write side by side, so the store must be a DuckLake (a SQLite catalog will do on one machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import TYPE_CHECKING

from east_tasks.errors import UserError

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


def shard_jobs(cfg: ExperimentConfig, model: ModelRef, dataset_key: str, split: str, spec: SampleSpec, seed: int,
               step: str, limit: int | None, shards: int) -> list[dict]:
    """One JSON job per shard: what `run_shard` needs, in a process or a flow run anywhere."""
    job = {"config": cfg.model_dump(mode="json"), "model": {"path": model.path, "hash": model.hash},
           "dataset_key": dataset_key, "split": split, "spec": asdict(spec), "seed": seed, "step": step,
           "limit": limit}
    return [{**job, "shard": [i, shards]} for i in range(shards)]


def run_replicas(jobs: list[dict], tensor_parallel_size: int) -> str:
    """Every job in its own process on its own GPUs, side by side; says what ran (for the step's log)."""
    devices = replica_devices(len(jobs), tensor_parallel_size, _visible_gpus())
    procs = [subprocess.Popen([sys.executable, "-m", "east_tasks.shards", json.dumps(job)],
                              env={**os.environ, **({"CUDA_VISIBLE_DEVICES": d} if d else {})})
             for job, d in zip(jobs, devices, strict=True)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"data-parallel replicas exited with {codes}; the chunks they committed stay in the "
                           "store and a retry resumes from them")
    return f"{len(jobs)} data-parallel replicas" + (f" on GPUs {' | '.join(devices)}" if devices[0] else "")


def run_shard(job: dict) -> None:
    """One shard of a generation (in a replica process or a shard flow run)."""
    from east_tasks import pipeline
    from east_tasks.config import ExperimentConfig
    from east_tasks.generation import SampleSpec, release_generator

    cfg = ExperimentConfig.model_validate(job["config"])
    spec = SampleSpec(**{**job["spec"], "stop": tuple(job["spec"]["stop"] or ())})
    i, n = job["shard"]
    try:
        pipeline.generate(cfg, pipeline.ModelRef(**job["model"]), job["dataset_key"], job["split"], spec,
                          job["seed"], f"{job['step']} [shard {i + 1}/{n}]", job["limit"], shard=(i, n))
    finally:
        release_generator()


if __name__ == "__main__":
    run_shard(json.loads(sys.argv[1]))
