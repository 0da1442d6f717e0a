"""Per-round results as a table, Markdown and a PNG plot (read from the store, written beside it)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from east_tasks.config import EvalConfig, default_ks
from east_tasks.cost import COST_FIELDS
from east_tasks.io import atomic_write
from east_tasks.store import Store


def _with_tiers(df: pd.DataFrame) -> pd.DataFrame:
    """`by_tier` as dicts (DuckDB returns the JSON column as text)."""
    df["by_tier"] = [json.loads(b) if isinstance(b, str) else (b or {}) for b in df.by_tier]
    return df


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


def _with_sampled(df: pd.DataFrame) -> pd.DataFrame:
    """pass@k and maj@k at the k the round's configuration reports, overall and in each tier (`by_tier`)."""
    ks = [reported_ks(c, 0 if pd.isna(n) else int(n)) for c, n in zip(df.config, df.k, strict=True)]
    for col in SAMPLED_AT_K:
        df[col] = [_at_ks(v, k) for v, k in zip(df[col], ks, strict=True)]
    df["by_tier"] = [{t: m | {c: _at_ks(m[c], k) for c in SAMPLED_AT_K if c in m} for t, m in b.items()}
                     for b, k in zip(df.by_tier, ks, strict=True)]
    return df


def round_results(store: Store, experiment: str) -> pd.DataFrame:
    return _with_sampled(_with_tiers(store.round_table(experiment)))


def to_records(df: pd.DataFrame) -> list[dict]:
    """One dict per round. `k` is the samples per test question (eval.n); maj_acc and pass_acc are maj@n and
    pass@n; pass1 ± pass1_se is sampled pass@1, pass_at_k and maj_at_k {k: value} at eval.ks."""
    cols = ["round", "greedy_acc", "maj_acc", "pass_acc", "val_greedy_acc", "k", "n_questions", "n_kept", "by_tier",
            "model_hash", "pool_pass_at_n", "pool_balance", "label_accuracy", "pass1", "pass1_se", *SAMPLED_AT_K]
    records = df[cols].astype(object).to_dict("records")
    return [{c: None if not isinstance(v, dict) and pd.isna(v) else v for c, v in r.items()} for r in records]


def fmt(v: float | None) -> str:
    """An accuracy for a table; "-" where there is none (maj@k / pass@k of a greedy-only evaluation)."""
    return "-" if v is None or pd.isna(v) else f"{v:.3f}"


def fmt_se(v: float | None, se: float | None) -> str:
    """An accuracy and its standard error, e.g. sampled pass@1: "0.512 ± 0.031"."""
    return fmt(v) + ("" if se is None or pd.isna(se) or fmt(v) == "-" else f" ± {se:.3f}")


def sampled_ks(df: pd.DataFrame) -> list[int]:
    """The k of pass@k / maj@k some round reports."""
    return sorted({k for d in df.pass_at_k for k in d} | {k for d in df.maj_at_k for k in d})


def tiers(by_tier: Iterable[dict]) -> list[str]:
    """The difficulty tiers present in some `by_tier` results, in numeric order."""
    return sorted({t for b in by_tier for t in b}, key=lambda t: (len(t), t))


