"""Fixed n against the adaptive sampling budget (`sampling.adaptive`), side by side in one run and one store.

    .venv/bin/python bench/round_cost.py [--data-dir data/round-cost] [--seeds 0,1,2] [--preset tiny] [--rounds 3]
                                         [--n0 4] [--no-stop-none-correct] [--max-n M] [--backend hf]

Per seed, the preset runs `--rounds` rounds with n samples per pool question, then again with the adaptive budget
(same seeds, same store: the base model's evaluation is shared, and the engine stays up between runs). Per arm and
round, over seeds: the pool's samples (both passes, adaptive), its generation seconds (the pool steps' wall time as
computed), the kept training rows and samples per kept row, then the final round's greedy test accuracy and the
paired difference adaptive - fixed over seeds with its 95 % Student-t half-width (`report.statistics`). Last line:
`fixed_samples=F adaptive_samples=A saved=S paired_test=D hw=H` (F, A: the pool's samples per round, mean over rounds
and seeds; S: the share saved; D, H: points).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import pandas as pd
from benchmarks import record

from east_tasks.config import ExperimentConfig, load_config
from east_tasks.engines.generation import release_generator
from east_tasks.report.statistics import mean_and_ci
from east_tasks.store import Store

ARMS = ("fixed", "adaptive")
POOL_STEPS = r"^(generate|top up) pool round (\d+)$"


def configs(args: argparse.Namespace, seed: int) -> dict[str, ExperimentConfig]:
    """The two arms of one seed: the seed sets sampling, selection and training, as a sweep's does."""
    budget = {"adaptive": True, "n0": args.n0, "stop_none_correct": args.stop_none_correct, "max_n": args.max_n}
    backend = {"engine": args.backend} if args.backend else {}
    return {arm: load_config(args.preset, experiment=f"round-cost-{arm}-s{seed}", rounds=args.rounds,
                             data_dir=args.data_dir, backend=backend, weighting={"seed": seed},
                             train={"seed": seed}, sampling={"seed": seed, **(budget if arm == "adaptive" else {})})
            for arm in ARMS}


def measured(store: Store, experiments: list[str]) -> pd.DataFrame:
    """Per experiment and round: the pool's samples, its generation seconds (as computed, by whichever run computed
    the steps: a run finds another's steps by key), whether this run computed them, kept rows and test accuracy."""
    rounds = store.query("SELECT r.experiment, r.round, r.n_kept, e.greedy_acc, (SELECT count(*) FROM generations g "
                         "WHERE g.gen_key = r.gen_key) AS samples FROM experiment_rounds r LEFT JOIN evaluations e "
                         "USING (eval_key) WHERE r.round > 0 AND list_contains(?, r.experiment)", [experiments])
    steps = store.query("SELECT r.experiment, r.round, s.step, s.wall_s, s.experiment = r.experiment AS computed "
                        "FROM experiment_rounds r JOIN step_status s ON list_contains(from_json(r.step_keys, "
                        "'[\"VARCHAR\"]'), s.step_key) WHERE r.round > 0 AND list_contains(?, r.experiment)",
                        [experiments])
    pool = steps[steps.step.str.fullmatch(POOL_STEPS)].groupby(["experiment", "round"])
    gen = pool.agg(gen_s=("wall_s", "sum"), computed=("computed", "all")).reset_index()
    return rounds.merge(gen, on=["experiment", "round"], how="left")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("data/round-cost"))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--preset", default="tiny")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n0", type=int, default=4)
    parser.add_argument("--stop-none-correct", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--max-n", type=int, default=None)
    parser.add_argument("--backend", choices=["vllm", "hf"], default=None, help="default: the preset's")
    args = parser.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="east-bench-prefect-"))
    from prefect.testing.utilities import prefect_test_harness

    from flows.self_train import self_train

    names = {}
    with prefect_test_harness(server_startup_timeout=180):
        try:
            for seed in seeds:
                for arm, cfg in configs(args, seed).items():
                    self_train(cfg, keep_engine=True)
                    names[cfg.experiment] = (arm, seed)
        finally:
            release_generator()
    with Store(args.data_dir / "east.duckdb") as store:
        df = measured(store, list(names))
    df[["arm", "seed"]] = [names[e] for e in df.experiment]
    df["per_row"] = df.samples / df.n_kept.where(df.n_kept > 0)
    table = df.groupby(["arm", "round"], sort=False)[["samples", "gen_s", "n_kept", "per_row", "greedy_acc"]].mean()
    final = df[df["round"] == args.rounds].pivot(index="seed", columns="arm", values="greedy_acc")
    diff, hw, n = mean_and_ci(final.adaptive - final.fixed)
    per_round = df.groupby("arm").samples.mean()
    fixed, adaptive = per_round["fixed"], per_round["adaptive"]
    cfg = configs(args, seeds[0])["adaptive"]
    found = df[~df.computed.astype(bool)].groupby("arm").size().to_dict()
    lines = [f"{args.preset}, {args.rounds} rounds, seeds {args.seeds}, backend {cfg.backend.engine}; fixed n = "
             f"{cfg.sampling.n}, adaptive n0 = {args.n0}, stop_none_correct = {args.stop_none_correct}, max_n = "
             f"{args.max_n}; means over seeds",
             "pools found in the store, computed by an earlier run (their generation seconds are as it measured "
             "them): " + (", ".join(f"{arm} {k} of {len(df[df.arm == arm])}" for arm, k in found.items()) or "none"),
             "arm      | round | pool samples | generation s | kept rows | samples / kept row | test greedy",
             *(f"{arm:8s} | {r:5d} | {t.samples:12.0f} | {t.gen_s:12.1f} | {t.n_kept:9.0f} | {t.per_row:18.2f} | "
               f"{t.greedy_acc:.4f}" for (arm, r), t in table.iterrows()),
             "final round test greedy per seed (fixed | adaptive): " + ", ".join(
                 f"s{s} {row.fixed:.4f} | {row.adaptive:.4f}" for s, row in final.iterrows()),
             f"paired adaptive - fixed over {n} seeds: {100 * diff:+.2f} points, 95% half-width {100 * hw:.2f}",
             f"fixed_samples={fixed:.0f} adaptive_samples={adaptive:.0f} saved={1 - adaptive / fixed:.1%} "
             f"paired_test={100 * diff:+.2f} hw={100 * hw:.2f}"]
    record("round-cost", "Fixed n against the adaptive sampling budget", lines)


if __name__ == "__main__":
    main()
