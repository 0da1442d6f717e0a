"""Engine replicas for a generation split into shards (`east_tasks.steps.generation.generate(shard=(i, n))`: whole
chunks, so the merged samples equal one engine's), each sampled by its own engine into the shared store:

- `backend.data_parallel_size = n`: n engine replicas on this machine, each its own process on its own GPUs
  (`backend.tensor_parallel_size` each). A process per replica is how vLLM runs offline data parallelism: its
  `LLM` class refuses data_parallel_size > 1 in one process.
- `sampling.shards = n`: n flow runs of the east-generate-shard deployment, which the work pool's workers (other
  GPUs, other machines) run side by side (flows/self_train.py passes that runner; this module knows no Prefect).

Shards write side by side, so the store must be a DuckLake (a SQLite catalog will do on one machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

from east_tasks.errors import UserError


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


def run_replicas(jobs: list[dict], tensor_parallel_size: int, module: str) -> str:
    """Every job in its own process (`python -m module JOB`) on its own GPUs, side by side; says what ran (for
    the step's log)."""
    devices = replica_devices(len(jobs), tensor_parallel_size, _visible_gpus())
    procs = [subprocess.Popen([sys.executable, "-m", module, json.dumps(job)],
                              env={**os.environ, **({"CUDA_VISIBLE_DEVICES": d} if d else {})})
             for job, d in zip(jobs, devices, strict=True)]
    codes = [p.wait() for p in procs]
    if any(codes):
        raise RuntimeError(f"data-parallel replicas exited with {codes}; the chunks they committed stay in the "
                           "store and a retry resumes from them")
    return f"{len(jobs)} data-parallel replicas" + (f" on GPUs {' | '.join(devices)}" if devices[0] else "")
