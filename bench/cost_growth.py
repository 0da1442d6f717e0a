"""How a round's cost grows with the pool: 1x, 2x and 4x the preset's pool size, side by side in one run.

    .venv/bin/python bench/cost_growth.py [--preset tiny-test] [--scales 1,2,4]

One self-training round per pool size, in one store with the engine kept up (so the backbone's evaluation
is shared and each round pays only for itself), read back with `east report --cost`'s accounting. Sampling
and weighting should grow linearly with the pool; training with the kept examples; evaluation not at all.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

from benchmarks import record

from east_tasks.config import load_config
from east_tasks.engines.generation import release_generator
from east_tasks.report.frames import round_costs
from east_tasks.store import Store


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny-test")
    parser.add_argument("--scales", default="1,2,4")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="east-bench-prefect-"))
    from prefect.testing.utilities import prefect_test_harness

    from flows.self_train import self_train

    root = Path(tempfile.mkdtemp(prefix="east-bench-cost-"))
    pool = load_config(args.preset).data.pool_size
    scales = [int(s) for s in args.scales.split(",")]
    with prefect_test_harness(server_startup_timeout=180):
        for scale in scales:
            self_train(load_config(args.preset, experiment=f"pool-x{scale}", rounds=1, data_dir=root,
                                   data={"pool_size": pool * scale}), keep_engine=True)
        release_generator()
    with Store(root / "east.duckdb") as store:
        costs = round_costs(store, [f"pool-x{s}" for s in scales])
        steps = store.query("SELECT step, experiment, wall_s FROM step_status")
        kept = dict(store.execute("SELECT experiment, n_kept FROM experiment_rounds WHERE round = 1"))
    round1 = costs[costs["round"] == 1].set_index("experiment")
    base = round1.loc[f"pool-x{scales[0]}"]
    lines = [f"{args.preset}, one round, pool of {pool} x scale; ratios against x{scales[0]}",
             "scale | pool | kept | wall s | cpu s | tokens generated | tokens trained | "
             "wall ratio | cpu ratio | pool sampling s | train s"]
    for scale in scales:
        name = f"pool-x{scale}"
        r = round1.loc[name]
        mine = steps[steps.experiment == name]
        sampling = mine[mine.step == "generate pool round 1"].wall_s.sum()
        train = mine[mine.step == "train"].wall_s.sum()
        lines.append(f"x{scale} | {pool * scale} | {kept[name]} | {r.wall_s:.1f} | {r.cpu_s:.1f} | "
                     f"{r.tokens_generated:.0f} | {r.tokens_trained:.0f} | {r.wall_s / base.wall_s:.2f} | "
                     f"{r.cpu_s / base.cpu_s:.2f} | {sampling:.1f} | {train:.1f}")
    record("cost-growth", "Cost of one round at 1x, 2x and 4x the pool", lines)
    print(json.dumps(round1[["wall_s", "cpu_s", "tokens_generated", "tokens_trained"]].to_dict("index")))


if __name__ == "__main__":
    main()
