"""The deployments' entry flows, short of loading a model: form fields reach the config, and `next-round`
continues from (or stops at) what the store recorded."""

from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.errors import UserError
from east_tasks.steps import EvalKeys, ModelRef
from east_tasks.steps.experiments import round_checkpoint
from east_tasks.store import Store
from flows.cli import app
from flows.entrypoints import next_round, start_experiment


def _record(cfg, rounds: int, tmp_path) -> None:
    steps.claim_experiment(cfg)
    for r in range(rounds + 1):
        ckpt = tmp_path / "checkpoints" / f"r{r}"
        ckpt.mkdir(parents=True)
        steps.record_round(cfg, r, ModelRef(path=str(ckpt), hash=f"h{r}"), EvalKeys(test=f"e{r}"),
                           weight_key=f"w{r}" if r else None)


def test_round_checkpoint_reads_the_latest_round_and_names_what_is_missing(tmp_path) -> None:
    with pytest.raises(UserError, match="no store at"):
        round_checkpoint(tmp_path, "exp")
    cfg = load_config("tiny-test", experiment="exp", data_dir=tmp_path, weighting={"a": 1.0})
    _record(cfg, 2, tmp_path)
    state = round_checkpoint(tmp_path, "exp")
    assert state.last_round == 2 and state.model.hash == "h2" and state.config.rounds == 2
    assert state.config.weighting.a == 1.0 and state.config.data.pool_size == 160
    assert state.model.weight_keys == ("w1", "w2")  # the selections that trained it: accumulating, again
    assert round_checkpoint(tmp_path, "exp", 1).model.path.endswith("r1")
    assert round_checkpoint(tmp_path, "exp", 1).model.weight_keys == ("w1",)
    assert round_checkpoint(tmp_path, "exp", 0).model.weight_keys == ()
    with pytest.raises(ValueError, match="no experiment 'other'.*known experiments: exp"):
        round_checkpoint(tmp_path, "other")
    (tmp_path / "checkpoints" / "r2").rmdir()
    with pytest.raises(ValueError, match="round 2: checkpoint .*r2 is missing"):
        round_checkpoint(tmp_path, "exp")


def _logged(flow_run_id, timeout_s: float = 60) -> list[str]:
    """The messages of a flow run's logs on the Prefect server, once there are any: logs reach the API a moment
    after the run."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    deadline = time.time() + timeout_s
    with get_client(sync_client=True) as client:
        while not (logs := client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])))) \
                and time.time() < deadline:
            time.sleep(0.5)
    return [log.message for log in logs]


def test_next_round_at_the_limit_does_nothing_and_says_why(tmp_path, prefect_server) -> None:
    """What a scheduled run of the next-round deployment does once the experiment has its rounds: nothing, and its
    log, shown on the run's page, says why."""
    cfg = load_config("tiny-test", experiment="sched", data_dir=tmp_path)
    _record(cfg, 2, tmp_path)
    state = next_round(experiment="sched", max_rounds=2, data_dir=str(tmp_path), return_state=True)
    assert state.result() == {"experiment": "sched", "round": 2, "ran": False}
    assert "sched has done 2 rounds, max_rounds=2: nothing to do" in _logged(state.state_details.flow_run_id)
    with Store(cfg.store_path) as store:
        assert store.execute("SELECT max(round), count(*) FROM experiment_rounds")[0] == (2, 3)
        # only the three records _record wrote: next-round computed nothing
        assert store.execute("SELECT step, count(*) FROM step_status GROUP BY ALL ORDER BY 1") == \
            [("record round 0", 1), ("record round 1", 1), ("record round 2", 1)]


def test_form_fields_reach_the_config_before_anything_loads(tmp_path, prefect_server) -> None:
    cfg = load_config("tiny-test", experiment="form", data_dir=tmp_path)
    _record(cfg, 0, tmp_path)
    # The recorded experiment has the defaults; each form field shows up in the refusal's diff.
    for field, value, diff in (("a", 1.5, "weighting.a: 0.0 -> 1.5"), ("loss", "dpo", "train.loss: 'sft' -> 'dpo'"),
                               ("pool_size", 40, "data.pool_size: 160 -> 40"),
                               ("samples_per_question", 4, "sampling.n: 8 -> 4")):
        with pytest.raises(ValueError, match=f"{diff}.*choose a new experiment name"):
            start_experiment(experiment="form", preset="tiny-test", data_dir=str(tmp_path), **{field: value})


def test_the_forms_data_and_sampling_fields_reach_the_config(tmp_path, prefect_server) -> None:
    cfg = load_config("tiny-test", experiment="form", data_dir=tmp_path)
    _record(cfg, 0, tmp_path)
    form = {"source": "table", "data_path": "/data/q", "hub_config": "main", "question_column": "problem",
            "answer_column": "final", "solution_column": "worked", "tier_column": "level", "answer_style": "math",
            "prompt": "fewshot", "validation_size": 4, "test_size": 5, "temperature": 1.1, "max_tokens": 40,
            "eval_max_tokens": 50}
    with pytest.raises(UserError) as err:  # the refusal's diff: every field, where it went
        start_experiment(experiment="form", preset="tiny-test", data_dir=str(tmp_path), **form)
    assert ("another configuration (data.answer_style: 'gsm8k' -> 'math'; data.columns.answer: None -> 'final'; "
            "data.columns.question: None -> 'problem'; data.columns.solution: None -> 'worked'; data.columns.tier: "
            "None -> 'level'; data.hub_config: None -> 'main'; data.path: None -> '/data/q'; data.prompt: 'zeroshot' "
            "-> 'fewshot'; data.source: 'arith' -> 'table'; data.test_size: 90 -> 5; data.validation_size: 40 -> 4; "
            "eval.max_tokens: 96 -> 50; sampling.max_tokens: 96 -> 40; sampling.temperature: 0.8 -> 1.1); choose a "
            "new experiment name") in str(err.value)


@pytest.mark.parametrize(("sets", "form"), [
    (["data.source=gsm8k"], {"source": "gsm8k"}),
    (["data.source=table", "data.path=/q", "data.answer_style=latex"],
     {"source": "table", "data_path": "/q", "answer_style": "latex"}),
])
def test_bad_form_input_is_the_clis_one_line(tmp_path, prefect_server, sets: list[str], form: dict) -> None:
    cli = CliRunner().invoke(app, ["run", "--preset", "tiny-test", "--data-dir", str(tmp_path),
                                   *(f"--set={s}" for s in sets)], env={"COLUMNS": "1000"})
    assert cli.exit_code == 2, cli.output
    (line,) = cli.output.strip().splitlines()
    assert line.startswith("invalid configuration: data")
    with pytest.raises(UserError) as err:
        start_experiment(preset="tiny-test", data_dir=str(tmp_path), **form)
    assert str(err.value) == line
