"""`east export model|data`: a round's model as a Hugging Face directory with a model card, and its training rows in
TRL's columns, both checked against the finished run's store and checkpoints (`finished_run`, read only; a test
that changes the data dir copies it first)."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml
from typer.testing import CliRunner

from east_tasks.errors import UserError
from east_tasks.io import hash_dir
from east_tasks.paths import BACKBONE_DIR
from east_tasks.report import export
from east_tasks.store import Store
from flows.cli import app

MODEL_FILES = ["README.md", "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
               "tokenizer_config.json"]


def _east(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(app, [str(a) for a in args])
    return out.exit_code, out.output


def _rounds(data_dir: Path) -> pd.DataFrame:
    with Store(data_dir / "east.duckdb") as store:
        return store.query("SELECT round, model_path, model_hash, weight_key, n_kept, config FROM experiment_rounds "
                           "WHERE experiment = 'finished' ORDER BY round").set_index("round")


def _table(markdown: str, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header line starts with `header`, below its separator."""
    lines = markdown.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header)) + 2
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip() for c in line.strip("|").split("|")])
    return rows


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _greedy(model_dir: Path, prompt: str) -> tuple[list[int], list[int]]:
    """The greedy tokens (prompt included) of the model in `model_dir`, and the prompt's tokens."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        return model.generate(ids, max_new_tokens=24, do_sample=False)[0].tolist(), ids[0].tolist()


@pytest.fixture(scope="module")
def model_export(finished_run, tmp_path_factory) -> tuple[Path, Path, str]:
    cfg, _ = finished_run
    out = tmp_path_factory.mktemp("export") / "finished-r2"
    code, output = _east("export", "model", "finished:2", out, "--data-dir", cfg.data_dir)
    assert code == 0, output
    return cfg.data_dir, out, output


def test_export_model_is_a_transformers_directory_with_the_checkpoints_weights(model_export) -> None:
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    data_dir, out, output = model_export
    r2 = _rounds(data_dir).loc[2]
    checkpoint = data_dir / r2.model_path
    assert f"finished:2 (model {r2.model_hash})" in output
    assert sorted(p.name for p in out.iterdir()) == MODEL_FILES
    assert _sha256(out / "model.safetensors") == _sha256(checkpoint / "model.safetensors")
    assert hash_dir(out) == r2.model_hash  # weights, config, tokenizer and generation config, all the checkpoint's
    loaded = AutoModelForCausalLM.from_pretrained(out).state_dict()
    stored = load_file(checkpoint / "model.safetensors")
    assert set(stored) <= set(loaded) and all(torch.equal(loaded[k], v) for k, v in stored.items())
    prompt = "Q: Tom has 3 apples and buys 4 more. How many apples does he have?\nA:"
    tokens, prompt_ids = _greedy(out, prompt)
    assert (tokens, prompt_ids) == _greedy(checkpoint, prompt) and len(tokens) > len(prompt_ids)  # it generated


def test_model_card_says_what_the_model_is_how_it_was_made_and_how_it_does(model_export, finished_run) -> None:
    _, records = finished_run
    data_dir, out, _ = model_export
    card = (out / "README.md").read_text()
    _, front, body = card.split("---\n", 2)
    meta = yaml.safe_load(front)
    assert meta == {"library_name": "transformers", "pipeline_tag": "text-generation",
                    "tags": ["east", "self-training"]}
    for section in ("## Base model", "## Method and weighting", "## Rounds", "## Data", "## Accuracy per round",
                    "## Compute", "## How it was produced"):
        assert section in body
    cfg, _ = finished_run
    assert "loss `sft`" in body and f"a = {cfg.weighting.a}" in body and "a = 0 is vanilla self-training" in body
    assert "pool 160 questions, validation 40, test 90" in body and "answer style `gsm8k`" in body
    # the accuracy table: one row per round 0..2, test greedy, maj@k, pass@k (eval.n = 4) and validation greedy
    accuracy = _table(body, "| round | test greedy |")
    assert [row[0] for row in accuracy] == ["0 (base model)", "1", "2"]
    for r, cells in zip(records, accuracy, strict=True):
        assert cells[1:] == [f"{r[m]:.3f}" for m in ("greedy_acc", "maj_acc", "pass_acc", "val_greedy_acc")] + [
            str(r["n_kept"] or "-")]
    compute = _table(body, "| round | wall s |")
    assert [row[0] for row in compute] == ["0", "1", "2"]
    assert all(float(c.replace(",", "")) > 0 for row in compute[1:] for c in row[4:])  # tokens generated, trained
    assert "accuracy gained over the backbone per unit of compute" in body
    recorded = json.loads(_rounds(data_dir).loc[2].config)
    assert json.loads(body.split("```json\n", 1)[1].split("```", 1)[0]) == recorded


def test_card_front_matter_names_hub_models_and_datasets() -> None:
    cfg = {"base_model": "Qwen/Qwen2.5-Math-1.5B-Instruct",
           "data": {"path": "DigitalLearningGmbH/MATH-lighteval", "test_path": "HuggingFaceH4/MATH-500"}}
    meta = yaml.safe_load(export._front_matter(cfg).strip("-\n"))
    assert meta["base_model"] == "Qwen/Qwen2.5-Math-1.5B-Instruct"
    assert meta["datasets"] == ["DigitalLearningGmbH/MATH-lighteval", "HuggingFaceH4/MATH-500"]
    local = yaml.safe_load(export._front_matter({"base_model": str(BACKBONE_DIR), "data": {}}).strip("-\n"))
    assert "base_model" not in local and "datasets" not in local


def test_targets_default_to_the_last_round_and_round_0_is_the_base_model(finished_run, tmp_path) -> None:
    cfg, _ = finished_run
    assert export.parse_target("finished") == ("finished", None)
    assert export.parse_target("finished:0") == ("finished", 0)
    with pytest.raises(UserError, match="EXPERIMENT:ROUND with ROUND a number"):
        export.parse_target("finished:last")
    with Store(cfg.data_dir / "east.duckdb") as store:
        last = export.find_round(store, "finished")
        assert (last.round, sorted(last.weight_keys)) == (2, [1, 2])
        assert export.find_round(store, "finished", 1).weight_keys == {1: last.weight_keys[1]}
    code, output = _east("export", "model", "finished:0", tmp_path / "base", "--data-dir", cfg.data_dir)
    assert code == 0, output
    assert hash_dir(tmp_path / "base") == hash_dir(BACKBONE_DIR) == _rounds(cfg.data_dir).loc[0].model_hash
    assert "# finished, round 0" in (tmp_path / "base" / "README.md").read_text()


def test_bad_targets_and_directories_are_one_line_each(finished_run, tmp_path) -> None:
    cfg, _ = finished_run
    cases = [(["model", "nosuch", tmp_path / "a"], "no experiment 'nosuch' in"),
             (["model", "finished:7", tmp_path / "a"], "'finished' has no round 7; recorded rounds: 0, 1, 2"),
             (["data", "finished:x", tmp_path / "a"], "'finished:x': expected EXPERIMENT or EXPERIMENT:ROUND"),
             (["data", "finished:0", tmp_path / "a"], "finished:0 is the base model: it trained on nothing")]
    for args, message in cases:
        code, output = _east("export", *args, "--data-dir", cfg.data_dir)
        assert (code, output.count("\n")) == (2, 1) and message in output, output
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    for extra in ([], ["--overwrite"]):  # --overwrite replaces an earlier export only
        code, output = _east("export", "model", "finished", tmp_path / "mine", "--data-dir", cfg.data_dir, *extra)
        assert code == 2 and "exists and is not empty" in output and (tmp_path / "mine" / "notes.txt").exists()
    assert not list(tmp_path.glob(".*tmp*"))  # nothing left beside it
    for target, extra in (("finished:1", []), ("finished:2", ["--overwrite"])):
        code, output = _east("export", "model", target, tmp_path / "again", "--data-dir", cfg.data_dir, *extra)
        assert code == 0, output
    assert "# finished, round 2" in (tmp_path / "again" / "README.md").read_text()


def test_a_missing_or_altered_checkpoint_is_refused(finished_run, tmp_path) -> None:
    cfg, _ = finished_run
    data = tmp_path / "data"
    shutil.copytree(cfg.data_dir, data, ignore=shutil.ignore_patterns(".locks"))
    rounds = _rounds(data)
    shutil.rmtree(data / rounds.loc[1].model_path)
    code, output = _east("export", "model", "finished:1", tmp_path / "r1", "--data-dir", data)
    assert code == 2 and "checkpoint" in output and "is missing" in output and not (tmp_path / "r1").exists()
    (data / rounds.loc[2].model_path / "config.json").write_text("{}")
    code, output = _east("export", "model", "finished:2", tmp_path / "r2", "--data-dir", data)
    assert code == 3 and f"not the {rounds.loc[2].model_hash} the store recorded" in output


def test_push_to_hub_offline_fails_in_one_line_and_keeps_the_export(finished_run, tmp_path, monkeypatch) -> None:
    """No machine here reaches the hub: offline (HF_HUB_OFFLINE=1) the upload fails at once, the export stays."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read once, when it was imported
    cfg, _ = finished_run
    out = tmp_path / "pushed"
    code, output = _east("export", "model", "finished", out, "--data-dir", cfg.data_dir, "--push-to-hub", "me/tiny")
    assert code == 3, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("--push-to-hub me/tiny: OfflineModeIsEnabled") and f"hf upload me/tiny {out}" in last
    assert sorted(p.name for p in out.iterdir()) == MODEL_FILES


