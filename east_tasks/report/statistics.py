"""Pure summaries of result frames: a sweep's settings over seeds, paired differences with Student-t intervals,
what a round's selection kept, accuracy gained per unit of compute. No store, no files."""

from __future__ import annotations

import numpy as np
import pandas as pd

SETTING = ["loss", "strategy", "mapping", "a", "band"]  # the config fields a sweep varies; seeds repeat a setting
METRICS = ["greedy_acc", "pass1", "maj_acc", "pass_acc"]


def setting_name(r) -> str:
    """A sweep setting as tables and legends name it, e.g. "SFT entropy power a=1"."""
    weighting = "vanilla" if r.a == 0 else f"{r.strategy} {r.mapping} a={r.a:g}"
    band = getattr(r, "band", "")
    return f"{r.loss.upper()} {weighting}" + (f" band {band}" if band else "")


def is_vanilla(df: pd.DataFrame) -> pd.Series:
    """Plain self-training: uniform weights (a = 0) and every pass rate kept (no band)."""
    return (df.a == 0) & (with_band(df).band == "")


def with_band(df: pd.DataFrame) -> pd.DataFrame:
    """`df` with a `band` column: a frame of points from before bands were swept has none (every rate kept)."""
    return df if "band" in df else df.assign(band="")


def final_round(df: pd.DataFrame) -> pd.DataFrame:
    """Each experiment's last round, for experiments that reached the sweep's last round (others are unfinished)."""
    df = with_band(df)
    last = df[df["round"] == df.groupby("experiment")["round"].transform("max")]
    return last[last["round"] == df["round"].max()]


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Final-round test accuracy per setting: mean and std over seeds (std with ddof=1; NaN for one seed)."""
    final = final_round(df)
    out = final.groupby(SETTING)[METRICS].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    if "val_greedy_acc" in final:
        out["val_greedy_acc_mean"] = final.groupby(SETTING).val_greedy_acc.mean()
    out["seeds"] = final.groupby(SETTING).seed.nunique()
    out["rounds"] = final.groupby(SETTING)["round"].max()
    out["greedy_per_seed"] = final.sort_values("seed").groupby(SETTING).greedy_acc.agg(tuple)
    out = out.reset_index().assign(weighted=lambda d: d.a != 0)  # per loss: vanilla first, then each weighting
    return out.sort_values(["loss", "weighted", *SETTING[1:]], ignore_index=True).drop(columns="weighted")


def best_on_validation(summary: pd.DataFrame) -> dict | None:
    """The weighted (a != 0) setting with the highest mean final-round validation accuracy: where a sweep's
    choice of `a` (and mapping) is made, never on test. None when there is no validation split or no such point."""
    if "val_greedy_acc_mean" not in summary:
        return None
    weighted = summary[~is_vanilla(summary) & summary.val_greedy_acc_mean.notna()]
    if weighted.empty:
        return None
    best = weighted.loc[weighted.val_greedy_acc_mean.idxmax()]
    return {k: (float(best[k]) if k == "a" else best[k]) for k in SETTING} | {"val_greedy_acc": float(
        best.val_greedy_acc_mean)}


def paired_differences(df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Final-round greedy accuracy of each setting minus its reference, seed by seed, on test and validation.

    The reference is vanilla of the same loss for a weighted or banded setting, and SFT vanilla for DPO / KTO
    vanilla.
    Pairing by seed compares runs that share the first round's pool samples, selection and data order, so
    their noise largely cancels; the interval is Student's t over the per-seed differences."""
    final = final_round(df).assign(weighted=lambda d: ~is_vanilla(d))
    vanilla = final[~final.weighted].set_index(["loss", "seed"])
    rows = []
    for keys, group in final.groupby(SETTING):
        setting = dict(zip(SETTING, keys, strict=True))
        treated = setting["a"] != 0 or setting["band"] != ""
        ref_loss = setting["loss"] if treated else "sft"
        if not treated and ref_loss == setting["loss"]:
            continue
        row = {**setting, "reference": f"{ref_loss.upper()} vanilla"}
        for metric, name in (("greedy_acc", "test"), ("val_greedy_acc", "val")):
            mine = group.set_index("seed")[metric]
            ref = vanilla.xs(ref_loss, level="loss")[metric] if ref_loss in vanilla.index.get_level_values(0) else None
            diffs = (mine - ref).dropna() if ref is not None else pd.Series(dtype=float)
            row |= _diff_columns(name, diffs, confidence)
        rows.append(row)
    columns = [*SETTING, "reference", *(f"{m}_{x}" for m in ("test", "val") for x in ("diff", "ci", "seeds"))]
    return pd.DataFrame(rows, columns=columns)


def mean_and_ci(diffs: pd.Series, confidence: float = 0.95) -> tuple[float, float, int]:
    """Mean of paired differences, the half-width of its Student-t interval (NaN below two), and their count."""
    from scipy import stats

    n = len(diffs)
    half = stats.t.ppf(0.5 + confidence / 2, n - 1) * diffs.std(ddof=1) / np.sqrt(n) if n > 1 else np.nan
    return (diffs.mean() if n else np.nan), half, n


