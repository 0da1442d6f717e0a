"""The manual: every config field is described, the generated Reference says what the code says, the site builds
strictly (a broken link, a page left out of the nav or a stale reference fails), and the README stays short and
points only at files that exist."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
from pydantic import BaseModel

from east_tasks import config
from east_tasks.store import schema
from flows.cli import app

ROOT = Path(__file__).resolve().parents[1]


def _hook():
    spec = importlib.util.spec_from_file_location("docs_reference_hook", ROOT / "docs" / "hooks" / "reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = _hook()


def _models(model: type[BaseModel], prefix: str = ""):
    yield prefix, model
    for name, sub in reference.sections(model):
        yield f"{name}.", sub


def test_every_config_field_and_section_is_described():
    undescribed, undocumented = [], []
    for prefix, model in [*_models(config.ExperimentConfig), ("sweep.", config.SweepGrid)]:
        if not (model.__doc__ or "").strip():
            undocumented.append(model.__name__)
        for name, field in model.model_fields.items():
            if reference._sub_model(field.annotation) is None and not (field.description or "").strip():
                undescribed.append(prefix + name)
    assert undescribed == [], f"config fields without description=: {undescribed}"
    assert undocumented == [], f"config sections without a docstring: {undocumented}"


def test_config_reference_rows():
    page = reference.config_page()
    for prefix, model in _models(config.ExperimentConfig):
        for name in model.model_fields:
            assert f"| `{prefix}{name}` |" in page
    # hand-written expectations: type, default, bounds, description
    assert ("| `sampling.top_p` | `float` | `1.0` | > 0.0, ≤ 1.0 | nucleus sampling: the probability mass sampled "
            "from |") in page
    assert "| `weighting.a` | `float` | `0.0` | ≥ -10.0, ≤ 10.0 | sharpness; 0 = vanilla self-training |" in page
    assert "| `weighting.mapping` | `str` | `'power'` |  | uncertainty f to weight, then normalised to mean 1" in page
    assert "| `backend.engine` | `'vllm' | 'hf'` | `'vllm'` |" in page
    assert "| `experiment` | `str` | `'tiny'` | length ≤ 128, pattern `^[A-Za-z0-9][A-Za-z0-9_.-]*$` |" in page
    assert "| `balance.temperatures` | `tuple[float, ...]` | `(0.6, 0.8, 1.0, 1.2, 1.4)` | length ≥ 1 |" in page
    assert "default &lt;data_dir>/lake" in page  # not swallowed as an HTML tag
    assert "| `dpo` | `1e-06` |" in page  # DEFAULT_LR
    # presets
    assert "| `data.pool_size` | `2000` | `1000` | `1000` | `1000` | `160` | `7473` | `7500` | `7473` |" in page


def test_cli_reference_lists_every_command_and_option():
    page = reference.cli_page()
    commands = reference._commands(typer.main.get_command(app), "east")
    for path, command in commands:
        assert re.search(rf"^#+ {re.escape(path)}$", page, re.M), path
        for param in command.params:
            assert (f"`{param.opts[0]}`" if param.param_type_name == "option" else param.name.upper()) in page
    assert "| `--keep-last` | int, 1.. |  | also remove the checkpoints of every round before" in page
    assert "| `DEST` (argument) | Path | required | directory for the copy (DEST/east.duckdb) |" in page
    assert "| `--set` | list[str], repeatable |" in page


def test_schema_parsed_with_its_comments():
    sql = """
-- A table's comment; it may hold ");"
CREATE TABLE IF NOT EXISTS t (
    a VARCHAR, b INTEGER,  -- b's comment (x);
    -- the next line's comment
    c DOUBLE, d BIGINT,
    PRIMARY KEY (a, b));
CREATE TABLE IF NOT EXISTS u (k VARCHAR PRIMARY KEY, v JSON);
"""
    t, u = reference.parse_schema(sql)
    assert (t["name"], t["comment"]) == ("t", 'A table\'s comment; it may hold ");"')
    assert [(c["name"], c["type"], c["comment"]) for c in t["columns"]] == [
        ("a", "VARCHAR", "b's comment (x);"), ("b", "INTEGER", "b's comment (x);"),
        ("c", "DOUBLE", "the next line's comment"), ("d", "BIGINT", "the next line's comment")]
    assert (u["comment"], [c["name"] for c in u["columns"]]) == ("", ["k", "v"])
    page = reference.store_page()  # raises if its parse disagrees with schema.COLUMNS
    for table in schema.TABLES:
        assert f"\n## {table}\n" in page
    assert "| `label` | `BOOLEAN` | KTO: desirable (correct) or not; SFT / DPO rows are TRUE |" in page
    assert "| `tokens_trained` | `BIGINT` | what computing the step cost (east_tasks.cost); NULL in stores" in page
    assert "| `step_key` (key) | `VARCHAR` |" in page


def test_site_builds_strictly(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    out = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)], cwd=ROOT,
                         env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    config_html = (site / "reference" / "config" / "index.html").read_text()
    assert "weighting.require_wellformed_incorrect" in config_html and "gsm8k-8b-lora" in config_html
    assert "east store backup" in (site / "reference" / "cli" / "index.html").read_text()
    api = (site / "reference" / "api" / "weighting" / "index.html").read_text()
    assert "normalised_weights" in api and "Weights normalised to mean 1" in api  # mkdocstrings read the docstrings


def _tracked_files() -> list[Path]:
    try:
        out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [ROOT / p for p in out.splitlines()]


def test_readme_is_short_and_points_at_files_that_exist():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [link for link in links if not re.match(r"https?://", link)]
    assert local and [link for link in local if not (ROOT / link).exists()] == []
    paths = [p.rstrip(".") for p in re.findall(r"\b((?:east_tasks|flows|docs|bench|tests|deployments|docker)/[\w./-]*)",
                                              readme)]
    assert len(paths) > 20 and [p for p in paths if not (ROOT / p).exists()] == []


def test_no_file_points_outside_the_repository():
    forbidden = re.compile("|".join(re.escape(s) for s in ("../" + "shared", "DESIGN" + ".md", "ENVIRONMENT" + ".md")))
    offenders = [str(p.relative_to(ROOT)) for p in _tracked_files()
                 if p.is_file() and p.suffix in {".md", ".py", ".yml", ".yaml", ".toml", ".sh", ".txt", ""}
                 and forbidden.search(p.read_text(errors="ignore"))]
    assert offenders == []