def to_markdown(df: pd.DataFrame, experiment: str) -> str:
    """Greedy accuracy overall and by tier; from the n samples per question (column n), sampled pass@1 ± its
    standard error, pass@k and maj@k at eval.ks."""
    names, ks = tiers(df.by_tier), sampled_ks(df)
    sampled = [("pass_at_k", k) for k in ks if k > 1] + [("maj_at_k", k) for k in ks]
    header = ["round", "greedy", *(f"tier {t}" for t in names), "pass@1 ± SE",
              *(f"{col.split('_')[0]}@{k}" for col, k in sampled), "n", "kept questions"]
    lines = [f"### {experiment}: test accuracy per round", "", "| " + " | ".join(header) + " |",
             "|---" * len(header) + "|"]
    for r in df.itertuples(index=False):
        cells = ["backbone" if r.round == 0 else f"round {r.round}", f"{r.greedy_acc:.3f}",
                 *(fmt(r.by_tier.get(t, {}).get("greedy_acc")) for t in names), fmt_se(r.pass1, r.pass1_se),
                 *(fmt(getattr(r, col).get(k)) for col, k in sampled), str(r.k),
                 "-" if pd.isna(r.n_kept) else str(int(r.n_kept))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _new_axes():
    """A figure on the headless Agg backend (matplotlib is imported only when a plot is made)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt.subplots(figsize=(5, 3.5))


def _label(ax, xlabel: str, ylabel: str, title: str, legend_size: float | None = None) -> None:
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)


def _save_png(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(path)


def plot_rounds(df: pd.DataFrame, experiment: str, path: Path) -> Path:
    """Greedy and sampled pass@1 (± its standard error) per round beside each other, maj@n and pass@n of the n
    samples, and greedy accuracy of each difficulty tier (dotted)."""
    fig, ax = _new_axes()
    ax.plot(df["round"], df.greedy_acc, marker="o", label="greedy")
    if df.pass1.notna().any():  # the sampled metrics only where n > 0
        ax.errorbar(df["round"], df.pass1, yerr=df.pass1_se.fillna(0), marker="o", capsize=3, label="pass@1 ± SE")
    n = int(df.k.max()) if df.k.notna().any() else 0
    for col, label in (("maj_acc", f"maj@{n}"), ("pass_acc", f"pass@{n}")):
        if df[col].notna().any():
            ax.plot(df["round"], df[col], marker="o", label=label)
    for t in tiers(df.by_tier):
        ax.plot(df["round"], [b.get(t, {}).get("greedy_acc", np.nan) for b in df.by_tier], marker=".",
                linestyle=":", label=f"tier {t} greedy")
    ax.set_xticks(list(df["round"]))
    _label(ax, "self-training round (0 = backbone)", "test accuracy", experiment, legend_size=7)
    return _save_png(fig, path)


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


def selection_markdown(summary: dict, name: str, histogram: Path) -> str:
    rows = [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items()]
    return "\n".join([f"### {name}: training questions", "", "| | |", "|---|---|", *rows, "",
                      embedded_plots({"entropy histogram": histogram})])


def plot_entropy_histogram(stats: pd.DataFrame, title: str, path: Path) -> Path:
    """Answer entropy of every pool question, kept vs dropped (the paper's training-question distribution)."""
    fig, ax = _new_axes()
    kept = stats.drop_reason.isna()
    top = max(float(stats.entropy.max()), 1e-3)
    bins = [top * i / 20 for i in range(21)]
    ax.hist([stats.entropy[kept], stats.entropy[~kept]], bins=bins, stacked=True, label=["kept", "dropped"])
    ax.set_xlabel("answer entropy (bits)")
    ax.set_ylabel("questions")
    ax.set_title(title)
    ax.legend()
    return _save_png(fig, path)


def round_markdown(df: pd.DataFrame, experiment: str, round_: int, selection: dict, plots: dict[str, Path]) -> str:
    """One round for the UI: accuracy beside the previous round's, what was kept and its entropy, plot links."""
    rows = {int(r["round"]): r for r in df.to_dict("records")}
    now, before = rows[round_], rows.get(round_ - 1, {})

    def cell(r: dict, col: str) -> str:
        v = r.get(col)
        return "-" if v is None or pd.isna(v) else (f"{v:.3f}" if isinstance(v, float) else str(int(v)))

    lines = [f"### {experiment}: round {round_}", "", f"| | round {round_} | round {round_ - 1} |", "|---|---|---|",
             f"| greedy accuracy | {cell(now, 'greedy_acc')} | {cell(before, 'greedy_acc')} |"]
    if not pd.isna(now["k"]) and now["k"]:  # n samples per question: pass@1 ± its SE, pass@k and maj@k at eval.ks
        lines.append(f"| pass@1 ± SE ({int(now['k'])} samples) | {fmt_se(now['pass1'], now['pass1_se'])} | "
                     f"{fmt_se(before.get('pass1'), before.get('pass1_se'))} |")
        for col, name in (("pass_at_k", "pass"), ("maj_at_k", "maj")):
            lines += [f"| {name}@{k} | {fmt(v)} | {fmt(before.get(col, {}).get(k))} |" for k, v in now[col].items()
                      if (name, k) != ("pass", 1)]
    lines.append(f"| kept questions | {cell(now, 'n_kept')} | {cell(before, 'n_kept')} |")
    lines += ["", "| training questions | |", "|---|---|"]
    lines += [f"| {name} | {v:.3f} |" if isinstance(v, float) else f"| {name} | {v} |" for name, v in selection.items()]
    return "\n".join([*lines, "", embedded_plots(plots)])


MAX_EMBEDDED_BYTES = 512 * 1024


def embedded_plots(plots: dict[str, Path]) -> str:
    """The PNGs inside the Markdown as data URIs, so an artifact shows them to anyone who can open the run in
    the Prefect UI, not only on the worker's disk; one too large for that is linked by its path instead."""
    lines = []
    for name, path in plots.items():
        data = Path(path).read_bytes()
        if len(data) <= MAX_EMBEDDED_BYTES:
            lines.append(f"![{name}](data:image/png;base64,{base64.b64encode(data).decode()})")
        else:
            lines.append(f"{name}: `{Path(path).resolve()}` ({len(data) // 1024} KB, too large to embed)")
    return "\n\n".join(lines)


# --- exploration / exploitation (east_tasks.core.monitor) ---------------------------------------------------------
_MONITOR_CELLS = (("pass_at_n", "pass@n"), ("distinct_correct", "distinct correct"), ("precision", "precision"),
                  ("recall", "recall"), ("balance", "balance"), ("label_accuracy", "pseudo-label accuracy"))


def monitor_rounds(store: Store, experiments: list[str]) -> pd.DataFrame:
    """The monitor rows (every tier) of each round of `experiments`: round r's are of the pool the model of round
    r - 1 sampled, and of what the round's selection accepted from it."""
    return store.monitor_rounds(experiments)


def _cell(v: object, digits: int = 3) -> str:
    return "-" if v is None or pd.isna(v) else f"{v:.{digits}f}"


def monitor_markdown(rows: pd.DataFrame, title: str) -> str:
    """One round's monitor, overall and by tier."""
    labelled = rows.labelled.notna().any()
    lines = [f"### {title}: exploration and exploitation (B-STaR's monitor)", "",
             "| tier | questions | pass@n | distinct correct | kept | accepted | precision | recall | balance |"
             + (" pseudo-labelled | pseudo-label accuracy |" if labelled else ""),
             "|---" * (11 if labelled else 9) + "|"]
    for r in rows.itertuples(index=False):
        extra = f" {r.labelled} | {_cell(r.label_accuracy)} |" if labelled else ""
        lines.append(f"| {r.tier} | {r.questions} | {_cell(r.pass_at_n)} | {_cell(r.distinct_correct, 2)} | "
                     f"{r.kept_questions} | {r.accepted} | {_cell(r.precision)} | {_cell(r.recall)} | "
                     f"{_cell(r.balance)} |{extra}")
    return "\n".join(lines)


def probes_markdown(probes: pd.DataFrame, title: str) -> str:
    """Auto-balance's candidates for one round, the chosen one in bold."""
    lines = [f"### {title}: auto-balance probes ({probes.questions.iloc[0]} pool questions each)", "",
             "| temperature | n | pass@n | distinct correct | precision | recall | balance |", "|---" * 7 + "|"]
    for r in probes.itertuples(index=False):
        b = f"**{r.balance:.3f}** (chosen)" if r.chosen else f"{r.balance:.3f}"
        lines.append(f"| {r.temperature:g} | {r.n} | {_cell(r.pass_at_n)} | {_cell(r.distinct_correct, 2)} | "
                     f"{_cell(r.precision)} | {_cell(r.recall)} | {b} |")
    return "\n".join(lines)


def plot_monitor(rows: pd.DataFrame, title: str, path: Path, label: str = "experiment") -> Path:
    """Exploration (pass@n, distinct correct responses), exploitation (precision and recall of the accepted
    responses; pseudo-label accuracy in label-free runs) and the balance score per round, one line per `label`
    value (mean over what shares it: a sweep setting's seeds)."""
    import matplotlib.pyplot as plt

    overall = rows[rows.tier == "all"]
    panels = (("exploration: pass@n", ["pass_at_n"]), ("exploration: distinct correct", ["distinct_correct"]),
              ("exploitation", ["precision", "recall", "label_accuracy"]), ("balance score", ["balance"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, cols) in zip(axes[0], panels, strict=True):
        for key, group in overall.groupby(label, sort=False):
            curve = group.groupby("round")[cols].mean()
            for col in cols:
                if curve[col].notna().any():
                    ax.plot(curve.index, curve[col], marker="o", linestyle={"recall": "--", "label_accuracy": ":"}
                            .get(col, "-"), label=f"{key} {col.replace('_', ' ')}" if len(cols) > 1 else str(key))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("round (its pool: the model before it)", fontsize=7)
        ax.set_xticks(sorted(overall["round"].unique()))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=5)
    fig.suptitle(title)
    return _save_png(fig, path)


def sweep_monitor(store: Store, df: pd.DataFrame) -> pd.DataFrame:
    """`monitor_rounds` for a sweep's rounds, with each one's setting and seed."""
    rows = monitor_rounds(store, list(df.experiment.unique()))
    points = df.drop_duplicates("experiment")[["experiment", "seed", *SETTING]]
    out = rows.merge(points, on="experiment")
    return out.assign(setting=[_setting_name(r) for r in out.itertuples(index=False)])


def monitor_sweep_markdown(rows: pd.DataFrame, sweep: str) -> str:
    """Per setting and round, mean over seeds: the monitor overall, then pass@n · distinct correct responses by
    tier, and (label-free settings) pseudo-label accuracy by tier."""
    overall = rows[rows.tier == "all"].groupby(["setting", "round"], sort=False)
    lines = [f"### {sweep}: exploration and exploitation per round (B-STaR's monitor, mean over seeds)", "",
             "Round r's pool is sampled by the model of round r - 1; accepted = the responses the selection takes "
             "as correct in kept questions (the loss trains on some of them).", "",
             "| setting | round | seeds | " + " | ".join(n for _, n in _MONITOR_CELLS) + " |",
             "|---" * (3 + len(_MONITOR_CELLS)) + "|"]
    for (setting, round_), g in overall:
        lines.append(f"| {setting} | {round_} | {g.seed.nunique()} | "
                     + " | ".join(_cell(g[c].mean(), 2 if c == "distinct_correct" else 3) for c, _ in _MONITOR_CELLS)
                     + " |")
    by_tier = rows[rows.tier != "all"]
    names = sorted(by_tier.tier.unique(), key=lambda t: (len(t), t))
    for title, cell in (("pass@n · distinct correct responses", lambda g: f"{g.pass_at_n.mean():.2f} · "
                         f"{g.distinct_correct.mean():.1f}"),
                        ("pseudo-label accuracy", lambda g: _cell(g.label_accuracy.mean()))):
        table = by_tier if title.startswith("pass") else by_tier[by_tier.label_accuracy.notna()]
        if table.empty:
            continue
        lines += ["", f"#### {sweep}: {title} by tier", "", "| setting | round | "
                  + " | ".join(f"tier {t}" for t in names) + " |", "|---" * (2 + len(names)) + "|"]
        for (setting, round_), g in table.groupby(["setting", "round"], sort=False):
            cells = [cell(g[g.tier == t]) if (g.tier == t).any() else "-" for t in names]
            lines.append(f"| {setting} | {round_} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def probes_sweep_markdown(store: Store, df: pd.DataFrame, sweep: str) -> str:
    """Auto-balance per round over a sweep's experiments: each candidate's balance score (mean over seeds) and
    how many seeds chose it."""
    probes = store.balance_probes_of(list(df.experiment.unique()))
    if probes.empty:
        return ""
    probes["candidate"] = [f"T={t:g} n={n}" for t, n in zip(probes.temperature, probes.n, strict=True)]
    order = probes.sort_values(["n", "temperature"]).candidate.unique()
    lines = [f"### {sweep}: auto-balance, balance score of each probed candidate (mean over seeds; chosen by "
             "how many seeds)", "", "| round | " + " | ".join(order) + " |", "|---" * (1 + len(order)) + "|"]
    for round_, g in probes.groupby("round"):
        cells = []
        for c in order:
            mine = g[g.candidate == c]
            cells.append(f"{mine.balance.mean():.3f}" + (f" (**{int(mine.chosen.sum())}**)" if mine.chosen.any()
                                                         else ""))
        lines.append(f"| {round_} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


# --- sweeps -------------------------------------------------------------------------------------------------
SETTING = ["loss", "strategy", "mapping", "a"]
METRICS = ["greedy_acc", "pass1", "maj_acc", "pass_acc"]


def final_round(df: pd.DataFrame) -> pd.DataFrame:
    """Each experiment's last round, for experiments that reached the sweep's last round (others are unfinished)."""
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
    weighted = summary[(summary.a != 0) & summary.val_greedy_acc_mean.notna()]
    if weighted.empty:
        return None
    best = weighted.loc[weighted.val_greedy_acc_mean.idxmax()]
    return {k: (float(best[k]) if k == "a" else best[k]) for k in SETTING} | {"val_greedy_acc": float(
        best.val_greedy_acc_mean)}


def paired_differences(df: pd.DataFrame, confidence: float = 0.95) -> pd.DataFrame:
    """Final-round greedy accuracy of each setting minus its reference, seed by seed, on test and validation.

    The reference is vanilla of the same loss for a weighted setting, and SFT vanilla for DPO / KTO vanilla.
    Pairing by seed compares runs that share the first round's pool samples, selection and data order, so
    their noise largely cancels; the interval is Student's t over the per-seed differences."""
    final = final_round(df).assign(weighted=lambda d: d.a != 0)
    vanilla = final[~final.weighted].set_index(["loss", "seed"])
    rows = []
    for keys, group in final.groupby(SETTING):
        setting = dict(zip(SETTING, keys, strict=True))
        ref_loss = setting["loss"] if setting["a"] != 0 else "sft"
        if setting["a"] == 0 and ref_loss == setting["loss"]:
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
    both = df.merge(ref, on=on, suffixes=("", "_ref"))
    rows = []
    for keys, group in both.groupby([*SETTING, "round"]):
        row = dict(zip([*SETTING, "round"], keys, strict=True))
        for metric, name in (("greedy_acc", "test"), ("val_greedy_acc", "val")):
            row |= _diff_columns(name, (group[metric] - group[f"{metric}_ref"]).dropna(), confidence)
        rows.append(row)
    return pd.DataFrame(rows)


def _diff_cell(diff: float, ci: float) -> str:
    if pd.isna(diff):
        return "-"
    return f"{100 * diff:+.2f}" if pd.isna(ci) else f"{100 * diff:+.2f} ± {100 * ci:.2f}"


def paired_by_round_markdown(diffs: pd.DataFrame, sweep: str, ref: str) -> str:
    lines = [f"### {sweep} minus {ref}, paired by seed (points of greedy accuracy, mean ± 95 % CI half-width)", "",
             "| setting | round | validation | test | seeds |", "|---|---|---|---|---|"]
    for r in diffs.itertuples(index=False):
        lines.append(f"| {_setting_name(r)} | {r.round} | {_diff_cell(r.val_diff, r.val_ci)} | "
                     f"{_diff_cell(r.test_diff, r.test_ci)} | {r.test_seeds} |")
    return "\n".join(lines)


def paired_markdown(diffs: pd.DataFrame, sweep: str) -> str:
    lines = [f"### {sweep}: paired differences (points of greedy accuracy, mean over seeds ± 95 % CI half-width)",
             "", "| setting | vs | validation | test | seeds |", "|---|---|---|---|---|"]

    for r in diffs.itertuples(index=False):
        lines.append(f"| {_setting_name(r)} | {r.reference} | {_diff_cell(r.val_diff, r.val_ci)} | "
                     f"{_diff_cell(r.test_diff, r.test_ci)} | {r.test_seeds} |")
    return "\n".join(lines)


def plot_paired_differences(diffs: pd.DataFrame, title: str, path: Path) -> Path:
    """Each setting's paired difference to its reference with its 95 % CI, test and validation side by side."""
    fig, ax = _new_axes()
    names = [f"{_setting_name(r)}" for r in diffs.itertuples(index=False)]
    y = np.arange(len(diffs))
    for offset, split, colour in ((-0.15, "val", "tab:orange"), (0.15, "test", "tab:blue")):
        ax.errorbar(100 * diffs[f"{split}_diff"], y + offset, xerr=100 * diffs[f"{split}_ci"].fillna(0), fmt="o",
                    capsize=3, color=colour, label="validation" if split == "val" else "test")
    ax.axvline(0, color="grey", linestyle=":")
    ax.set_yticks(y, names, fontsize=7)
    ax.invert_yaxis()
    fig.set_size_inches(6, 1.5 + 0.35 * len(diffs))
    _label(ax, "difference to reference (points of greedy accuracy)", "", title, legend_size=7)
    return _save_png(fig, path)


def plot_tiers_vs_round(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Greedy accuracy per round in each difficulty tier, vanilla vs EAST (entropy) settings, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    east = df[(df.a == 0) | (df.strategy == "entropy")]
    names = tiers(east.by_tier)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], names, strict=True):
        for keys, group in east.groupby(SETTING):
            r = pd.Series(dict(zip(SETTING, keys, strict=True)))
            acc = group.assign(acc=[b.get(t, {}).get("greedy_acc", np.nan) for b in group.by_tier])
            curve = acc.groupby("round").acc.agg(["mean", "std"]).reset_index()
            ax.errorbar(curve["round"], curve["mean"], yerr=curve["std"].fillna(0), marker="o", capsize=3,
                        label=_setting_name(r), linestyle="--" if r.a == 0 else "-")
        ax.set_title(f"tier {t}")
        ax.set_xticks(sorted(df["round"].unique()))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (greedy)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title)
    return _save_png(fig, path)


def _setting_name(r) -> str:
    weighting = "vanilla" if r.a == 0 else f"{r.strategy} {r.mapping} a={r.a:g}"
    return f"{r.loss.upper()} {weighting}"


def sweep_markdown(summary: pd.DataFrame, sweep: str, unfinished: list[str] = ()) -> str:
    lines = [f"### {sweep}: final-round test accuracy, mean ± std over seeds", "",
             "| setting | validation greedy | greedy | pass@1 | maj@n | pass@n | seeds | rounds | greedy per seed |",
             "|---" * 9 + "|"]
    for r in summary.itertuples(index=False):
        stds = [getattr(r, f"{m}_std") for m in METRICS]
        cells = ["-" if pd.isna(mean := getattr(r, f"{m}_mean")) else f"{mean:.3f} ± {0.0 if pd.isna(sd) else sd:.3f}"
                 for m, sd in zip(METRICS, stds, strict=True)]
        val = getattr(r, "val_greedy_acc_mean", np.nan)
        per_seed = ", ".join(f"{x:.3f}" for x in r.greedy_per_seed)
        lines.append(f"| {_setting_name(r)} | {fmt(val)} | {' | '.join(cells)} | "
                     f"{r.seeds} | {r.rounds} | {per_seed} |")
    if unfinished:
        lines += ["", f"Not counted, unfinished: {', '.join(unfinished)}"]
    return "\n".join(lines)


def plot_accuracy_vs_a(summary: pd.DataFrame, title: str, path: Path, backbone: float | None = None) -> Path:
    """One line per (loss, strategy, mapping); the vanilla point (a = 0) starts every line of its loss."""
    fig, ax = _new_axes()
    if backbone is not None:
        ax.axhline(backbone, color="grey", linestyle=":", label="before self-training")
    vanilla = summary[summary.a == 0]
    for (loss, strategy, mapping), group in summary[summary.a != 0].groupby(["loss", "strategy", "mapping"]):
        line = pd.concat([vanilla[vanilla.loss == loss], group]).sort_values("a")
        ax.errorbar(line.a, line.greedy_acc_mean, yerr=line.greedy_acc_std.fillna(0), marker="o", capsize=3,
                    label=f"{loss} {strategy} {mapping}")
    _label(ax, "sharpness a (0 = vanilla)", "final test accuracy (greedy)", title, legend_size=7)
    return _save_png(fig, path)


def plot_accuracy_vs_round(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Vanilla vs EAST (entropy weighting, each a), mean over seeds per round, SFT/DPO/KTO alike."""
    fig, ax = _new_axes()
    east = df[(df.a == 0) | (df.strategy == "entropy")]
    for keys, group in east.groupby(SETTING):
        r = pd.Series(dict(zip(SETTING, keys, strict=True)))
        curve = group.groupby("round").greedy_acc.agg(["mean", "std"]).reset_index()
        ax.errorbar(curve["round"], curve["mean"], yerr=curve["std"].fillna(0), marker="o", capsize=3,
                    label=_setting_name(r), linestyle="--" if r.a == 0 else "-")
    ax.set_xticks(sorted(df["round"].unique()))
    _label(ax, "self-training round (0 = backbone)", "test accuracy (greedy)", title, legend_size=7)
    return _save_png(fig, path)


def plot_entropy_vs_error(stats: pd.DataFrame, title: str, path: Path) -> Path:
    """Per pool question: answer entropy vs 1 - fraction correct, coloured by the number of rejected responses."""
    fig, ax = _new_axes()
    jitter = np.random.default_rng(0).uniform(-0.01, 0.01, len(stats))
    points = ax.scatter(stats.entropy, 1 - stats.frac_correct + jitter, c=stats.n_incorrect, cmap="viridis", s=6,
                        alpha=0.6)
    fig.colorbar(points, ax=ax, label="rejected (incorrect) responses")
    ax.set_xlabel("answer entropy (bits)")
    ax.set_ylabel("1 - fraction correct")
    ax.set_title(title)
    return _save_png(fig, path)


def rounds_markdown(df: pd.DataFrame, sweep: str) -> str:
    """Greedy accuracy per round, overall (mean ± std over seeds), per tier and on validation (means), for every
    setting of a sweep; the backbone (every setting's round 0) once."""
    names = tiers(df.by_tier)
    lines = [f"### {sweep}: greedy accuracy per round (mean over seeds; test ± std)", "",
             "| setting | round | test | " + "".join(f"tier {t} | " for t in names) + "validation | seeds |",
             "|---" * (5 + len(names)) + "|"]
    trained = df[df["round"] > 0]
    groups = [(pd.Series(dict(zip([*SETTING, "round"], keys, strict=True))), group)
              for keys, group in trained.groupby([*SETTING, "round"])]
    groups.sort(key=lambda rg: (rg[0].loss, rg[0].a != 0, rg[0].strategy, rg[0].mapping, rg[0].a, rg[0]["round"]))
    backbone = df[df["round"] == 0].drop_duplicates("seed")  # every setting's round 0 is the same model
    if len(backbone):
        groups.insert(0, (pd.Series({"round": 0}), backbone))
    for r, group in groups:
        by_tier = "".join(f"{fmt(np.mean([b.get(t, {}).get('greedy_acc', np.nan) for b in group.by_tier]))} | "
                          for t in names)
        sd = group.greedy_acc.std(ddof=1)
        test = f"{group.greedy_acc.mean():.3f}" + ("" if pd.isna(sd) else f" ± {sd:.3f}")
        name = "before self-training" if r["round"] == 0 else _setting_name(r)
        lines.append(f"| {name} | {'backbone' if r['round'] == 0 else int(r['round'])} | {test} | "
                     f"{by_tier}{fmt(group.val_greedy_acc.mean())} | {group.seed.nunique()} |")
    return "\n".join(lines)


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
        seen[pools] = {"setting": _setting_name(pd.Series(dict(zip([*SETTING, "round"], keys, strict=True)))),
                       "round": keys[-1], "settings": 1, "seeds": len(pools), "questions": len(h),
                       "mean": h.mean(), "median": h.median(), "above_zero": (h > 0).mean(), "p90": h.quantile(0.9)}
        rows.append(seen[pools])
    return pd.DataFrame(rows).sort_values(["round", "setting"], ignore_index=True)


def entropy_markdown(entropy: pd.DataFrame, sweep: str) -> str:
    lines = [f"### {sweep}: answer entropy of the pool questions per round (bits, pooled over seeds)", "",
             "| round | setting | seeds | questions | mean | median | share > 0 | 90th percentile |",
             "|---" * 8 + "|"]
    for r in entropy.itertuples(index=False):
        setting = "every setting (shared samples)" if r.settings > 1 else r.setting
        lines.append(f"| {r.round} | {setting} | {r.seeds} | {r.questions} | {r.mean:.2f} | {r.median:.2f} | "
                     f"{100 * r.above_zero:.0f} % | {r.p90:.2f} |")
    return "\n".join(lines)


def sweep_results(store: Store, sweep: str) -> tuple[pd.DataFrame, list[str]]:
    """Every round of the sweep's finished experiments (with per-tier columns), and the unfinished ones' names."""
    df = _with_tiers(store.sweep_table(sweep))
    if df.empty:
        raise ValueError(f"no results for sweep {sweep!r}")
    finished = set(final_round(df).experiment)
    return df[df.experiment.isin(finished)], sorted(set(df.experiment) - finished)


def write_sweep_report(store: Store, sweep: str, out_dir: Path) -> tuple[str, list[Path]]:
    """The sweep's tables and PNG plots, written under `out_dir` (the page shows the plots beside it by name);
    returns the tables' Markdown and the plots, for the caller to show them its own way."""
    df, unfinished = sweep_results(store, sweep)
    summary = sweep_summary(df)
    first_pool = df[df["round"] == 1].gen_key.dropna()
    start = df[df["round"] == 0].greedy_acc
    plots = [plot_accuracy_vs_a(summary, f"{sweep}: accuracy vs a", out_dir / f"{sweep}-accuracy-vs-a.png",
                                start.mean() if len(start) else None),
             plot_accuracy_vs_round(df, f"{sweep}: accuracy per round", out_dir / f"{sweep}-accuracy-vs-round.png"),
             plot_tiers_vs_round(df, f"{sweep}: accuracy per round by tier", out_dir / f"{sweep}-tiers-vs-round.png")]
    diffs = paired_differences(df)
    if len(diffs):
        plots.append(plot_paired_differences(diffs, f"{sweep}: paired differences",
                                             out_dir / f"{sweep}-paired-differences.png"))
    if len(first_pool):
        stats = store.first_pool_stats(first_pool.iloc[0])  # drawn in one order
        plots.append(plot_entropy_vs_error(stats, f"{sweep}: round-1 pool questions",
                                           out_dir / f"{sweep}-entropy-vs-error.png"))
    table = sweep_markdown(summary, sweep, unfinished)
    if chosen := best_on_validation(summary):
        table += (f"\n\nBest weighted setting on validation: **{_setting_name(pd.Series(chosen))}** "
                  f"(validation greedy {chosen['val_greedy_acc']:.3f}); test is not used to choose.")
    if len(diffs):
        table += "\n\n" + paired_markdown(diffs, sweep)
    table += "\n\n" + rounds_markdown(df, sweep)
    if len(entropy := pool_entropy_by_round(store, df)):
        table += "\n\n" + entropy_markdown(entropy, sweep)
    if len(monitor := sweep_monitor(store, df)):
        table += "\n\n" + monitor_sweep_markdown(monitor, sweep)
        plots.append(plot_monitor(monitor, f"{sweep}: exploration and exploitation",
                                  out_dir / f"{sweep}-exploration-exploitation.png", label="setting"))
    if probes := probes_sweep_markdown(store, df, sweep):
        table += "\n\n" + probes
    if round_costs(store, list(df.experiment.unique())).costed.any():
        costs, _, png = cost_report(store, out_dir, sweep=sweep)
        table += "\n\n" + costs
        plots.append(png)
    page = "\n".join([table, "", *[f"![{p.stem}]({p.name})" for p in plots]])
    atomic_write(out_dir / f"{sweep}.md", lambda tmp: Path(tmp).write_text(page + "\n"))
    return table, plots


# --- compute cost ------------------------------------------------------------------------------------------------
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


def cost_markdown(summary: pd.DataFrame, title: str) -> str:
    name = "setting" if "setting" in summary else "experiment"
    lines = [f"### {title}: accuracy gained over the backbone per unit of compute", "",
             f"| {name} | rounds | gain (points) | CPU-hours | GPU-hours | wall hours | tokens generated | "
             "tokens trained | points per hour |", "|---" * 9 + "|"]
    for r in summary.itertuples(index=False):
        star = "" if r.costed else " *"
        lines.append(f"| {getattr(r, name)}{star} | {r.rounds} | {r.gain_points:+.2f} | {r.cpu_h:.3f} | "
                     f"{r.gpu_h:.3f} | {r.wall_h:.3f} | {r.tokens_generated:,.0f} | {r.tokens_trained:,.0f} | "
                     + ("- |" if pd.isna(r.points_per_hour) else f"{r.points_per_hour:+.1f} per {r.per} |"))
    lines += ["", "Compute is that of rounds 1..R (sampling, selection, training with its reference log-probs, "
              "evaluation), CPU time of the run's processes and their engines; a point of a sweep is charged the "
              "shared round-1 pool it reuses, as if run alone."]
    if not summary.costed.all():
        lines.append("* some steps of this run have no recorded cost (computed before costs were recorded).")
    return "\n".join(lines)


def plot_accuracy_vs_compute(costs: pd.DataFrame, labels: dict[str, str], title: str, path: Path) -> Path:
    """Greedy test accuracy against cumulative compute, round by round, one line per experiment (or setting:
    `labels` maps experiments to the name to show; experiments sharing a name are averaged)."""
    use_gpu = costs.gpu_s.sum() > 0
    col, unit = ("gpu_h_cum", "GPU-hours") if use_gpu else ("cpu_h_cum", "CPU-hours")
    df = costs.assign(label=costs.experiment.map(labels)).dropna(subset=["label"])
    fig, ax = _new_axes()
    for label, group in df.groupby("label", sort=False):
        line = group.groupby("round")[[col, "greedy_acc"]].mean()
        ax.plot(line[col], line.greedy_acc, marker="o", label=label)
    _label(ax, f"cumulative compute ({unit}, self-training rounds)", "greedy test accuracy", title, legend_size=7)
    return _save_png(fig, path)


def cost_report(store: Store, out_dir: Path, *, sweep: str | None = None,
                experiments: list[str] | None = None) -> tuple[str, pd.DataFrame, Path]:
    """The cost table (per sweep setting, mean over seeds; or per experiment) and its accuracy-vs-compute plot."""
    if sweep:
        runs = store.sweep_runs(sweep)
        labels = {r.experiment: _setting_name(r) for r in runs.itertuples(index=False)}
    else:
        labels = {e: e for e in (experiments or store.experiments())}
    costs = round_costs(store, list(labels))
    settings = pd.DataFrame({"experiment": list(labels), "setting": list(labels.values())}) if sweep else None
    summary = cost_summary(costs, settings)
    title = sweep or ", ".join(labels)
    png = plot_accuracy_vs_compute(costs, labels, f"{title}: accuracy vs compute",
                                   out_dir / f"{sweep or 'experiments'}-accuracy-vs-compute.png")
    return cost_markdown(summary, title), summary, png
