"""The store reads behind every report: each builds a DataFrame (a round's `by_tier` as dicts, pass@k / maj@k at
the k its configuration reports, a sweep's finished rounds, the monitor, the compute each round cost)."""

from __future__ import annotations

import json
from collections.abc import Iterable

import pandas as pd

from east_tasks.config import EvalConfig, default_ks
from east_tasks.cost import COST_FIELDS
from east_tasks.report.statistics import SETTING, final_round, setting_name
from east_tasks.store import Store

SAMPLED_AT_K = ("pass_at_k", "maj_at_k")


def reported_ks(config: str | None, n: int) -> tuple[int, ...]:
    """The k of pass@k / maj@k a round's recorded configuration reports (eval.ks; eval.k, the old name of eval.n,
    read as n); the default for n where no configuration today's fields can read was recorded."""
    try:
        return EvalConfig.model_validate(json.loads(config)["eval"]).ks
    except (TypeError, KeyError, ValueError):
        return default_ks(n)


def _at_ks(stored: str | dict | None, ks: tuple[int, ...]) -> dict[int, float]:
    """{k: value} for the reported k the store has ({"k": value} for every k in 1..n; only n in a row from
    before schema 3 that no run has reached again)."""
    values = json.loads(stored) if isinstance(stored, str) else (stored or {})
    return {k: values[str(k)] for k in ks if str(k) in values}


def _with_tiers(df: pd.DataFrame) -> pd.DataFrame:
    """`by_tier` as dicts (DuckDB returns the JSON column as text)."""
    df["by_tier"] = [json.loads(b) if isinstance(b, str) else (b or {}) for b in df.by_tier]
    return df


def _with_sampled(df: pd.DataFrame) -> pd.DataFrame:
    """pass@k and maj@k at the k the round's configuration reports, overall and in each tier (`by_tier`)."""
    ks = [reported_ks(c, 0 if pd.isna(n) else int(n)) for c, n in zip(df.config, df.k, strict=True)]
    for col in SAMPLED_AT_K:
        df[col] = [_at_ks(v, k) for v, k in zip(df[col], ks, strict=True)]
    df["by_tier"] = [{t: m | {c: _at_ks(m[c], k) for c in SAMPLED_AT_K if c in m} for t, m in b.items()}
                     for b, k in zip(df.by_tier, ks, strict=True)]
    return df


def round_results(store: Store, experiment: str) -> pd.DataFrame:
    """An experiment's rounds, one row each, as every report reads them: `by_tier` as dicts, pass@k and maj@k at
    the k each round's own configuration reports, the share of its training rows right by luck."""
    df = _with_sampled(_with_tiers(store.round_table(experiment)))
    return _with_lucky(store, df)


def rejected_records(store: Store, experiment: str) -> list[dict]:
    """The rounds the guard rejected and no later run accepted, as `to_records` gives rounds, each with `rejected`:
    the line its run stopped with (what fell, from what to what)."""
    df = _with_lucky(store, _with_sampled(_with_tiers(store.rejected_round_table(experiment))))
    return [{**r, "rejected": reason} for r, reason in zip(to_records(df), df.reason, strict=True)]


