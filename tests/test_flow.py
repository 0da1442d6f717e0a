"""The real `self_train` flow: real Prefect server, real vLLM CPU build, real DuckDB, the real backbone."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from markdown_images import prefect_artifacts
from store_v0 import downgrade_to_v0
from typer.testing import CliRunner

from east_tasks.config import load_config
from east_tasks.store import SCHEMA_VERSION, Store
from flows.cli import app
from flows.self_train import self_train

# Store opens of the run below (round 0 and 2 rounds of tiny-test), as counted when this was written: more is a
# regression (docs/architecture.md, "The step runner"). Two of them check and claim the experiment's name.
OPENS_FRESH, OPENS_CACHED = 84, 35
TABLES = ["problems", "generations", "clusters", "question_stats", "training_examples", "checkpoints",
          "evaluations", "experiment_rounds", "step_status"]


def _counts(cfg) -> dict[str, int]:
    with Store(cfg.store_path) as s:
        return {t: s.con.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES}


def test_self_train_two_rounds_then_cached_rerun(finished_run, finished_run_cost, tmp_path) -> None:
    """The shared `finished_run` (tiny-test, a = 1, MLflow) as it was computed, then rerun: nothing recomputed."""
    cfg, first = finished_run
    name = cfg.experiment
    pool, val, test = cfg.data.pool_size, cfg.data.validation_size, cfg.data.test_size
    n, k = cfg.sampling.n, cfg.eval.n
    assert val > 0 and cfg.weighting.a == 1.0
    fresh_opens = finished_run_cost["store_opens"]
    counts = _counts(cfg)

    assert [r["round"] for r in first] == [0, 1, 2]
    for r in first:
        assert 0 <= r["greedy_acc"] <= r["pass_acc"] <= 1 and 0 <= r["maj_acc"] <= r["pass_acc"]
        assert r["n_questions"] == test and r["k"] == k and 0 <= r["val_greedy_acc"] <= 1
        assert 0 <= r["pass1"] <= 1 and r["pass_at_k"][k] == r["pass_acc"] and r["maj_at_k"][k] == r["maj_acc"]
        assert tuple(r["pass_at_k"]) == tuple(r["maj_at_k"]) == cfg.eval.ks
        assert sum(t["n"] for t in r["by_tier"].values()) == test
    assert first[0]["greedy_acc"] > 0.1  # the backbone has learned the task
    # 2 rounds of pool sampling; greedy + k samples on test and greedy on validation for 3 models (backbone,
    # round 1, 2)
    assert counts["generations"] == 2 * pool * n + 3 * test * (1 + k) + 3 * val
    assert counts["problems"] == pool + val + test
    assert counts["checkpoints"] == 2 and counts["evaluations"] == 2 * 3 and counts["experiment_rounds"] == 3
    assert counts["question_stats"] == 2 * pool

    with Store(cfg.store_path) as s:
        ex = s.query("SELECT weight_key, uncertainty, weight FROM training_examples")
        rounds = s.query("SELECT round, n_kept, model_hash FROM experiment_rounds ORDER BY round")
        steps = s.query("SELECT step, status, detail FROM step_status")
    for _, group in ex.groupby("weight_key"):
        assert np.isclose(group.weight.mean(), 1.0)  # normalised per round
        # a = 1, power mapping: weight proportional to entropy
        np.testing.assert_allclose(group.weight, group.uncertainty / group.uncertainty.mean())
    assert sorted(rounds.n_kept[1:]) == sorted(ex.groupby("weight_key").size())
    assert rounds.model_hash.nunique() == 3  # each round produced a new model
    # train.accumulate (tiny-test, like tiny): round 2 trains on round 1's kept examples as well as its own
    assert cfg.train.accumulate
    train_rows = sorted(json.loads(d)["examples"] for d in steps.detail[steps.step == "train"])
    assert train_rows == [rounds.n_kept[1], rounds.n_kept[1] + rounds.n_kept[2]]
    assert set(steps.status) == {"done"}
    # the data, 2 pool generations, 3 x (2 test + 1 validation) generations, 2 selections, 2 trainings,
    # 3 x 2 evaluations, 3 records: every step has its status row
    assert steps.step.str.startswith("generate pool").sum() == 2 and (steps.step == "train").sum() == 2
    assert (steps.step == "evaluate test").sum() == (steps.step == "evaluate validation").sum() == 3
    assert (steps.step == "data").sum() == 1 and steps.step.str.startswith("record round").sum() == 3
    assert len(steps) == 1 + 2 + 9 + 2 + 2 + 6 + 3

    with Store(cfg.store_path) as s:
        statuses = s.execute("SELECT step_key, status, updated_at FROM step_status ORDER BY step_key")
    opened = Store.opened
    second = self_train(cfg)
    cached_opens = Store.opened - opened
    assert _counts(cfg) == counts  # nothing regenerated, retrained or re-evaluated
    with Store(cfg.store_path) as s:  # no step computed, none even marked again
        assert s.execute("SELECT step_key, status, updated_at FROM step_status ORDER BY step_key") == statuses
    assert second == first
    # Store opens: two per computed step (look-up, commit) plus the chunks and reads of its work; one per cached
    # step.
    assert fresh_opens <= OPENS_FRESH and cached_opens <= OPENS_CACHED, (fresh_opens, cached_opens)

    # A store as the version before schema versions wrote it is migrated on open and found complete
    shutil.copytree(cfg.data_dir, tmp_path / "v0")  # on a copy: later tests read the shared run as it is
    cfg = cfg.model_copy(update={"data_dir": tmp_path / "v0"})
    with Store(cfg.store_path) as s:
        paths = s.execute("SELECT path FROM checkpoints ORDER BY ALL")
    downgrade_to_v0(cfg.store_path)  # with v0's absolute checkpoint paths
    with Store(cfg.store_path) as s:
        assert s.execute("SELECT value FROM store_info")[0][0] == str(SCHEMA_VERSION)
        assert s.execute("SELECT count(*) FROM prompts")[0][0] == pool + val + test
        assert s.execute("SELECT path FROM checkpoints ORDER BY ALL") == paths  # relative to the data dir again
        assert all(p.startswith("checkpoints/") for (p,) in paths)
        assert s.execute("SELECT experiment FROM experiments") == [(name,)]
    migrated = self_train(cfg)
    lucky = ("lucky_share", "lucky_by_tier")  # v0 had no steps check: a migrated store does not know its luck
    assert [{k: v for k, v in r.items() if k not in lucky} for r in migrated] == \
        [{k: v for k, v in r.items() if k not in lucky} for r in first]
    assert all(r["lucky_share"] is None for r in migrated) and first[1]["lucky_share"] is not None
    assert _counts(cfg) == counts

    data_dir = str(cfg.data_dir)
    out = CliRunner().invoke(app, ["report", "--json", "--data-dir", data_dir, "--experiment", name])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)[name]
    assert [r["greedy_acc"] for r in report] == [r["greedy_acc"] for r in first]
    assert (cfg.data_dir / "plots" / f"{name}-rounds.png").stat().st_size > 1000
    assert all((cfg.data_dir / "plots" / f"{name}-round-{r}-entropy.png").stat().st_size > 1000 for r in (1, 2))
    missing = CliRunner().invoke(app, ["report", "--data-dir", data_dir, "--experiment", "nope"])
    assert missing.exit_code == 1 and f"known: {name}" in " ".join(missing.output.split())

    # what the rounds cost: every step the two rounds ran, generation tokens exactly those stored
    out = CliRunner().invoke(app, ["report", "--cost", "--json", "--data-dir", data_dir])
    assert out.exit_code == 0, out.output
    (cost,) = json.loads(out.output)
    with Store(cfg.store_path) as s:
        keys = [k for (r,) in s.execute("SELECT step_keys FROM experiment_rounds WHERE round > 0")
                for k in json.loads(r)]
        tokens = s.execute("SELECT sum(num_tokens) FROM generations WHERE list_contains(?, gen_key)", [keys])[0][0]
        steps = s.query("SELECT cpu_s, tokens_trained FROM step_status WHERE list_contains(?, step_key)", [keys])
    assert cost["costed"] and cost["rounds"] == 2 and cost["tokens_generated"] == tokens
    assert cost["tokens_trained"] == steps.tokens_trained.sum() > 0 and steps.cpu_s.notna().all()
    assert cost["cpu_h"] > 0 and cost["gain_points"] == pytest.approx(100 * (first[-1]["greedy_acc"] -
                                                                             first[0]["greedy_acc"]))
    assert (cfg.data_dir / "plots" / "experiments-accuracy-vs-compute.png").stat().st_size > 1000

    _assert_tracked_in_mlflow(cfg, first)


def _assert_tracked_in_mlflow(cfg, rounds: list[dict]) -> None:
    """One run per experiment with each round's metrics once (the cached rerun added none), and each round's
    training curve as a nested run, logged by transformers' MLflow callback."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{cfg.data_dir.resolve()}/mlflow.db")
    runs = {r.info.run_name: r for r in client.search_runs(
        [client.get_experiment_by_name("east").experiment_id])}
    name = cfg.experiment
    assert set(runs) == {name, f"{name}-round-1", f"{name}-round-2"}
    parent = runs[name]
    assert parent.data.tags["east.experiment"] == name and parent.data.params["weighting.a"] == "1.0"
    history = client.get_metric_history(parent.info.run_id, "greedy_acc")
    assert sorted((m.step, m.value) for m in history) == [(r["round"], r["greedy_acc"]) for r in rounds]
    kept = client.get_metric_history(parent.info.run_id, "n_kept")
    assert sorted((m.step, m.value) for m in kept) == [(r["round"], r["n_kept"]) for r in rounds[1:]]
    for tier, acc in rounds[-1]["by_tier"].items():
        assert parent.data.metrics[f"greedy_acc_tier_{tier}"] == acc["greedy_acc"]
    assert parent.data.metrics["cpu_s"] > 0 and parent.data.metrics["tokens_trained"] > 0
    assert 0 < parent.data.metrics["entropy_share_positive"] <= 1
    with Store(cfg.store_path) as s:
        losses = [loss for (loss,) in s.execute("SELECT train_loss FROM checkpoints ORDER BY created_at")]
    for r, loss in zip((f"{name}-round-1", f"{name}-round-2"), losses, strict=True):
        child = runs[r]
        assert child.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert child.data.metrics["train_loss"] == pytest.approx(loss)
        assert client.get_metric_history(child.info.run_id, "loss")  # the curve, every logging_steps


