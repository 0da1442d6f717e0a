"""`import east`: the Python API for notebooks, and docs/python-api.md's example run as it is written, in a copy of
the finished run's data dir (every step a cache hit)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import east
from east_tasks.config import load_config
from east_tasks.store import Store

DOC = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def _example() -> str:
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) == 1, "docs/python-api.md has one example; this test runs it"
    return blocks[0]


def test_the_documented_example_runs_and_returns_the_runs_results(finished_run, tmp_path, monkeypatch, capsys) -> None:
    cfg, records = finished_run
    shutil.copytree(cfg.data_dir, tmp_path / "data", ignore=shutil.ignore_patterns(".locks"))
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    exec(compile(_example(), str(DOC), "exec"), namespace)  # the doc's own code, not a copy of it
    results = namespace["results"]
    # the same configuration under another name: every step found in the store, the same numbers
    assert results["round"].tolist() == [0, 1, 2]
    for m in ("greedy_acc", "maj_acc", "pass_acc", "val_greedy_acc"):
        assert results[m].tolist() == [r[m] for r in records]
    assert results.model_hash.tolist() == [r["model_hash"] for r in records]
    assert namespace["model_dir"] == Path("exports/demo-model")
    assert namespace["model"].num_parameters() > 0 and namespace["tokenizer"].eos_token == "</s>"
    dataset = namespace["dataset"]
    assert dataset.num_rows == records[2]["n_kept"] and dataset.column_names[:2] == ["prompt", "completion"]
    assert set(dataset["experiment"]) == {"demo"}
    with Store(tmp_path / "data" / "east.duckdb") as store:  # found in the store: "demo" computed only its records
        computed = store.query("SELECT DISTINCT step FROM step_status WHERE experiment = 'demo'").step.tolist()
    assert sorted(computed) == ["record round 0", "record round 1", "record round 2"]
    printed = capsys.readouterr().out
    assert "greedy_acc" in printed and "num_rows" in printed


def test_results_export_and_errors_by_name(finished_run, tmp_path) -> None:
    cfg, records = finished_run
    assert east.load_config is load_config
    frame = east.results("finished", data_dir=cfg.data_dir)
    assert frame.greedy_acc.tolist() == [r["greedy_acc"] for r in records]
    assert east.results(cfg).model_hash.tolist() == frame.model_hash.tolist()  # a config names its data dir
    out = east.export_model("finished", tmp_path / "r1", round=1, data_dir=cfg.data_dir)
    from east_tasks.io import hash_dir

    assert hash_dir(out) == records[1]["model_hash"] and (out / "README.md").exists()
    accumulated = east.export_data(cfg, tmp_path / "all", accumulated=True)
    assert accumulated.num_rows == records[1]["n_kept"] + records[2]["n_kept"]
    with pytest.raises(east.UserError, match="no experiment 'nosuch'.*known: finished"):
        east.results("nosuch", data_dir=cfg.data_dir)
    with pytest.raises(east.UserError, match="no store at"):
        east.results("finished", data_dir=tmp_path / "empty")