# --- the data ----------------------------------------------------------------------------------------------------
def _stored_rows(data_dir: Path, weight_key: str) -> pd.DataFrame:
    """The round's rows as the store has them, joined here independently of the export's query."""
    with Store(data_dir / "east.duckdb") as store:
        return store.query(
            "SELECT p.prompt, g.text, t.weight, s.entropy, t.problem_id FROM training_examples t JOIN generations g "
            "USING (gen_key, problem_id, sample_idx) JOIN prompts p USING (prompt_key) JOIN question_stats s "
            "USING (weight_key, problem_id) WHERE t.weight_key = ? ORDER BY t.example_idx", [weight_key])


def test_export_data_is_the_rounds_kept_rows_in_trl_sft_columns(finished_run, tmp_path) -> None:
    import datasets

    cfg, records = finished_run
    rounds = _rounds(cfg.data_dir)
    code, output = _east("export", "data", "finished:2", tmp_path / "d2", "--data-dir", cfg.data_dir)
    assert code == 0, output
    assert sorted(p.name for p in (tmp_path / "d2").iterdir()) == ["README.md", "data.parquet", "dataset"]
    columns = ["prompt", "completion", "weight", "entropy", "problem_id", "round", "experiment"]
    ds = datasets.load_from_disk(str(tmp_path / "d2" / "dataset"))
    assert ds.column_names == columns and ds.features["round"].dtype == "int32"
    frame = ds.to_pandas()
    assert len(frame) == rounds.loc[2].n_kept == records[2]["n_kept"] > 0
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "d2" / "data.parquet"), frame)
    stored = _stored_rows(cfg.data_dir, rounds.loc[2].weight_key)
    assert frame.prompt.tolist() == stored.prompt.tolist() and frame.completion.tolist() == stored.text.tolist()
    assert frame.weight.tolist() == stored.weight.tolist() and frame.entropy.tolist() == stored.entropy.tolist()
    assert frame.weight.mean() == pytest.approx(1.0) and (frame.entropy > 0).all()  # kept: some answer disagreed
    assert set(frame["round"]) == {2} and set(frame.experiment) == {"finished"}
    assert frame.prompt.str.startswith("Q: ").all() and frame.prompt.str.endswith("\nA:").all()


