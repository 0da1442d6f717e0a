"""Per-round results as a table, Markdown and a PNG plot (read from the store, written beside it)."""

from __future__ import annotations

import json
from pathlib import Path

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
    ax.set_xlabel("self-training round (0 = backbone)")
    ax.set_ylabel("test accuracy")
    ax.set_title(experiment)
    ax.set_xticks(list(df["round"]))
    ax.grid(alpha=0.3)
    ax.legend()
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