def _with_lucky(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """`lucky_share` (the share of the round's training rows right by luck: the answer right, the steps not) and
    `lucky_by_tier`; None where no row's steps were checked (real data)."""
    keys = [k for k in df.weight_key.dropna().unique()]
    lucky = store.lucky_shares(keys) if keys else pd.DataFrame(columns=["weight_key", "tier", "lucky_share"])
    overall = lucky[lucky.tier == "all"].set_index("weight_key").lucky_share
    by_tier = {k: dict(zip(g.tier, g.lucky_share, strict=True)) for k, g in lucky[lucky.tier != "all"].groupby(
        "weight_key")}
    df["lucky_share"] = [overall.get(k) for k in df.weight_key]
    df["lucky_by_tier"] = [by_tier.get(k) for k in df.weight_key]
    return df


def to_records(df: pd.DataFrame) -> list[dict]:
    """One dict per round. `k` is the samples per test question (eval.n); maj_acc and pass_acc are maj@n and
    pass@n; pass1 ± pass1_se is sampled pass@1, pass_at_k and maj_at_k {k: value} at eval.ks; lucky_share the share
    of the round's training rows right by luck (lucky_by_tier {tier: share})."""
    cols = ["round", "greedy_acc", "maj_acc", "pass_acc", "val_greedy_acc", "k", "n_questions", "n_kept", "by_tier",
            "model_hash", "pool_pass_at_n", "pool_balance", "label_accuracy", "pass1", "pass1_se", *SAMPLED_AT_K,
            "lucky_share", "lucky_by_tier"]
    records = df[cols].astype(object).to_dict("records")
    return [{c: None if not isinstance(v, dict) and pd.isna(v) else v for c, v in r.items()} for r in records]


def sampled_ks(df: pd.DataFrame) -> list[int]:
    """The k of pass@k / maj@k some round reports."""
    return sorted({k for d in df.pass_at_k for k in d} | {k for d in df.maj_at_k for k in d})


def tiers(by_tier: Iterable[dict]) -> list[str]:
    """The difficulty tiers present in some `by_tier` results, in numeric order."""
    return sorted({t for b in by_tier for t in b}, key=lambda t: (len(t), t))


def monitor_rounds(store: Store, experiments: list[str]) -> pd.DataFrame:
    """The monitor rows (every tier) of each round of `experiments`: round r's are of the pool the model of round
    r - 1 sampled, and of what the round's selection accepted from it."""
    return store.monitor_rounds(experiments)


def sweep_monitor(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """`monitor_rounds` for a sweep's rounds, with each one's setting and seed."""
    rows = monitor_rounds(store, list(df.experiment.unique()))
    points = df.drop_duplicates("experiment")[["experiment", "seed", *SETTING]]
    out = rows.merge(points, on="experiment")
    return out.assign(setting=[setting_name(r) for r in out.itertuples(index=False)])


def sweep_probes(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """Auto-balance's probes (every candidate of every round) of a sweep's experiments."""
    return store.balance_probes_of(list(df.experiment.unique()))


def pool_entropy_by_round(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """Answer entropy (bits) of the pool questions each round sampled, vanilla and EAST settings, pooled over
    seeds: whether weighting has a signal, round after round. Settings that sampled the very same pools (every
    setting's round 1, one pool per seed) share one row."""
    rounds = df[(df["round"] >= 1) & ((df.a == 0) | (df.strategy == "entropy"))].dropna(subset=["gen_key"])
    if rounds.empty:
        return pd.DataFrame()
    stats = store.pool_entropies(rounds.gen_key.unique().tolist())
    rows, seen = [], {}
    for keys, group in rounds.groupby([*SETTING, "round"]):
        pools = frozenset(group.gen_key)
        if pools in seen:
            seen[pools]["settings"] += 1
            continue
        h = stats[stats.gen_key.isin(pools)].entropy
        seen[pools] = {"setting": setting_name(pd.Series(dict(zip([*SETTING, "round"], keys, strict=True)))),
                       "round": keys[-1], "settings": 1, "seeds": len(pools), "questions": len(h),
                       "mean": h.mean(), "median": h.median(), "above_zero": (h > 0).mean(), "p90": h.quantile(0.9)}
        rows.append(seen[pools])
    return pd.DataFrame(rows).sort_values(["round", "setting"], ignore_index=True)


def sweep_results(store: Store, sweep: str) -> tuple[pd.DataFrame, list[str]]:
    """Every round of the sweep's finished experiments (with per-tier columns), and the unfinished ones' names."""
    df = _with_tiers(store.sweep_table(sweep))
    df["band"] = [json.dumps(json.loads(b)).replace(" ", "") if isinstance(b, str) else ""
                  for b in df.keep_pass_rate]
    if df.empty:
        raise ValueError(f"no results for sweep {sweep!r}")
    finished = set(final_round(df).experiment)
    return df[df.experiment.isin(finished)], sorted(set(df.experiment) - finished)


def round_costs(store: Store, experiments: list[str]) -> pd.DataFrame:
    """Per experiment and round: greedy test accuracy and what the round's steps cost (each step's cost as it
    was computed, also when this round found it cached: a sweep point is charged the shared pool it needs),
    with cumulative hours. `costed` is False where a step has no recorded cost (stores from before costs)."""
    rounds = store.round_steps(experiments)
    steps = store.step_costs()
    rows = []
    for r in rounds.itertuples(index=False):
        keys = json.loads(r.step_keys) if isinstance(r.step_keys, str) else []
        mine = steps[steps.step_key.isin(keys)]
        rows.append({"experiment": r.experiment, "round": r.round, "greedy_acc": r.greedy_acc,
                     "costed": bool(keys) and len(mine) == len(set(keys)) and mine.cpu_s.notna().all(),
                     **{f: float(mine[f].fillna(0).sum()) for f in COST_FIELDS}})
    df = pd.DataFrame(rows, columns=["experiment", "round", "greedy_acc", "costed", *COST_FIELDS])
    for unit in ("wall", "cpu", "gpu"):
        df[f"{unit}_h_cum"] = df[df["round"] > 0].groupby("experiment")[f"{unit}_s"].cumsum() / 3600
    df.loc[df["round"] == 0, ["wall_h_cum", "cpu_h_cum", "gpu_h_cum"]] = 0.0
    return df
