"""An experiment's results as a person reads them (docs/output.md): on a terminal, tables that fit its width;
anywhere else (a log, a pipe), Markdown, whose numbers no width cuts. `east run` and `east report` print them."""

from __future__ import annotations

from collections.abc import Callable

from rich import box
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from east_tasks.report.frames import tiers as tiers_of
from east_tasks.report.markdown import fmt

Column = tuple[str, list[str]]  # a result table's header and its cells, one per round


def round_label(record: dict) -> str:
    """backbone, the round's number, or its number and "rejected" (by the guard: no run builds on it)."""
    if record["round"] == 0:
        return "backbone"
    return f"{record['round']} rejected" if record.get("rejected") else str(record["round"])


def result_columns(records: list[dict]) -> tuple[list[Column], list[Column], list[Column]]:
    """The columns of an experiment's result table: the round and its results, the sampled test metrics, and the
    test accuracy by tier (the latter two tables of their own on a terminal too narrow for one)."""

    def col(header: str, cell: Callable[[dict], str]) -> Column:
        return header, [cell(r) for r in records]

    n = max((r["k"] or 0 for r in records), default=0)  # samples per test question; 0: greedy only
    sampled = ([("pass@1", "pass1"), ("±SE", "pass1_se"), (f"maj@{n}", "maj_acc"), (f"pass@{n}", "pass_acc")]
               if any(r["pass_acc"] is not None for r in records) else [])
    names = {"pool_pass_at_n": "pass@n", "pool_balance": "balance", "label_accuracy": "labels",
             "lucky_share": "lucky"}
    pool = [m for m in names if any(r.get(m) is not None for r in records)]
    main = [col("round", round_label),
            col("test", lambda r: f"{r['greedy_acc']:.3f}"),
            col("val", lambda r: fmt(r.get("val_greedy_acc"))),
            col("kept", lambda r: str(r["n_kept"] or "-")),
            *(col(names[m], lambda r, m=m: fmt(r.get(m))) for m in pool)]
    by_tier = [col(f"t{t}", lambda r, t=t: fmt(r["by_tier"].get(t, {}).get("greedy_acc")))
               for t in tiers_of(r["by_tier"] for r in records)]
    return main, [col(header, lambda r, m=m: fmt(r[m])) for header, m in sampled], by_tier


def rich_table(title: str, columns: list[Column]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for i, (header, _) in enumerate(columns):
        table.add_column(header, justify="right", min_width=8 if i == 0 else None)
    for row in zip(*(cells for _, cells in columns), strict=True):
        table.add_row(*row)
    return table


def markdown_table(title: str, columns: list[Column]) -> str:
    return "\n".join([f"### {title}", "", "| " + " | ".join(h for h, _ in columns) + " |", "|---" * len(columns) + "|",
                      *("| " + " | ".join(row) + " |" for row in zip(*(cells for _, cells in columns), strict=True))])


def print_results(console: Console, name: str, records: list[dict]) -> None:
    """An experiment's results (`round_results` as records): on a terminal, a table that fits it (the tiers in a
    second table where one is too wide); anywhere else (a log, a pipe) or on a terminal too narrow for either,
    Markdown, whose numbers no width cuts."""
    main, sampled, by_tier = result_columns(records)
    n = max((r["k"] or 0 for r in records), default=0)
    title = (f"{name}: greedy test accuracy, overall{' and by tier (t1 easiest)' if by_tier else ''}; "
             + (f"from {n} samples per test question: pass@1 ± SE, maj@{n}, pass@{n}; " if n else "")
             + "validation greedy; questions kept for training; the round's pool: pass@n, B-STaR balance score, "
             "pseudo-label accuracy (label-free); lucky: share of the training rows right by luck (embedded task)")
    columns = [main[0], main[1], *by_tier, *sampled, *main[2:]]  # tiers and samples beside the greedy accuracy
    layouts = [[rich_table(title, columns)],
               [rich_table(f"{name}: greedy test accuracy; validation greedy; questions kept for training; the "
                           "round's pool: pass@n, B-STaR balance score, pseudo-label accuracy (label-free); lucky: "
                           "share of the training rows right by luck", main),
                *([rich_table(f"{name}: from {n} samples per test question: pass@1 ± SE, maj@{n}, pass@{n}",
                              [main[0], *sampled])] if sampled else []),
                *([rich_table(f"{name}: greedy test accuracy by tier (t1 easiest)", [main[0], *by_tier])]
                  if by_tier else [])]]
    natural = console.options.update(max_width=10**6)
    fits = [layout for layout in layouts
            if all(Measurement.get(console, natural, t).maximum <= console.width for t in layout)]
    if not console.is_terminal or not fits:
        console.print(markdown_table(title, columns), markup=False, highlight=False, emoji=False, soft_wrap=True)
        return
    for table in fits[0]:
        console.print(table)
