"""Compute accounting: what each step cost, summed per round and per method (hand-made store, hand numbers)."""

import json

import pandas as pd
import pytest

from east_tasks.cost import Cost, Meter
from east_tasks.report.frames import round_costs
from east_tasks.report.markdown import cost_markdown
from east_tasks.report.plots import plot_accuracy_vs_compute
from east_tasks.report.statistics import cost_summary
from east_tasks.store import Store


def test_meter_counts_wall_and_cpu_of_the_work_it_watches() -> None:
    meter = Meter()
    x = 0
    for i in range(3_000_000):  # ~0.2 s of CPU
        x += i
    cost = meter.cost(tokens_generated=7)
    assert 0.05 < cost.cpu_s <= cost.wall_s + 0.05 and cost.gpu_s == 0.0 and cost.tokens_generated == 7


def _store(tmp_path) -> Store:
    store = Store(tmp_path / "east.duckdb")
    for exp, acc in (("van", (0.50, 0.56, 0.60)), ("east", (0.50, 0.55, 0.58))):
        store.execute("INSERT INTO evaluations (eval_key, greedy_acc) VALUES (?, ?), (?, ?), (?, ?)",
                      [f"{exp}-e0", acc[0], f"{exp}-e1", acc[1], f"{exp}-e2", acc[2]])
        for r in range(3):
            keys = ["base-eval"] if r == 0 else ["pool-1" if r == 1 else f"{exp}-pool-{r}", f"{exp}-train-{r}"]
            store.record_round(exp, r, eval_key=f"{exp}-e{r}", step_keys=json.dumps(keys))
    costs = {"base-eval": Cost(10, 20, 0, 100), "pool-1": Cost(900, 1800, 0, 5000),  # shared by both
             "van-train-1": Cost(360, 720, 0, 0, 300), "van-pool-2": Cost(900, 1800, 0, 6000),
             "van-train-2": Cost(360, 720, 0, 0, 600), "east-train-1": Cost(360, 720, 0, 0, 300),
             "east-pool-2": Cost(900, 1800, 0, 6000), "east-train-2": Cost(180, 360, 0, 0, 600)}
    for key, cost in costs.items():
        store.mark_step(key, "s", "x", "done", cost=cost)
    return store


def test_round_costs_and_points_per_hour_by_hand(tmp_path) -> None:
    with _store(tmp_path) as store:
        costs = round_costs(store, ["van", "east"])
    van = costs[costs.experiment == "van"].set_index("round")
    assert list(van.cpu_s) == [20, 1800 + 720, 1800 + 720] and van.costed.all()
    assert van.cpu_h_cum.tolist() == pytest.approx([0, 0.7, 1.4])  # the backbone's evaluation is not charged
    summary = cost_summary(costs).set_index("experiment")
    # vanilla: +10 points in 1.4 CPU-hours; EAST: +8 points in 0.7 + 0.6 = 1.3 CPU-hours
    assert summary.loc["van", "gain_points"] == pytest.approx(10.0)
    assert summary.loc["van", "points_per_hour"] == pytest.approx(10 / 1.4)
    assert summary.loc["east", "points_per_hour"] == pytest.approx(8 / 1.3)
    assert summary.loc["van", "tokens_generated"] == 11000 and summary.loc["van", "tokens_trained"] == 900
    by_setting = cost_summary(costs, pd.DataFrame({"experiment": ["van", "east"], "setting": ["a", "a"]}))
    assert by_setting.seeds[0] == 2 and by_setting.gain_points[0] == pytest.approx(9.0)
    table = cost_markdown(summary.reset_index(), "t")
    assert "| van | 2 | +10.00 | 1.400 | 0.000 | 0.700 | 11,000 | 900 | +7.1 per CPU-hour |" in table
    png = plot_accuracy_vs_compute(costs, {"van": "vanilla", "east": "EAST"}, "t", tmp_path / "c.png")
    assert png.stat().st_size > 1000


def test_rounds_without_recorded_costs_are_marked(tmp_path) -> None:
    with Store(tmp_path / "east.duckdb") as store:
        store.record_round("old", 0, step_keys=None)
        store.record_round("old", 1, step_keys=json.dumps(["k"]))
        store.mark_step("k", "s", "old", "done", 12.0)  # wall time only, as stores before costs
        costs = round_costs(store, ["old"])
    assert not costs.costed.any()
    assert "no recorded cost" in cost_markdown(cost_summary(costs), "t")
