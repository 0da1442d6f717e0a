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


def plot_rounds(df: pd.DataFrame, experiment: str, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for col, label in (("greedy_acc", "greedy"), ("maj_acc", "maj@k"), ("pass_acc", "pass@k")):
        ax.plot(df["round"], df[col], marker="o", label=label)
    ax.set_xlabel("self-training round (0 = backbone)")
    ax.set_ylabel("test accuracy")
    ax.set_title(experiment)
    ax.set_xticks(list(df["round"]))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    atomic_write(Path(path), lambda tmp: fig.savefig(tmp, format="png", dpi=120))
    plt.close(fig)
    return Path(path)
