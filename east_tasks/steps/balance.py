"""B-STaR's auto-balance: probe the pool with each candidate temperature (and sample count), score each
candidate's balance under the round's selection, and sample the round with the best."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from east_tasks.config import ExperimentConfig
from east_tasks.core.monitor import best_candidate
from east_tasks.core.selection import monitor_selection
from east_tasks.engines.generation import SampleSpec
from east_tasks.errors import UserError
from east_tasks.steps import keys
from east_tasks.steps.generation import generate
from east_tasks.steps.model import ModelRef
from east_tasks.steps.runner import Output, Step, StepContext, StepResult, run_step
from east_tasks.steps.selection import POOL, label_pool
from east_tasks.store import Store

_MONITORED = ("questions", "pass_at_n", "distinct_correct", "precision", "recall", "balance")


def pool_spec(cfg: ExperimentConfig) -> SampleSpec:
    s = cfg.sampling
    return SampleSpec(s.n, s.temperature, s.top_p, s.max_tokens)


def choose_sampling(cfg: ExperimentConfig, parent: ModelRef, dataset_key: str,
                    round_: int) -> StepResult[tuple[SampleSpec, list[str]]]:
    """`balance.auto`: the round's sampling, and the probes' generation keys (their cost is the round's), chosen
    in steps: the first `balance.probe_size` pool questions sampled with every candidate (cached generations like
    any other), and the choice, which goes to `balance_probes` with every candidate's monitor."""
    b, base = cfg.balance, pool_spec(cfg)
    candidates = [replace(base, n=n, temperature=t) for n in b.sample_counts or (base.n,) for t in b.temperatures]
    probes = [generate(cfg, parent, dataset_key, POOL, spec, cfg.sampling.seed + round_,
                       f"probe pool round {round_} T={spec.temperature:g} n={spec.n}", limit=b.probe_size)
              for spec in candidates]
    key = keys.balance_key(cfg.experiment, round_, [p.key for p in probes], keys.weighting_fields(cfg.weighting),
                           b.target_correct)

    def compute(ctx: StepContext) -> Output[int]:
        rows = []
        for spec, probe in zip(candidates, probes, strict=True):
            with ctx.store() as store:
                gens, problems = store.generation_rows(probe.key, text="hash"), store.problems(dataset_key, POOL)
            labelled, problems = label_pool(cfg, gens, problems)
            overall = monitor_selection(labelled, problems, b.target_correct).iloc[0]
            rows.append({"experiment": cfg.experiment, "round": round_, "temperature": spec.temperature, "n": spec.n,
                         "gen_key": probe.key, **{c: overall[c] for c in _MONITORED}})
        scores = pd.DataFrame(rows)
        if scores.balance.isna().all():
            raise UserError(f"balance.auto: the {b.probe_size} probed pool questions have no gold answers, and the "
                            "balance score needs them; label gold on some of the pool, or leave balance.auto off")
        best = best_candidate(scores)
        scores["chosen"] = np.arange(len(scores)) == best

        def write(store: Store) -> None:
            store.execute("DELETE FROM balance_probes WHERE experiment = ? AND round = ?", [cfg.experiment, round_])
            store.insert_df("balance_probes", scores)

        return Output(write, {"chosen": best}, value=best)

    def chosen(store: Store) -> tuple[int, dict]:
        best = store.step_detail(key)["chosen"]
        return best, {"chosen": best}

    choice = run_step(cfg, Step(f"auto-balance round {round_}", key, compute, load=chosen))
    return StepResult.of("auto-balance", [*probes, choice], (candidates[choice.value], [p.key for p in probes]))
