"""One worker process of the DuckLake tests: `python tests/lake_worker.py '<json>'` prepares the data and samples
one generation (or one shard of it) into the store the JSON names, then prints the step's result as JSON."""

from __future__ import annotations

import json
import sys

from east_tasks import steps
from east_tasks.config import ExperimentConfig, load_config
from east_tasks.engines.generation import SampleSpec
from east_tasks.paths import BACKBONE_DIR

SPEC = SampleSpec(n=2, temperature=0.8, top_p=1.0, max_tokens=48)


def worker_config(data_dir: str, url: str | None, lease_s: float = 60.0) -> ExperimentConfig:
    return load_config("tiny-test", data_dir=data_dir, backend={"engine": "hf"},
                       store={"url": url, "lease_s": lease_s}, data={"pool_size": 12, "test_size": 4},
                       sampling={"chunk_size": 4, "n": SPEC.n})


def sample(cfg: ExperimentConfig, shard: tuple[int, int] | None = None) -> steps.StepResult:
    key = steps.prepare_data(cfg).key
    return steps.generate(cfg, steps.model_ref(BACKBONE_DIR), key, "pool", SPEC, seed=0, step="gen",
                             shard=shard)


if __name__ == "__main__":
    args = json.loads(sys.argv[1])
    result = sample(worker_config(args["data_dir"], args["url"], args.get("lease_s", 60.0)),
                    tuple(args["shard"]) if args.get("shard") else None)
    print(json.dumps({"key": result.key, "cached": result.cached, "rows": result.info.get("rows"),
                      "new_questions": result.info.get("new_questions")}))
