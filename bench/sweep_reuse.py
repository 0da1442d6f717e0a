"""A sweep vs the same points run one by one in fresh stores, side by side in one run.

    .venv/bin/python bench/sweep_reuse.py [--preset tiny-test] [--a 0,0.5,1,2] [--losses sft] [--backend hf]

K points of one seed share the base model's evaluation and the first round's pool generations inside a
sweep; run separately, each pays for them again. Prints both wall times, their ratio, and how many steps
each way computed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks import record

from east_tasks.config import SweepGrid
from east_tasks.store import Store


def computed_steps(data_dir: Path) -> dict[str, int]:
    with Store(data_dir / "east.duckdb") as store:
        rows = store.execute("SELECT step, count(*) FROM step_status GROUP BY step")
    return dict(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="tiny-test")
    parser.add_argument("--a", default="0,0.5,1,2")
    parser.add_argument("--losses", default="sft")
    parser.add_argument("--backend", default="hf")
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="east-bench-prefect-"))
    from prefect.testing.utilities import prefect_test_harness

    from flows.self_train import self_train
    from flows.sweep import sweep, sweep_configs

    grid = SweepGrid(a_values=[float(v) for v in args.a.split(",")], losses=args.losses.split(","), seeds=[0])
    overrides = {"backend": {"engine": args.backend}}
    root = Path(tempfile.mkdtemp(prefix="east-bench-sweep-"))
    with prefect_test_harness(server_startup_timeout=180):
        t0 = time.time()
        sweep("bench", grid, args.preset, 1, root / "sweep", overrides)
        swept = time.time() - t0
        separate = []
        for i, (_, cfg) in enumerate(sweep_configs("bench", grid, args.preset, 1, root / "sweep", overrides)):
            cfg = cfg.model_copy(update={"data_dir": root / f"point-{i}"})
            t0 = time.time()
            self_train(cfg)
            separate.append(time.time() - t0)
    steps_sweep = computed_steps(root / "sweep")
    steps_separate: dict[str, int] = {}
    for i in range(len(separate)):
        for step, n in computed_steps(root / f"point-{i}").items():
            steps_separate[step] = steps_separate.get(step, 0) + n
    lines = [f"{len(separate)} points ({args.preset}, backend {args.backend}, a={args.a}, losses={args.losses})",
             f"sweep, one store:          {swept:8.1f} s",
             f"separately, fresh stores:  {sum(separate):8.1f} s  ({', '.join(f'{s:.0f}' for s in separate)})",
             f"ratio separate / sweep:    {sum(separate) / swept:8.2f}x",
             "steps computed (sweep | separately):",
             *(f"  {step:24s} {steps_sweep.get(step, 0):4d} | {steps_separate[step]:4d}"
               for step in sorted(steps_separate))]
    record("sweep-reuse", "A sweep in one store vs its points run separately", lines)


if __name__ == "__main__":
    main()
