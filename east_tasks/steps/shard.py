"""`python -m east_tasks.steps.shard JOB`: one shard of a generation, in an engine replica's own process."""

import json
import sys

from east_tasks.steps.generation import run_shard

if __name__ == "__main__":
    run_shard(json.loads(sys.argv[1]))
