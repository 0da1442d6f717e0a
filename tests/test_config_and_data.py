from collections import Counter

import pytest
from pydantic import ValidationError

from east_tasks.config import load_config
from east_tasks.data.arith import (
    TIER_SPECS,
    TIERS,
    arith_splits,
    labelled_set,
    make_problem,
    make_split,
)
from east_tasks.data.sources import load_splits


def test_presets_validate_and_overrides_merge() -> None:
    cfg = load_config("tiny", weighting={"a": 1.5, "mapping": "exp"}, rounds=3)
    assert (cfg.weighting.a, cfg.weighting.mapping, cfg.rounds) == (1.5, "exp", 3)
    assert cfg.weighting.drop_all_correct  # untouched defaults survive a partial override
    gpu = load_config("gsm8k-1b")
    assert gpu.backend.dtype == "bfloat16" and gpu.data.source == "gsm8k"
    math = load_config("math-1.5b", base_model="/models/qwen-math")  # a local model dir instead of the hub's
    assert (math.data.answer_style, math.data.test_path, math.base_model) == (
        "math", "HuggingFaceH4/MATH-500", "/models/qwen-math")
    assert math.sampling.max_tokens == math.eval.max_tokens == 1024 < math.backend.max_model_len
    big = load_config("gsm8k-8b-lora")
    assert big.train.lora is not None and big.train.lora.r == 16 and big.backend.tensor_parallel_size == 1


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"weighting": {"mapping": "linear"}}, "weighting.mapping"),
        ({"sampling": {"n": 0}}, "sampling.n"),
        ({"backend": {"engine": "tgi"}}, "backend.engine"),
        ({"weighting": {"alpha": 1}}, "weighting.alpha"),  # typos are errors, not silently ignored
        ({"experiment": "bad name/.."}, "experiment"),
    ],
)
def test_invalid_config_names_the_field(overrides: dict, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        load_config("tiny", **overrides)
    assert field in str(err.value)


def test_eval_n_its_old_name_k_and_the_reported_ks() -> None:
    from east_tasks.config import EvalConfig

    assert (load_config("tiny").eval.n, load_config("tiny").eval.ks) == (0, ())
    assert (load_config("tiny-test").eval.n, load_config("tiny-test").eval.ks) == (4, (1, 2, 4))
    assert load_config("gsm8k-1b").eval.ks == (1, 2, 4, 8)  # powers of two up to n, and n
    assert EvalConfig(n=12).ks == (1, 2, 4, 8, 12) and EvalConfig(n=1).ks == (1,)
    assert EvalConfig(n=8, ks=[8, 1, 1]).ks == (1, 8)
    # eval.k, as configs, presets and recorded configs from before said it, is eval.n
    assert EvalConfig(k=4) == EvalConfig(n=4) == EvalConfig(k=4, n=4)
    assert load_config("tiny-test", eval={"k": 8}).eval == EvalConfig(n=8)  # over the preset's eval.n
    with pytest.raises(ValidationError, match="eval.k 8 and eval.n 4 disagree"):
        EvalConfig(k=8, n=4)
    with pytest.raises(ValidationError, match=r"eval.ks \[1, 8\]: each k must be in 1..eval.n \(4\)"):
        load_config("tiny-test", eval={"ks": [1, 8]})
    with pytest.raises(ValidationError, match=r"eval.ks \[1\]: each k must be in 1..eval.n \(0\)"):
        load_config("tiny", eval={"ks": [1]})


def test_backend_engine_and_its_old_name_backend() -> None:
    from east_tasks.config import BackendConfig

    # backend.backend, as configs and recorded configs from before said it, is backend.engine
    assert BackendConfig(backend="hf") == BackendConfig(engine="hf") == BackendConfig(backend="hf", engine="hf")
    assert load_config("tiny", backend={"backend": "hf"}).backend.engine == "hf"
    assert "backend" not in load_config("tiny").backend.model_dump()  # what east writes uses the new name
    with pytest.raises(ValidationError, match="backend.backend 'hf' and backend.engine 'vllm' disagree"):
        BackendConfig(backend="hf", engine="vllm")
    with pytest.raises(ValidationError, match="backend.engine"):
        load_config("tiny", backend={"backend": "tgi"})


def test_unknown_preset_lists_allowed() -> None:
    allowed = "tiny, tiny-skewed, tiny-guessable, tiny-test, gsm8k-1b, math-1.5b, gsm8k-8b-lora"
    with pytest.raises(ValueError, match=f"allowed: {allowed}"):
        load_config("huge")


def test_arith_problems_are_deterministic_and_splits_disjoint() -> None:
    import random

    hard = TIERS[-1]
    p = make_problem(random.Random(3), tier=hard)
    assert p == make_problem(random.Random(3), tier=hard)
    steps = p.solution.split(" #### ")[0].split(". ")
    assert len(steps) == TIER_SPECS[hard].steps and p.solution.endswith(f"#### {p.answer}")
    splits = arith_splits(300, 100, 120, seed=0)
    labelled = labelled_set((120, 100, 30, 20, 10, 5))
    named = {"pool": splits.pool, "validation": splits.validation, "test": splits.test, "labelled": labelled}
    questions = {name: {q.question for q in rows} for name, rows in named.items()}
    assert [len(q) for q in questions.values()] == [300, 100, 120, 285]  # distinct within each split
    assert sum(len(q) for q in questions.values()) == len(set().union(*questions.values()))  # disjoint
    assert {q.tier for q in splits.test} == set(TIERS)
    tiers = Counter(q.tier for q in labelled)
    assert tiers == {1: 120, 2: 100, 3: 30, 4: 20, 5: 10, 6: 5}
    with pytest.raises(ValueError, match="2 sizes given for 6 tiers"):
        labelled_set((1, 2))
    with pytest.raises(ValueError, match="unknown split 'train'; allowed: test, validation, pool, labelled"):
        make_split("train", 1)
    assert arith_splits(500, 100, 120, seed=0).test == splits.test  # growing the pool leaves test alone
    assert make_split("pool", 300, seed=1) != splits.pool


def test_reference_solutions_compute_their_answers() -> None:
    """Each step `x op k = y.` is arithmetically right, chains into the next and stays in range."""
    for p in arith_splits(200, 0, 10).pool + labelled_set((20, 20, 10, 10, 10, 10)):
        value = None
        for step in p.solution.split(" #### ")[0].rstrip(".").split(". "):
            lhs, rhs = step.split(" = ")
            x, op, k = lhs.split()
            assert value is None or int(x) == value
            value = {"+": int(x) + int(k), "-": int(x) - int(k)}[op]
            assert value == int(rhs) and value >= 0 and 1 <= int(k) <= 9
        assert str(value) == p.answer


def test_dataset_key_changes_with_the_data() -> None:
    k1, s1, _ = load_splits(load_config("tiny-test").data)
    k2, _, _ = load_splits(load_config("tiny-test", data={"seed": 1}).data)
    assert k1 != k2 and len(s1["pool"]) == 160 and len(s1["test"]) == 90


def test_cli_rejects_bad_values_before_loading_anything(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    out = CliRunner().invoke(app, ["run", "--mapping", "linear", "--data-dir", str(tmp_path)])
    assert out.exit_code == 2
    assert "weighting.mapping" in out.output and "allowed: power, exp" in out.output
    assert not (tmp_path / "east.duckdb").exists()  # nothing was started or written


def test_cli_set_reaches_any_field_and_is_validated(tmp_path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from flows.cli.common import parse_sets

    assert parse_sets(["train.lr=1e-5", "data.path=/d/gsm8k", "weighting.drop_all_correct=false"]) == {
        "train": {"lr": 1e-5}, "data": {"path": "/d/gsm8k"}, "weighting": {"drop_all_correct": False}}
    out = CliRunner().invoke(app, ["run", "--set", "sampling.n=0", "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and "sampling.n" in out.output
    out = CliRunner().invoke(app, ["run", "--set", "sampling.n", "--data-dir", str(tmp_path)])
    assert out.exit_code == 2 and "expected FIELD=VALUE" in out.output
    out = CliRunner().invoke(app, ["run", "--preset", "tiny-test", "--set", "eval.ks=[2,8]", "--data-dir",
                                   str(tmp_path)])
    assert out.exit_code == 2 and "eval.ks [2, 8]: each k must be in 1..eval.n (4)" in " ".join(out.output.split())
    # top-level fields through --set too (data_dir and experiment once crashed with a TypeError)
    out = CliRunner().invoke(app, ["run", "--set", f"data_dir={tmp_path}", "--set", "experiment=x",
                                   "--set", "rounds=2", "--set", "sampling.n=0"])
    assert out.exit_code == 2 and "sampling.n" in out.output and "TypeError" not in out.output
    out = CliRunner().invoke(app, ["sweep", "--set", f"data_dir={tmp_path}", "--data-dir", str(tmp_path / "other")])
    assert out.exit_code == 2 and "disagree" in out.output
    assert not (tmp_path / "east.duckdb").exists()


def test_experiments_recorded_before_new_config_fields_continue(tmp_path) -> None:
    """A store written before the data/train fields of issue 5 existed: the recorded config lacks them, and
    they compare as their defaults instead of blocking the experiment."""
    import json

    from east_tasks import steps
    from east_tasks.store import Store

    cfg = load_config("tiny-test", experiment="old", data_dir=tmp_path)
    recorded = json.loads(cfg.model_dump_json())
    for field in ("answer_style", "prompt", "pool_split", "test_split", "hub_config", "columns", "stop"):
        del recorded["data"][field]
    del recorded["train"]["lora"]
    recorded["eval"] = {"k" if f == "n" else f: v for f, v in recorded["eval"].items() if f != "ks"}  # eval.k's time
    with Store(cfg.store_path) as store:
        store.claim_experiment("old", json.dumps(recorded))
    steps.preflight(cfg)
    with pytest.raises(ValueError, match=r"data.prompt: 'zeroshot' -> 'fewshot'"):
        steps.preflight(load_config("tiny-test", experiment="old", data_dir=tmp_path, data={"prompt": "fewshot"}))