def test_export_data_accumulated_is_what_the_round_trained_on(finished_run, tmp_path) -> None:
    cfg, _ = finished_run
    rounds = _rounds(cfg.data_dir)
    for target, out, extra in (("finished:1", "d1", []), ("finished:2", "all", ["--accumulated"])):
        code, output = _east("export", "data", target, tmp_path / out, "--data-dir", cfg.data_dir, *extra)
        assert code == 0, output
    own = pd.read_parquet(tmp_path / "d1" / "data.parquet")
    union = pd.read_parquet(tmp_path / "all" / "data.parquet")
    assert len(union) == rounds.loc[1].n_kept + rounds.loc[2].n_kept
    assert union["round"].tolist() == [1] * rounds.loc[1].n_kept + [2] * rounds.loc[2].n_kept
    pd.testing.assert_frame_equal(union[union["round"] == 1].reset_index(drop=True), own)  # round 1's own weights
    assert union.weight.mean() == pytest.approx(1.0)


def test_trl_columns_for_each_loss() -> None:
    """Hand-made store rows: DPO's chosen is the response and rejected its pair; KTO's label is TRL's bool;
    a baseline strategy also gets the uncertainty its weight was mapped from."""
    rows = pa.table({"prompt": ["Q: 1+1\nA:", "Q: 2+3\nA:"], "response": [" 2", " 6"], "rejected": [" 3", None],
                     "label": pa.array([True, False]), "weight": [1.5, 0.5], "entropy": [1.0, 0.5],
                     "uncertainty": [0.9, 0.1], "problem_id": ["p1", "p2"], "round": pa.array([1, 1], pa.int64())})
    dpo = export.trl_table(rows, "dpo", "e", with_uncertainty=False)
    assert dpo.column_names == ["prompt", "chosen", "rejected", *export.EAST_COLUMNS]
    assert dpo["chosen"].to_pylist() == [" 2", " 6"] and dpo["rejected"].to_pylist() == [" 3", None]
    kto = export.trl_table(rows, "kto", "e", with_uncertainty=True)
    assert kto.column_names == ["prompt", "completion", "label", *export.EAST_COLUMNS, "uncertainty"]
    assert kto.schema.field("label").type == pa.bool_() and kto["label"].to_pylist() == [True, False]
    assert kto["experiment"].to_pylist() == ["e", "e"] and kto["uncertainty"].to_pylist() == [0.9, 0.1]
    sft = export.trl_table(rows, "sft", "e", with_uncertainty=False)
    assert sft.column_names[:2] == ["prompt", "completion"] and "label" not in sft.column_names


def test_export_without_a_subcommand_still_writes_the_store_tables(finished_run, tmp_path) -> None:
    cfg, _ = finished_run
    code, output = _east("export", "--parquet", tmp_path / "pq", "--data-dir", cfg.data_dir)
    assert code == 0 and "experiment_rounds.parquet: 3 rows" in output
    code, output = _east("export")
    assert code == 2 and "--parquet" in output and "model" in output and "data" in output