def test_a_round_with_nothing_to_train_on_is_one_message_exit_2_and_not_retried(tmp_path, prefect_server) -> None:
    """One-token answers: no pool sample is correct, every question is filtered out. That is the user's to fix
    (the message says which filter and what to change), not a crash for Prefect to retry."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    pool = 40  # and a small evaluation of the backbone before the round: nothing here needs more
    out = CliRunner().invoke(app, ["run", "--preset", "tiny-test", "--experiment", "empty", "--rounds", "1",
                                   "--backend", "hf", "--data-dir", str(tmp_path), "--set", "sampling.max_tokens=1",
                                   *(f"--set={s}" for s in (f"data.pool_size={pool}", "data.test_size=10",
                                                            "data.validation_size=8", "eval.n=0"))])
    assert out.exit_code == 2, out.output
    assert (f"empty: no training examples: every one of the {pool} pool questions was filtered out ({pool} no "
            "sample was correct: raise sampling.n or sampling.temperature") in " ".join(out.output.split())
    assert "Traceback" not in out.output

    async def train_runs() -> list:
        async with get_client() as client:
            return await client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="train")))

    runs = [r for r in asyncio.run(train_runs()) if r.flow_run_id and r.state and r.state.is_failed()
            and "empty: no training examples" in r.state.message]  # not other tests' failed train runs
    assert len(runs) == 1 and runs[0].run_count == 1  # failed once, no retry
    assert "no training examples" in runs[0].state.message  # what the Prefect UI shows


def test_label_free_auto_balanced_round_then_a_collapse_is_refused(tmp_path, prefect_server) -> None:
    """balance.auto probes two temperatures and samples the round with the better one; majority pseudo-labels
    with the self-reward choose what is trained on; a pool that counts as collapsed is not trained on."""
    from east_tasks.core.answers import normalize_answer
    from east_tasks.errors import UserError

    temperatures = [0.6, 1.2]
    cfg = load_config("tiny-test", experiment="lf", rounds=1, data_dir=tmp_path, eval={"n": 0},
                      data={"pool_size": 96, "test_size": 30, "validation_size": 10},  # smaller than the preset
                      weighting={"labels": "majority", "self_reward": "logprob"},
                      balance={"auto": True, "temperatures": temperatures, "probe_size": 24})
    records = self_train(cfg)
    with Store(cfg.store_path) as s:
        probes = s.query("SELECT * FROM balance_probes WHERE experiment = 'lf' ORDER BY temperature")
        (pool_key, weight_key, step_keys), = s.execute("SELECT gen_key, weight_key, step_keys FROM experiment_rounds "
                                                       "WHERE experiment = 'lf' AND round = 1")
        gens = {k: s.query("SELECT problem_id, sample_idx, text, pred_answer, correct FROM generations WHERE gen_key "
                           "= ? ORDER BY problem_id, sample_idx", [k]) for k in [pool_key, *probes.gen_key]}
        labels = s.query("SELECT * FROM pseudo_labels WHERE weight_key = ?", [weight_key])
        monitor = s.query("SELECT * FROM round_monitor WHERE weight_key = ? ORDER BY tier", [weight_key])
        examples = s.query("SELECT problem_id, sample_idx FROM training_examples WHERE weight_key = ?", [weight_key])
        logps = s.query("SELECT problem_id, sample_idx, logp_sum / n_tokens AS mean_logp FROM response_logprobs "
                        "WHERE gen_key = ?", [pool_key])

    # the candidates, each on the first 24 pool questions; the better balance score chosen and sampled with
    assert list(probes.temperature) == temperatures and (probes.questions == 24).all()
    assert probes.chosen.sum() == 1 and probes.balance[probes.chosen].iloc[0] == probes.balance.max()
    chosen = probes[probes.chosen].iloc[0]
    assert len(gens[pool_key]) == cfg.data.pool_size * cfg.sampling.n
    probed = gens[pool_key][gens[pool_key].problem_id.isin(gens[chosen.gen_key].problem_id)].reset_index(drop=True)
    pd.testing.assert_frame_equal(probed, gens[chosen.gen_key])  # per-question seeds: the same samples
    assert set(probes.gen_key) <= set(json.loads(step_keys))  # the probes' cost is the round's
    shown = prefect_artifacts()["lf-round-1"]  # the round's artifact in the UI: its monitor and the probes' choice
    assert "exploration and exploitation (B-STaR's monitor)" in shown and f"**{chosen.balance:.3f}** (chosen)" in shown

    # pseudo-labels: the majority answer where it holds half the samples; their accuracy against gold
    pool = gens[pool_key]
    pool = pool.assign(answer=[None if pd.isna(a) else normalize_answer(a) for a in pool.pred_answer])
    for pid, group in pool.groupby("problem_id"):
        counts = group.answer.value_counts()
        label = labels.set_index("problem_id").answer.get(pid)
        if counts.iloc[0] / len(group) >= cfg.weighting.min_agreement and (len(counts) == 1 or
                                                                           counts.iloc[0] > counts.iloc[1]):
            assert label == counts.index[0]
        else:
            assert label is None or pd.isna(label)
    overall = monitor[monitor.tier == "all"].iloc[0]
    assert overall.labelled == labels.answer.notna().sum() > 0
    assert overall.label_accuracy == pytest.approx(labels.label_correct.dropna().mean())
    assert records[1]["label_accuracy"] == pytest.approx(overall.label_accuracy)
    assert 0 <= overall.precision <= 1 and overall.pass_at_n == pytest.approx(pool.groupby("problem_id")
                                                                              .correct.any().mean())
    assert set(monitor.tier) == {"all", *map(str, range(1, 7))}

    # each example is its question's most likely response with the pseudo-label's answer
    label_of = labels.set_index("problem_id").answer
    accepted = pool[pool.answer.eq(pool.problem_id.map(label_of))].merge(logps, on=["problem_id", "sample_idx"])
    assert len(examples) and accepted.mean_logp.notna().all()
    best = accepted.sort_values(["problem_id", "mean_logp", "sample_idx"], ascending=[True, False, True]) \
        .groupby("problem_id").head(1).set_index("problem_id").sample_idx
    assert examples.set_index("problem_id").sample_idx.to_dict() == best.loc[examples.problem_id].to_dict()

    # the same pool, called collapsed by a threshold no pool falls under: refused before training
    collapsing = cfg.model_copy(update={"experiment": "lf-collapse", "weighting": cfg.weighting.model_copy(
        update={"collapse_entropy": 10.0})})
    with pytest.raises(UserError, match="lf-collapse round 1: label-free self-training has collapsed: the pool's "
                                        "mean answer entropy is"):
        self_train(collapsing)
    with Store(cfg.store_path) as s:
        assert s.execute("SELECT max(round) FROM experiment_rounds WHERE experiment = 'lf-collapse'")[0][0] == 0
        assert s.execute("SELECT count(*) FROM checkpoints")[0][0] == 1  # lf's round only


def test_a_label_free_round_on_a_local_pool_without_answers(tmp_path, prefect_server) -> None:
    """Real users' label-free case: a JSONL pool with no answer column at all (a test split with answers): the
    round trains on majority pseudo-labels, and what needs gold is reported as unknown, not as zero."""
    from east_tasks.data.arith import arith_splits

    splits = arith_splits(pool_size=48, validation_size=0, test_size=30, seed=3)
    data = tmp_path / "unlabelled"
    data.mkdir()
    (data / "train.jsonl").write_text("".join(json.dumps({"question": p.question, "tier": p.tier}) + "\n"
                                              for p in splits.pool))
    (data / "test.jsonl").write_text("".join(json.dumps({"question": p.question, "answer": p.answer, "tier": p.tier})
                                             + "\n" for p in splits.test))
    out = CliRunner().invoke(app, [
        "run", "--preset", "tiny-test", "--experiment", "unlabelled", "--rounds", "1", "--data-dir",
        str(tmp_path / "store"), "--set", f"data.path={data}", "--set", "data.source=table", "--set",
        "data.answer_style=gsm8k", "--set", "data.prompt=zeroshot", "--set", 'data.columns={"tier": "tier"}',
        "--set", "data.pool_size=48", "--set", "data.validation_size=0", "--set", "data.test_size=30",
        "--set", "eval.n=0", "--set", "weighting.labels=majority"])
    assert out.exit_code == 0, out.output
    with Store(tmp_path / "store" / "east.duckdb") as s:
        (weight_key, n_kept), = s.execute("SELECT weight_key, n_kept FROM experiment_rounds WHERE round = 1")
        labels = s.query("SELECT * FROM pseudo_labels WHERE weight_key = ?", [weight_key])
        monitor = s.query("SELECT * FROM round_monitor WHERE weight_key = ? AND tier = 'all'", [weight_key]).iloc[0]
        pool_answers = s.query("SELECT DISTINCT answer FROM problems WHERE split = 'pool'").answer.tolist()
    assert pool_answers == [""] and len(labels) == 48 and labels.label_correct.isna().all()
    assert 0 < monitor.labelled == labels.answer.notna().sum() and n_kept > 0
    assert pd.isna(monitor.pass_at_n) and pd.isna(monitor.balance) and pd.isna(monitor.label_accuracy)
