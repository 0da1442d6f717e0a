"""Choosing from a sweep on validation: the setting validation picks (vanilla included), its test accuracy, and its
paired difference to vanilla with a Student-t interval, numbers worked out by hand."""

from __future__ import annotations

import pandas as pd
import pytest

from east_tasks.report.markdown import chosen_line
from east_tasks.report.statistics import choose_on_validation, paired_differences, sweep_summary


def _sweep() -> pd.DataFrame:
    rows = []
    settings = {  # (a, band): per-seed (test, validation) after the last round
        (0.0, ""): [(0.50, 0.50), (0.52, 0.51), (0.54, 0.52)],
        (0.0, "[0.2,0.8]"): [(0.53, 0.53), (0.54, 0.55), (0.58, 0.57)],
        (0.5, ""): [(0.49, 0.52), (0.55, 0.50), (0.53, 0.51)],
    }
    for (a, band), seeds in settings.items():
        for seed, (test, val) in enumerate(seeds):
            rows.append({"experiment": f"{a}-{band}-{seed}", "seed": seed, "round": 2, "loss": "sft",
                         "strategy": "entropy", "mapping": "power", "a": a, "band": band, "greedy_acc": test,
                         "val_greedy_acc": val, "pass1": None, "maj_acc": None, "pass_acc": None})
    return pd.DataFrame(rows)


def test_validation_picks_the_band_and_reports_its_paired_test_difference() -> None:
    df = _sweep()
    chosen = choose_on_validation(sweep_summary(df), paired_differences(df))
    assert chosen["setting"] == "SFT vanilla band [0.2,0.8]" and chosen["band"] == "[0.2,0.8]"
    assert chosen["validation"] == pytest.approx(0.55) and chosen["test"] == pytest.approx(0.55)
    # test differences to vanilla by seed: +3, +2, +4 points: mean 3, sd 1, half-width t(0.975, 2) / sqrt(3)
    assert chosen["paired_test"] == pytest.approx(3.0)
    assert chosen["paired_test_hw"] == pytest.approx(4.302653 / 3 ** 0.5, rel=1e-5)
    assert chosen["paired_val"] == pytest.approx(4.0) and chosen["paired_test_seeds"] == 3
    line = chosen_line(chosen)
    assert line.startswith("chosen on validation: SFT vanilla band [0.2,0.8] (validation 0.550, 3 seeds): test 0.550")
    assert "test +3.00 ± 2.48 points" in line


def test_vanilla_can_be_the_choice() -> None:
    df = _sweep()
    df = df[df.band == ""]  # without the band, EAST's validation (0.51) does not beat vanilla's (0.51) by the mean
    df.loc[df.a == 0.5, "val_greedy_acc"] -= 0.01
    chosen = choose_on_validation(sweep_summary(df), paired_differences(df))
    assert chosen["setting"] == "SFT vanilla" and "reference" not in chosen
    assert chosen_line(chosen).endswith("(it is vanilla)")
