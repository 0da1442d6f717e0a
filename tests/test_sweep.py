"""Sweep grid logic, and a real sweep flow: shared cached generations, cached reference log-probs, report."""

import json
from pathlib import Path

import pandas as pd
import pytest
from markdown_images import embedded_pngs, prefect_artifacts
from typer.testing import CliRunner

from east_tasks.config import SweepGrid
from east_tasks.report.markdown import paired_by_round_markdown, paired_markdown, rounds_markdown, sweep_markdown
from east_tasks.report.statistics import best_on_validation, paired_by_round, paired_differences, sweep_summary
from east_tasks.store import Store
from east_tasks.sweep import SweepPoint, grid_points, point_config
from flows.cli import app
from flows.sweep import sweep

PLOTS = ("accuracy-vs-a", "accuracy-vs-round", "tiers-vs-round", "paired-differences", "entropy-vs-error",
         "exploration-exploitation")


def test_vanilla_points_collapse_and_order_is_seed_major() -> None:
    grid = SweepGrid(a_values=[0, 1], strategies=["entropy", "accuracy"], mappings=["power", "exp"], seeds=[3, 4])
    points = grid_points(grid)
    # per seed: 1 vanilla + 2 strategies x 2 mappings at a=1
    assert len(points) == 2 * (1 + 4)
    assert [p.seed for p in points] == [3] * 5 + [4] * 5
    assert SweepPoint(3, "sft", "entropy", "power", 0.0) in points
    assert not any(p.a == 0 and (p.strategy, p.mapping) != ("entropy", "power") for p in points)


def test_point_config_sets_every_seed_and_name() -> None:
    cfg = point_config("sw", SweepPoint(2, "dpo", "local", "exp", 0.5), "tiny-test", rounds=3,
                       train={"epochs": 1}, weighting={"eps": 1e-3})
    assert cfg.experiment == "sw-dpo-local-exp-a0.5-s2" and cfg.rounds == 3
    assert (cfg.sampling.seed, cfg.weighting.seed, cfg.train.seed) == (2, 2, 2)
    assert (cfg.train.loss, cfg.train.epochs, cfg.train.lr) == ("dpo", 1, 1e-6)
    assert (cfg.weighting.strategy, cfg.weighting.mapping, cfg.weighting.a, cfg.weighting.eps) == ("local", "exp",
                                                                                                    0.5, 1e-3)
    with pytest.raises(ValueError, match="loss"):
        point_config("sw", SweepPoint(0, "ppo", "entropy", "power", 1.0))


def test_sweep_summary_averages_final_rounds_over_seeds() -> None:
    def row(experiment: str, seed: int, a: float, round_: int, greedy: float, strategy: str = "entropy") -> dict:
        return {"experiment": experiment, "seed": seed, "loss": "sft", "strategy": strategy, "mapping": "power",
                "a": a, "round": round_, "greedy_acc": greedy, "pass1": greedy - 0.1, "maj_acc": greedy / 2,
                "pass_acc": 1.0}

    df = pd.DataFrame([row("v-s1", 1, 0, 1, 0.40), row("v-s1", 1, 0, 2, 0.50), row("v-s0", 0, 0, 1, 0.30),
                       row("v-s0", 0, 0, 2, 0.60), row("e-s0", 0, 1, 2, 0.70),
                       row("e-s1", 1, 1, 1, 0.90),  # e-s1 stopped after round 1: unfinished, not averaged
                       row("acc-s0", 0, 1, 2, 0.20, strategy="accuracy")])
    summary = sweep_summary(df)
    assert list(zip(summary.strategy, summary.a, strict=True)) == [("entropy", 0), ("accuracy", 1), ("entropy", 1)]
    summary = summary[summary.strategy == "entropy"].set_index("a")
    assert summary.loc[0, "greedy_acc_mean"] == pytest.approx(0.55)
    assert summary.loc[0, "greedy_acc_std"] == pytest.approx(0.0707107, abs=1e-6)  # |0.6 - 0.5| / sqrt(2)
    assert summary.loc[0, "greedy_per_seed"] == (0.60, 0.50)  # seed order, not row order
    assert summary.loc[1, "seeds"] == 1 and pd.isna(summary.loc[1, "greedy_acc_std"])
    table = sweep_markdown(summary.reset_index(), "s")
    assert ("| SFT vanilla | - | 0.550 ± 0.071 | 0.450 ± 0.071 | 0.275 ± 0.035 | 1.000 ± 0.000 | 2 | 2 | 0.600, "
            "0.500 |") in table
    assert ("| SFT entropy power a=1 | - | 0.700 ± 0.000 | 0.600 ± 0.000 | 0.350 ± 0.000 | 1.000 ± 0.000 | 1 | 2 | "
            "0.700 |") in table


