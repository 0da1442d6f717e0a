"""The reports' PNG plots (matplotlib on the headless Agg backend, imported only when a plot is made), each
written atomically to the path it is given."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from east_tasks.io import atomic_write
from east_tasks.report.frames import tiers
from east_tasks.report.statistics import SETTING, setting_name, with_band


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


def _vanilla_and_east(df: pd.DataFrame) -> pd.DataFrame:
    """The vanilla and entropy-weighted settings, or every setting of a sweep that has neither (a learnability or a
    band sweep alone)."""
    df = with_band(df)
    east = df[(df.a == 0) | (df.strategy == "entropy")]
    return east if len(east) else df


def plot_accuracy_vs_round(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Vanilla vs EAST (entropy weighting, each a), mean over seeds per round, SFT/DPO/KTO alike."""
    fig, ax = _new_axes()
    east = _vanilla_and_east(df)
    for keys, group in east.groupby(SETTING):
        r = pd.Series(dict(zip(SETTING, keys, strict=True)))
        curve = group.groupby("round").greedy_acc.agg(["mean", "std"]).reset_index()
        ax.errorbar(curve["round"], curve["mean"], yerr=curve["std"].fillna(0), marker="o", capsize=3,
                    label=setting_name(r), linestyle="--" if r.a == 0 else "-")
    ax.set_xticks(sorted(df["round"].unique()))
    _label(ax, "self-training round (0 = backbone)", "test accuracy (greedy)", title, legend_size=7)
    return _save_png(fig, path)


def plot_tiers_vs_round(df: pd.DataFrame, title: str, path: Path) -> Path:
    """Greedy accuracy per round in each difficulty tier, vanilla vs EAST (entropy) settings, mean ± std over seeds."""
    import matplotlib.pyplot as plt

    east = _vanilla_and_east(df)
    names = tiers(east.by_tier)
    fig, axes = plt.subplots(1, len(names), figsize=(2.6 * len(names), 3), sharey=True, squeeze=False)
    for ax, t in zip(axes[0], names, strict=True):
        for keys, group in east.groupby(SETTING):
            r = pd.Series(dict(zip(SETTING, keys, strict=True)))
            acc = group.assign(acc=[b.get(t, {}).get("greedy_acc", np.nan) for b in group.by_tier])
            curve = acc.groupby("round").acc.agg(["mean", "std"]).reset_index()
            ax.errorbar(curve["round"], curve["mean"], yerr=curve["std"].fillna(0), marker="o", capsize=3,
                        label=setting_name(r), linestyle="--" if r.a == 0 else "-")
        ax.set_title(f"tier {t}")
        ax.set_xticks(sorted(df["round"].unique()))
        ax.set_xlabel("round")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("test accuracy (greedy)")
    axes[0][-1].legend(fontsize=6)
    fig.suptitle(title)
    return _save_png(fig, path)


def plot_paired_differences(diffs: pd.DataFrame, title: str, path: Path) -> Path:
    """Each setting's paired difference to its reference with its 95 % CI, test and validation side by side."""
    fig, ax = _new_axes()
    names = [f"{setting_name(r)}" for r in diffs.itertuples(index=False)]
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