def _diff_columns(name: str, diffs: pd.Series, confidence: float) -> dict:
    mean, half, n = mean_and_ci(diffs, confidence)
    return {f"{name}_diff": mean, f"{name}_ci": half, f"{name}_seeds": n}


def paired_by_round(df: pd.DataFrame, ref: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Round by round, each setting of sweep `df` minus the same setting and seed of sweep `ref` (greedy accuracy
    on test and validation): two sweeps that differ in one config field, compared with their noise paired."""
    on = [*SETTING, "seed", "round"]
    df, ref = with_band(df), with_band(ref)
    both = df.merge(ref, on=on, suffixes=("", "_ref"))
    rows = []
    for keys, group in both.groupby([*SETTING, "round"]):
        row = dict(zip([*SETTING, "round"], keys, strict=True))
        for metric, name in (("greedy_acc", "test"), ("val_greedy_acc", "val")):
            row |= _diff_columns(name, (group[metric] - group[f"{metric}_ref"]).dropna(), confidence)
        rows.append(row)
    return pd.DataFrame(rows)


def selection_summary(stats: pd.DataFrame, examples: pd.DataFrame) -> dict:
    """What the select+weight step did to one round's pool: why questions were dropped, the weights' spread."""
    reasons = stats.drop_reason.fillna("kept").value_counts()
    kept = stats[stats.drop_reason.isna()]
    return {
        "questions": len(stats),
        **{f"n_{k}": int(v) for k, v in reasons.items()},
        "entropy_kept_mean": float(kept.entropy.mean()) if len(kept) else None,
        "entropy_kept_median": float(kept.entropy.median()) if len(kept) else None,
        "weight_min": float(examples.weight.min()) if len(examples) else None,
        "weight_max": float(examples.weight.max()) if len(examples) else None,
    }


def cost_summary(costs: pd.DataFrame, settings: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per experiment (or, given `settings` with experiment -> setting, per setting, mean over seeds): accuracy
    gained over the backbone by the last round, the self-training rounds' compute, and points per hour."""
    last = costs.sort_values("round").groupby("experiment").tail(1).set_index("experiment")
    base = costs[costs["round"] == 0].set_index("experiment").greedy_acc
    out = pd.DataFrame({
        "rounds": last["round"], "gain_points": 100 * (last.greedy_acc - base.reindex(last.index)),
        "cpu_h": last.cpu_h_cum, "gpu_h": last.gpu_h_cum, "wall_h": last.wall_h_cum,
        "tokens_generated": costs[costs["round"] > 0].groupby("experiment").tokens_generated.sum(),
        "tokens_trained": costs[costs["round"] > 0].groupby("experiment").tokens_trained.sum(),
        "costed": costs.groupby("experiment").costed.all()}).reset_index()
    if settings is not None:
        out = out.merge(settings, on="experiment").groupby("setting", sort=False).agg(
            rounds=("rounds", "max"), seeds=("experiment", "count"), gain_points=("gain_points", "mean"),
            cpu_h=("cpu_h", "mean"), gpu_h=("gpu_h", "mean"), wall_h=("wall_h", "mean"),
            tokens_generated=("tokens_generated", "mean"), tokens_trained=("tokens_trained", "mean"),
            costed=("costed", "all")).reset_index()
    hours = np.where(out.gpu_h > 0, out.gpu_h, out.cpu_h)
    out["points_per_hour"] = np.where(hours > 0, out.gain_points / np.where(hours > 0, hours, 1), np.nan)
    out["per"] = np.where(out.gpu_h > 0, "GPU-hour", "CPU-hour")
    return out


def choose_on_validation(summary: pd.DataFrame, diffs: pd.DataFrame) -> dict | None:
    """The setting with the highest mean final-round validation accuracy, vanilla included (a rule must beat doing
    nothing), with its test accuracy and its paired differences to vanilla: test is reported, never used."""
    if "val_greedy_acc_mean" not in summary or summary.val_greedy_acc_mean.isna().all():
        return None
    best = summary.loc[summary.val_greedy_acc_mean.idxmax()]
    setting = {k: (float(best[k]) if k == "a" else best[k]) for k in SETTING}
    out = setting | {"setting": setting_name(best), "validation": float(best.val_greedy_acc_mean),
                     "test": float(best.greedy_acc_mean), "seeds": int(best.seeds)}
    match = diffs
    for k in SETTING:
        match = match[match[k] == setting[k]]
    if len(match):
        d = match.iloc[0]
        out |= {"reference": d.reference, **{f"paired_{m}{x}": (None if pd.isna(d[f"{m}_{y}"]) else
                                                                float(d[f"{m}_{y}"]) * (100 if y != "seeds" else 1))
                                             for m in ("test", "val") for x, y in (("", "diff"), ("_hw", "ci"),
                                                                                  ("_seeds", "seeds"))}}
    return out