def test_paired_differences_by_seed_with_t_intervals() -> None:
    """Hand-checked: diffs (0.03, 0.02, 0.02) have mean 0.02333, sd 0.0057735, and t(0.975, 2) = 4.302653."""
    def rows(loss: str, a: float, greedy: list[float], val: list[float]) -> list[dict]:
        return [{"experiment": f"{loss}-{a}-s{s}", "seed": s, "loss": loss, "strategy": "entropy", "mapping": "power",
                 "a": a, "round": 1, "greedy_acc": g, "val_greedy_acc": v}
                for s, (g, v) in enumerate(zip(greedy, val, strict=True))]

    df = pd.DataFrame(rows("sft", 0, [0.50, 0.52, 0.48], [0.60, 0.61, 0.59])
                      + rows("sft", 1, [0.53, 0.54, 0.50], [0.62, 0.60, 0.61])
                      + rows("dpo", 0, [0.51, 0.50, 0.49], [0.60, 0.61, 0.59])
                      + rows("dpo", 1, [0.52, 0.51], [0.61, 0.62]))  # seed 2 missing: 2 pairs
    diffs = paired_differences(df).set_index(["loss", "a"])
    assert ("sft", 0) not in diffs.index  # the reference itself
    east = diffs.loc[("sft", 1)]
    assert east.reference == "SFT vanilla" and east.test_seeds == 3
    assert east.test_diff == pytest.approx(0.0233333, abs=1e-6)
    assert east.test_ci == pytest.approx(4.302653 * 0.0057735 / 3 ** 0.5, abs=1e-5)
    assert east.val_diff == pytest.approx(0.01)
    dpo = diffs.loc[("dpo", 0)]
    assert dpo.reference == "SFT vanilla" and dpo.test_diff == pytest.approx(0.0)  # DPO vanilla vs SFT vanilla
    weighted_dpo = diffs.loc[("dpo", 1)]
    assert weighted_dpo.reference == "DPO vanilla" and weighted_dpo.test_seeds == 2
    assert weighted_dpo.test_diff == pytest.approx(0.01)
    table = paired_markdown(paired_differences(df), "s")
    # validation diffs (0.02, -0.01, 0.02): sd 0.017321, so the half-width is 4.302653 * 0.01 = 4.30 points
    assert "| SFT entropy power a=1 | SFT vanilla | +1.00 ± 4.30 | +2.33 ± 1.43 | 3 |" in table


def test_best_on_validation_ignores_test_and_vanilla() -> None:
    def row(mapping: str, a: float, seed: int, val: float, test: float) -> dict:
        return {"experiment": f"{mapping}-{a}-s{seed}", "seed": seed, "loss": "sft", "strategy": "entropy",
                "mapping": mapping, "a": a, "round": 1, "greedy_acc": test, "pass1": None, "maj_acc": None,
                "pass_acc": None, "val_greedy_acc": val}

    df = pd.DataFrame([row("power", 0, 0, 0.90, 0.50), row("power", 0, 1, 0.90, 0.50),  # vanilla: never chosen
                       row("power", 1, 0, 0.60, 0.90), row("power", 1, 1, 0.62, 0.90),  # best on test only
                       row("exp", 2, 0, 0.64, 0.40), row("exp", 2, 1, 0.62, 0.40)])  # best on validation: 0.63
    best = best_on_validation(sweep_summary(df))
    assert best == {"loss": "sft", "strategy": "entropy", "mapping": "exp", "a": 2.0, "band": "",
                    "val_greedy_acc": pytest.approx(0.63)}
    assert best_on_validation(sweep_summary(df[df.a == 0])) is None


