"""What Prefect costs: the `self-train` flow vs the same `east_tasks.steps` calls made directly, side by side.

    .venv/bin/python bench/flow_overhead.py [--preset tiny-test] [--rounds 2] [--repeats 2]

Each way runs the whole experiment (data, backbone evaluation, rounds of sample / weight / train / evaluate)
into a fresh store, alternating, with the sampling engine already up; the last repeat of each is reported.
The flow also publishes its artifacts and plots, which is part of what it costs. Target: <= 15 % overhead.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from benchmarks import record

from east_tasks import steps
from east_tasks.config import ExperimentConfig, load_config
from east_tasks.engines.generation import get_generator, release_generator


def direct(cfg: ExperimentConfig) -> None:
    """The flow's steps, in its order, without Prefect (flows/self_train.py)."""
    steps.preflight(cfg)
    dataset_key = steps.prepare_data(cfg).key
    steps.ensure_backbone(cfg)
    model = steps.model_ref(cfg.base_model)
    steps.record_round(cfg, 0, model, steps.evaluate_model(cfg, model, dataset_key).value)
    s = cfg.sampling
    for r in range(1, cfg.rounds + 1):
        gen_key = steps.generate(cfg, model, dataset_key, "pool", steps.pool_spec(cfg), s.seed + r,
                                 f"generate pool round {r}").key
        weight_key = steps.select_and_weight(cfg, gen_key, dataset_key, model).key
        trained = steps.train(cfg, model, weight_key, r)
        evals = steps.evaluate_model(cfg, trained.value, dataset_key).value
        steps.record_round(cfg, r, trained.value, evals, gen_key, weight_key, trained.key)
        model = trained.value


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="tiny-test")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="east-bench-prefect-"))
    from prefect.testing.utilities import prefect_test_harness

    from flows.self_train import self_train

    root = Path(tempfile.mkdtemp(prefix="east-bench-overhead-"))
    seconds: dict[str, float] = {}
    with prefect_test_harness(server_startup_timeout=180):
        cfg0 = load_config(args.preset)
        get_generator(cfg0.base_model, cfg0.backend)  # the engine is up before either way is timed
        for i in range(args.repeats):
            for way in ("flow", "direct"):
                cfg = load_config(args.preset, experiment="overhead", rounds=args.rounds,
                                  data_dir=root / f"{way}-{i}")
                t0 = time.perf_counter()
                self_train(cfg, keep_engine=True) if way == "flow" else direct(cfg)
                seconds[way] = time.perf_counter() - t0
                print(f"repeat {i + 1} {way}: {seconds[way]:.1f} s", flush=True)
        release_generator()
    overhead = seconds["flow"] / seconds["direct"] - 1
    lines = [f"{args.preset}, {args.rounds} rounds, fresh store each, engine up beforehand (last of {args.repeats})",
             f"direct east_tasks calls {seconds['direct']:7.1f} s",
             f"self-train flow         {seconds['flow']:7.1f} s",
             f"flow overhead {100 * overhead:+.1f} % (target <= 15 %)"]
    record("flow-overhead", "Prefect flow vs the same east_tasks calls made directly", lines)


if __name__ == "__main__":
    main()
