"""Markdown renderers of the result frames: a run's table per round, a round's artifact, the monitor and
auto-balance, a sweep's tables, the cost table; PNGs embedded as data URIs so the Prefect UI shows them."""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd

from east_tasks.report.frames import sampled_ks, tiers
from east_tasks.report.statistics import METRICS, SETTING, setting_name, with_band

MAX_EMBEDDED_BYTES = 512 * 1024


def fmt(v: float | None) -> str:
    """An accuracy for a table; "-" where there is none (maj@k / pass@k of a greedy-only evaluation)."""
    return "-" if v is None or pd.isna(v) else f"{v:.3f}"


def fmt_se(v: float | None, se: float | None) -> str:
    """An accuracy and its standard error, e.g. sampled pass@1: "0.512 ± 0.031"."""
    return fmt(v) + ("" if se is None or pd.isna(se) or fmt(v) == "-" else f" ± {se:.3f}")


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


def selection_markdown(summary: dict, name: str, histogram: Path) -> str:
    rows = [f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |" for k, v in summary.items()]
    return "\n".join([f"### {name}: training questions", "", "| | |", "|---|---|", *rows, "",
                      embedded_plots({"entropy histogram": histogram})])


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
    if now.get("lucky_share") is not None:  # the embedded task: training rows right by luck (steps not valid)
        lines.append(f"| lucky share of training rows | {cell(now, 'lucky_share')} | {cell(before, 'lucky_share')} |")
        by_tier = now.get("lucky_by_tier") or {}
        lines += [f"| lucky share, tier {t} | {v:.3f} | |" for t, v in sorted(by_tier.items(), key=lambda tv:
                                                                               (len(tv[0]), tv[0]))]
    lines += ["", "| training questions | |", "|---|---|"]
    lines += [f"| {name} | {v:.3f} |" if isinstance(v, float) else f"| {name} | {v} |" for name, v in selection.items()]
    return "\n".join([*lines, "", embedded_plots(plots)])


_MONITOR_CELLS = (("pass_at_n", "pass@n"), ("distinct_correct", "distinct correct"), ("precision", "precision"),
                  ("recall", "recall"), ("balance", "balance"), ("label_accuracy", "pseudo-label accuracy"))


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


def probes_sweep_markdown(probes: pd.DataFrame, sweep: str) -> str:
    """Auto-balance per round over a sweep's experiments: each candidate's balance score (mean over seeds) and
    how many seeds chose it."""
    probes = probes.assign(candidate=[f"T={t:g} n={n}" for t, n in zip(probes.temperature, probes.n, strict=True)])
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
        lines.append(f"| {setting_name(r)} | {fmt(val)} | {' | '.join(cells)} | "
                     f"{r.seeds} | {r.rounds} | {per_seed} |")
    if unfinished:
        lines += ["", f"Not counted, unfinished: {', '.join(unfinished)}"]
    return "\n".join(lines)


def _diff_cell(diff: float, ci: float) -> str:
    if pd.isna(diff):
        return "-"
    return f"{100 * diff:+.2f}" if pd.isna(ci) else f"{100 * diff:+.2f} ± {100 * ci:.2f}"


def paired_markdown(diffs: pd.DataFrame, sweep: str) -> str:
    lines = [f"### {sweep}: paired differences (points of greedy accuracy, mean over seeds ± 95 % CI half-width)",
             "", "| setting | vs | validation | test | seeds |", "|---|---|---|---|---|"]

    for r in diffs.itertuples(index=False):
        lines.append(f"| {setting_name(r)} | {r.reference} | {_diff_cell(r.val_diff, r.val_ci)} | "
                     f"{_diff_cell(r.test_diff, r.test_ci)} | {r.test_seeds} |")
    return "\n".join(lines)


def paired_by_round_markdown(diffs: pd.DataFrame, sweep: str, ref: str) -> str:
    lines = [f"### {sweep} minus {ref}, paired by seed (points of greedy accuracy, mean ± 95 % CI half-width)", "",
             "| setting | round | validation | test | seeds |", "|---|---|---|---|---|"]
    for r in diffs.itertuples(index=False):
        lines.append(f"| {setting_name(r)} | {r.round} | {_diff_cell(r.val_diff, r.val_ci)} | "
                     f"{_diff_cell(r.test_diff, r.test_ci)} | {r.test_seeds} |")
    return "\n".join(lines)


def rounds_markdown(df: pd.DataFrame, sweep: str) -> str:
    """Greedy accuracy per round, overall (mean ± std over seeds), per tier and on validation (means), for every
    setting of a sweep; the backbone (every setting's round 0) once."""
    df = with_band(df)
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
        name = "before self-training" if r["round"] == 0 else setting_name(r)
        lines.append(f"| {name} | {'backbone' if r['round'] == 0 else int(r['round'])} | {test} | "
                     f"{by_tier}{fmt(group.val_greedy_acc.mean())} | {group.seed.nunique()} |")
    return "\n".join(lines)


def entropy_markdown(entropy: pd.DataFrame, sweep: str) -> str:
    lines = [f"### {sweep}: answer entropy of the pool questions per round (bits, pooled over seeds)", "",
             "| round | setting | seeds | questions | mean | median | share > 0 | 90th percentile |",
             "|---" * 8 + "|"]
    for r in entropy.itertuples(index=False):
        setting = "every setting (shared samples)" if r.settings > 1 else r.setting
        lines.append(f"| {r.round} | {setting} | {r.seeds} | {r.questions} | {r.mean:.2f} | {r.median:.2f} | "
                     f"{100 * r.above_zero:.0f} % | {r.p90:.2f} |")
    return "\n".join(lines)


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


def chosen_line(chosen: dict | None) -> str:
    """What `east report --sweep NAME --choose validation` prints."""
    if chosen is None:
        return "nothing to choose from: the sweep has no validation accuracy (data.validation_size = 0)"
    line = (f"chosen on validation: {chosen['setting']} (validation {chosen['validation']:.3f}, "
            f"{chosen['seeds']} seeds): test {chosen['test']:.3f}")
    if "reference" not in chosen:
        return line + " (it is vanilla)"

    def diff(m: str) -> str:
        mean, hw = chosen[f"paired_{m}"], chosen[f"paired_{m}_hw"]
        return "-" if mean is None else f"{mean:+.2f}" + ("" if hw is None else f" ± {hw:.2f}")

    return (line + f"; paired to {chosen['reference']} over {chosen['paired_test_seeds']} seeds: test {diff('test')}"
            f" points, validation {diff('val')} points (95 % t interval)")