def test_paired_by_round_subtracts_the_same_setting_and_seed() -> None:
    def rows(greedy: dict[tuple[int, int], float]) -> pd.DataFrame:
        return pd.DataFrame([{"experiment": f"x-s{seed}", "seed": seed, "loss": "sft", "strategy": "entropy",
                              "mapping": "power", "a": 0.0, "round": r, "greedy_acc": g, "val_greedy_acc": g / 2}
                             for (seed, r), g in greedy.items()])

    mine = rows({(0, 1): 0.50, (1, 1): 0.52, (2, 1): 0.48, (0, 2): 0.60, (1, 2): 0.61, (3, 2): 0.99})
    ref = rows({(0, 1): 0.47, (1, 1): 0.50, (2, 1): 0.46, (0, 2): 0.60, (1, 2): 0.59})  # no seed 3: not paired
    diffs = paired_by_round(mine, ref).set_index("round")
    # round 1: diffs (0.03, 0.02, 0.02) as in the test above; round 2: (0.00, 0.02), sd 0.014142, t(0.975, 1) 12.7062
    assert diffs.loc[1, "test_diff"] == pytest.approx(0.0233333, abs=1e-6) and diffs.loc[1, "test_seeds"] == 3
    assert diffs.loc[1, "test_ci"] == pytest.approx(4.302653 * 0.0057735 / 3 ** 0.5, abs=1e-5)
    assert diffs.loc[1, "val_diff"] == pytest.approx(0.0116667, abs=1e-6)
    assert diffs.loc[2, "test_diff"] == pytest.approx(0.01) and diffs.loc[2, "test_seeds"] == 2
    assert diffs.loc[2, "test_ci"] == pytest.approx(12.7062 * 0.0141421 / 2 ** 0.5, abs=1e-4)
    table = paired_by_round_markdown(paired_by_round(mine, ref), "a", "b")
    assert "| SFT vanilla | 1 | +1.17 ± 0.72 | +2.33 ± 1.43 | 3 |" in table


def test_rounds_table_means_tiers_over_seeds() -> None:
    def row(seed: int, a: float, round_: int, greedy: float, tier1: float, loss: str = "sft") -> dict:
        return {"experiment": f"{loss}{a}-s{seed}", "seed": seed, "loss": loss, "strategy": "entropy",
                "mapping": "power",
                "a": a, "round": round_, "greedy_acc": greedy, "val_greedy_acc": greedy - 0.1,
                "by_tier": {"1": {"greedy_acc": tier1, "n": 10}, "2": {"greedy_acc": greedy, "n": 10}}}

    df = pd.DataFrame([row(s, a, 0, 0.5, 0.9) for s in (0, 1) for a in (0, 1)]
                      + [row(0, 0, 1, 0.60, 1.0), row(1, 0, 1, 0.70, 0.8),
                         row(0, 1, 1, 0.55, 0.7), row(1, 1, 1, 0.55, 0.9)]
                      # a second loss: its round 0 is the same backbone, still one row
                      + [row(s, 0, 0, 0.5, 0.9, "dpo") for s in (0, 1)] + [row(0, 0, 1, 0.4, 0.9, "dpo")])
    lines = rounds_markdown(df, "s").splitlines()[4:]
    assert lines == ["| before self-training | backbone | 0.500 ± 0.000 | 0.900 | 0.500 | 0.400 | 2 |",
                     "| DPO vanilla | 1 | 0.400 | 0.900 | 0.400 | 0.300 | 1 |",
                     "| SFT vanilla | 1 | 0.650 ± 0.071 | 0.900 | 0.650 | 0.550 | 2 |",  # sd of (0.6, 0.7)
                     "| SFT entropy power a=1 | 1 | 0.550 ± 0.000 | 0.800 | 0.550 | 0.450 | 2 |"]


