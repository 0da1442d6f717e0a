"""Per-round results as a table, Markdown and a PNG plot (read from the store, written beside it)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from east_tasks.io import atomic_write
from east_tasks.store import Store


def round_results(store: Store, experiment: str) -> pd.DataFrame:
    df = store.round_table(experiment)
    df["by_tier"] = [json.loads(b) if isinstance(b, str) else (b or {}) for b in df.by_tier]
    return df


def to_records(df: pd.DataFrame) -> list[dict]:
    cols = ["round", "greedy_acc", "maj_acc", "pass_acc", "k", "n_questions", "n_kept", "by_tier", "model_hash"]
    records = df[cols].astype(object).to_dict("records")
    return [{c: None if not isinstance(v, dict) and pd.isna(v) else v for c, v in r.items()} for r in records]


def to_markdown(df: pd.DataFrame, experiment: str) -> str:
    lines = [f"### {experiment}: test accuracy per round", "",
             "| round | greedy | maj@k | pass@k | k | kept questions |", "|---|---|---|---|---|---|"]
    for r in df.itertuples(index=False):
        kept = "-" if pd.isna(r.n_kept) else int(r.n_kept)
        name = "backbone" if r.round == 0 else f"round {r.round}"
        lines.append(f"| {name} | {r.greedy_acc:.3f} | {r.maj_acc:.3f} | {r.pass_acc:.3f} | {r.k} | {kept} |")
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
    fig, ax = _new_axes()
    for col, label in (("greedy_acc", "greedy"), ("maj_acc", "maj@k"), ("pass_acc", "pass@k")):
        ax.plot(df["round"], df[col], marker="o", label=label)
    ax.set_xticks(list(df["round"]))
    _label(ax, "self-training round (0 = backbone)", "test accuracy", experiment)
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
                      f"Entropy histogram: `{Path(histogram).resolve()}`"])


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

    k = now["k"]
    lines = [f"### {experiment}: round {round_}", "", f"| | round {round_} | round {round_ - 1} |", "|---|---|---|"]
    for col, label in (("greedy_acc", "greedy accuracy"), ("maj_acc", f"maj@{k}"), ("pass_acc", f"pass@{k}"),
                       ("n_kept", "kept questions")):
        lines.append(f"| {label} | {cell(now, col)} | {cell(before, col)} |")
    lines += ["", "| training questions | |", "|---|---|"]
    lines += [f"| {name} | {v:.3f} |" if isinstance(v, float) else f"| {name} | {v} |" for name, v in selection.items()]
    lines += ["", "Plots: " + ", ".join(f"[{name}]({Path(p).resolve().as_uri()})" for name, p in plots.items())]
    return "\n".join(lines)


# --- sweeps -------------------------------------------------------------------------------------------------
SETTING = ["loss", "strategy", "mapping", "a"]
METRICS = ["greedy_acc", "maj_acc", "pass_acc"]


def final_round(df: pd.DataFrame) -> pd.DataFrame:
    """Each experiment's last round, for experiments that reached the sweep's last round (others are unfinished)."""
    last = df[df["round"] == df.groupby("experiment")["round"].transform("max")]
    return last[last["round"] == df["round"].max()]


def sweep_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Final-round test accuracy per setting: mean and std over seeds (std with ddof=1; NaN for one seed)."""
    final = final_round(df)
    out = final.groupby(SETTING)[METRICS].agg(["mean", "std"])
    out.columns = [f"{m}_{s}" for m, s in out.columns]
    out["seeds"] = final.groupby(SETTING).seed.nunique()
    out["rounds"] = final.groupby(SETTING)["round"].max()
    out["greedy_per_seed"] = final.sort_values("seed").groupby(SETTING).greedy_acc.agg(tuple)
    out = out.reset_index().assign(weighted=lambda d: d.a != 0)  # per loss: vanilla first, then each weighting
    return out.sort_values(["loss", "weighted", *SETTING[1:]], ignore_index=True).drop(columns="weighted")


def _setting_name(r) -> str:
    weighting = "vanilla" if r.a == 0 else f"{r.strategy} {r.mapping} a={r.a:g}"
    return f"{r.loss.upper()} {weighting}"


def sweep_markdown(summary: pd.DataFrame, sweep: str, plots: list[Path] = (), unfinished: list[str] = (),
                   beside: bool = False) -> str:
    """The sweep's table; plots are linked by file URI, or embedded by name when the Markdown sits beside them."""
    lines = [f"### {sweep}: final-round test accuracy, mean ± std over seeds", "",
             "| setting | greedy | maj@k | pass@k | seeds | rounds | greedy per seed |", "|---" * 7 + "|"]
    for r in summary.itertuples(index=False):
        stds = [getattr(r, f"{m}_std") for m in METRICS]
        cells = [f"{getattr(r, f'{m}_mean'):.3f} ± {0.0 if pd.isna(sd) else sd:.3f}" for m, sd in zip(METRICS, stds,
                                                                                                      strict=True)]
        per_seed = ", ".join(f"{x:.3f}" for x in r.greedy_per_seed)
        lines.append(f"| {_setting_name(r)} | {' | '.join(cells)} | {r.seeds} | {r.rounds} | {per_seed} |")
    if unfinished:
        lines += ["", f"Not counted, unfinished: {', '.join(unfinished)}"]
    if beside:
        lines += ["", *[f"![{Path(p).stem}]({Path(p).name})" for p in plots]]
    else:
        lines += ["", "Plots: " + ", ".join(f"[{Path(p).stem}]({Path(p).resolve().as_uri()})" for p in plots)]
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


def write_sweep_report(store: Store, sweep: str, out_dir: Path) -> tuple[str, list[Path]]:
    """The sweep's Markdown table and its three PNG plots, written under `out_dir`; returns (markdown, plots)."""
    df = store.sweep_table(sweep)
    if df.empty:
        raise ValueError(f"no results for sweep {sweep!r}")
    finished = set(final_round(df).experiment)
    unfinished = sorted(set(df.experiment) - finished)
    df = df[df.experiment.isin(finished)]
    summary = sweep_summary(df)
    first_pool = df[df["round"] == 1].gen_key.dropna()
    start = df[df["round"] == 0].greedy_acc
    plots = [plot_accuracy_vs_a(summary, f"{sweep}: accuracy vs a", out_dir / f"{sweep}-accuracy-vs-a.png",
                                start.mean() if len(start) else None),
             plot_accuracy_vs_round(df, f"{sweep}: accuracy per round", out_dir / f"{sweep}-accuracy-vs-round.png")]
    if len(first_pool):
        stats = store.query("SELECT DISTINCT ON (problem_id) entropy, frac_correct, n_incorrect FROM question_stats "
                            "WHERE gen_key = ?", [first_pool.iloc[0]])
        plots.append(plot_entropy_vs_error(stats, f"{sweep}: round-1 pool questions",
                                           out_dir / f"{sweep}-entropy-vs-error.png"))
    page = sweep_markdown(summary, sweep, plots, unfinished, beside=True)
    atomic_write(out_dir / f"{sweep}.md", lambda tmp: Path(tmp).write_text(page + "\n"))
    return sweep_markdown(summary, sweep, plots, unfinished), plots
