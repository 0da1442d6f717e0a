"""Training in torchrun's processes (`train.launcher = "torchrun"`): DDP over gloo on CPU, NCCL on GPUs.

The parent writes the examples (an Arrow file each process memory-maps) and the job beside each other in a scratch
directory and runs `python -m torch.distributed.run --standalone --nproc_per_node N -m east_tasks.engines.launch
DIR`; every process runs `train_weighted` (transformers' Trainer picks the process group up from torchrun's
environment), and rank 0 writes the checkpoint and the summary. Weights stay unbiased across ranks: they are
normalised to mean 1 over the whole dataset before training, each rank's loss is the mean over its equal share of
every batch, and DDP averages the shares' gradients, so the step equals the one-process step on the same batch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from east_tasks.config import TrainConfig
from east_tasks.engines.training import Examples, NonFiniteTraining, example_table, train_weighted
from east_tasks.io import atomic_write


def train_with_torchrun(base_model: str, examples: Examples, cfg: TrainConfig, out_dir: Path, max_len: int,
                        trust_remote_code: bool, tracking: dict | None) -> dict:
    """`train_weighted` in `cfg.nproc_per_node` processes; its summary (rank 0's, with the global loss)."""
    with tempfile.TemporaryDirectory(prefix="east-torchrun-") as work:
        job = Path(work)
        with pa.ipc.new_file(job / "examples.arrow", (table := example_table(examples)).schema) as sink:
            sink.write_table(table)
        (job / "job.json").write_text(json.dumps({
            "base_model": base_model, "train": cfg.model_dump(mode="json"), "out_dir": str(out_dir),
            "max_len": max_len, "trust_remote_code": trust_remote_code, "tracking": tracking}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={cfg.nproc_per_node}",
               "-m", "east_tasks.engines.launch", str(job)]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if (stopped := job / "non_finite.json").exists():  # a process's loss or gradient norm: not a crash
            raise NonFiniteTraining(**json.loads(stopped.read_text()))
        if done.returncode:
            raise RuntimeError(f"torchrun training failed (exit {done.returncode}): {' '.join(cmd)}\n"
                               f"{done.stderr[-4000:]}")
        return json.loads((job / "summary.json").read_text())


def _main(job: Path) -> None:
    spec = json.loads((job / "job.json").read_text())
    try:
        summary = train_weighted(spec["base_model"], job / "examples.arrow",
                                 TrainConfig.model_validate(spec["train"]), Path(spec["out_dir"]), spec["max_len"],
                                 spec["trust_remote_code"], spec["tracking"])
    except NonFiniteTraining as err:  # every process meets it at the same step (DDP averages the gradients)
        stopped = json.dumps({"what": err.what, "value": err.value, "step": err.step, "steps": err.steps})
        atomic_write(job / "non_finite.json", lambda tmp: tmp.write_text(stopped))
        sys.exit(1)
    if int(os.environ.get("RANK", "0")) == 0:
        atomic_write(job / "summary.json", lambda tmp: tmp.write_text(json.dumps(summary)))


if __name__ == "__main__":
    _main(Path(sys.argv[1]))