def test_sweep_shares_generations_and_reports(tmp_path, prefect_server) -> None:
    grid = SweepGrid(a_values=[0, 1], losses=["sft", "dpo"], strategies=["local"], seeds=[0])
    overrides = {"data": {"pool_size": 64, "test_size": 16, "validation_size": 16}, "eval": {"n": 2},
                 "backend": {"engine": "hf"}}
    markdown = sweep("it", grid, "tiny-test", 1, tmp_path, overrides)

    with Store(tmp_path / "east.duckdb") as s:
        runs = s.query("SELECT * FROM sweep_runs ORDER BY experiment")
        steps = s.query("SELECT step FROM step_status").step
        rounds = s.query("SELECT experiment, gen_key FROM experiment_rounds WHERE round = 1")
        n_logps = s.execute("SELECT count(*) FROM response_logprobs")[0][0]
        dpo = s.query("""SELECT problem_id, sample_idx, rejected_idx, uncertainty FROM training_examples t
                         JOIN experiment_rounds r USING (weight_key) WHERE r.experiment = 'it-dpo-local-power-a1-s0'""")
        sft_local = s.query("""SELECT problem_id, sample_idx FROM training_examples t
                               JOIN experiment_rounds r USING (weight_key)
                               WHERE r.experiment = 'it-sft-local-power-a1-s0'""")
    assert list(runs.experiment) == ["it-dpo-local-power-a1-s0", "it-dpo-vanilla-s0", "it-sft-local-power-a1-s0",
                                     "it-sft-vanilla-s0"]
    # 4 points, 1 pool generation and 1 base-model evaluation: the other points found them cached
    assert (steps == "generate pool round 1").sum() == 1 and rounds.gen_key.nunique() == 1
    assert (steps == "train").sum() == 4 and (steps == "evaluate test").sum() == 1 + 4
    # reference / local log-probs: one row per distinct response scored under the one sampling model
    scored = {(p, i) for p, i in zip(dpo.problem_id, dpo.sample_idx, strict=True)}
    scored |= {(p, i) for p, i in zip(dpo.problem_id, dpo.rejected_idx, strict=True)}
    scored |= {(p, i) for p, i in zip(sft_local.problem_id, sft_local.sample_idx, strict=True)}
    assert len(dpo) > 0 and n_logps == len(scored)
    assert (dpo.uncertainty > 0).all()  # minus mean token log-prob of the chosen response

    for name in ("DPO vanilla", "DPO local power a=1", "SFT vanilla", "SFT local power a=1"):
        assert f"| {name} |" in markdown
    for plot in PLOTS:
        assert (tmp_path / "plots" / f"it-{plot}.png").stat().st_size > 1000
    # B-STaR's monitor of the one shared pool, per setting: gold labels accept only correct responses
    monitor = [line for line in markdown.splitlines() if line.startswith("| SFT vanilla | 1 | 1 |")]
    assert "exploration and exploitation per round" in markdown and len(monitor) == 1
    assert monitor[0].split(" | ")[5] == "1.000"  # precision (pass@n, distinct correct, then precision)
    page = (tmp_path / "plots" / "it.md").read_text()
    assert page.split("\n\n")[:2] == markdown.split("\n\n")[:2]  # same title and table
    assert "![it-accuracy-vs-a](it-accuracy-vs-a.png)" in page  # the page sits beside its plots
    embedded = embedded_pngs(prefect_artifacts()["sweep-it-summary"])  # the UI's copy carries them inside
    assert {f"it-{plot}" for plot in PLOTS} <= set(embedded)
    assert all(png == (tmp_path / "plots" / f"{name}.png").read_bytes() for name, png in embedded.items())

    # `east report --sweep` rewrites the page from the store and prints its tables and plot paths, not the images
    printed = CliRunner().invoke(app, ["report", "--sweep", "it", "--data-dir", str(tmp_path)])
    assert printed.exit_code == 0, printed.output
    assert markdown.split("\n\n")[1] in printed.stdout and "data:image" not in printed.stdout
    listed = printed.stdout.split("Plots: ")[1].split()
    assert {f"it-{plot}.png" for plot in PLOTS} <= {Path(p.rstrip(",")).name for p in listed}
    chosen = json.loads(CliRunner().invoke(app, ["report", "--sweep", "it", "--json", "--data-dir",
                                                 str(tmp_path)]).stdout)["best_on_validation"]
    with Store(tmp_path / "east.duckdb") as s:
        weighted_val = {e: s.round_table(e).val_greedy_acc.iloc[-1]
                        for e in ("it-dpo-local-power-a1-s0", "it-sft-local-power-a1-s0")}
    # chosen on validation, among the weighted points only
    assert chosen["a"] == 1 and chosen["strategy"] == "local"
    assert weighted_val[f"it-{chosen['loss']}-local-power-a1-s0"] == chosen["val_greedy_acc"] == max(
        weighted_val.values())
