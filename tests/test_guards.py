"""Nothing silently breaks the model or the experiment (issue 35): a training step whose numbers stop being numbers
fails at once; a round that wrecks the model on validation is rejected, recorded and shown, and the experiment stays
at its last accepted round; a moved checkout or data directory is the same experiment; `east store check` hashes
every checkpoint; a data dir that cannot work is one line before anything starts.

The runs reuse the session's finished run (a copy of its data dir): an experiment that differs from it in the train
settings only finds its round 0, pool and selection stored and computes from the train step on."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from east_tasks.config import load_config
from east_tasks.core.guard import noise, rejects, validation_drop
from east_tasks.errors import UserError
from east_tasks.io import hash_dir
from east_tasks.paths import BACKBONE_DIR
from east_tasks.steps.experiments import _refuse_another, is_embedded_backbone, same_model
from east_tasks.store import Store
from flows.cli import app

EAST = str(Path(sys.executable).parent / "east")


def _east(*args: str | Path) -> tuple[int, str]:
    out = CliRunner().invoke(app, [str(a) for a in args])
    return out.exit_code, " ".join(out.output.split())  # a line the terminal width wrapped, whole again


def _copy(finished_run, tmp_path: Path) -> Path:
    cfg, _ = finished_run
    data = tmp_path / "data"
    shutil.copytree(cfg.data_dir, data, ignore=shutil.ignore_patterns(".locks"))
    return data


def _finished_variant(data: Path, experiment: str, *sets: str) -> list[str]:
    """`east run` of the finished run's configuration under another name, one round, with more --set."""
    return ["run", "--preset", "tiny-test", "--experiment", experiment, "--rounds", "1", "--a", "1.0",
            "--data-dir", str(data), *(a for s in sets for a in ("--set", s))]


# --- the guards' decisions ----------------------------------------------------------------------------------------
def test_the_validation_guard_rejects_a_drop_past_its_limit_and_past_the_noise() -> None:
    assert validation_drop(0.40, 0.30) == pytest.approx(10.0)
    assert noise(0.5, 0.5, 500) == pytest.approx(6.32, abs=0.01) and noise(0.4, 0.4, 40) == pytest.approx(21.9, abs=0.1)
    assert rejects(0.40, 0.00, 40, 5.0)  # a wrecked model: 40 points on 40 questions
    assert not rejects(0.40, 0.30, 40, 5.0)  # 4 questions of 40 flipping: noise
    assert rejects(0.55, 0.45, 2000, 5.0) and not rejects(0.55, 0.45, 2000, 10.0)  # past the noise: the limit decides
    assert not rejects(0.55, 0.50, 10**6, 5.0)  # exactly the limit is accepted
    assert not rejects(0.40, 0.00, 40, None) and not rejects(0.30, 0.50, 40, 0.0)  # off; a rise


def test_the_guard_enters_no_key_nor_the_experiments_identity(tmp_path) -> None:
    """A config with the guard at its default dumps the train fields every checkpoint key reads unchanged, and an
    experiment's recorded config compares equal whatever its guard says (relaxing it accepts a round)."""
    cfg = load_config("tiny-test", data_dir=tmp_path)
    assert cfg.guard.max_val_drop == 5.0 and "guard" not in cfg.train.model_dump()
    relaxed = cfg.model_copy(update={"guard": cfg.guard.model_copy(update={"max_val_drop": None})})
    _refuse_another(relaxed, cfg.model_dump_json())
    recorded_before_the_guard = {k: v for k, v in json.loads(cfg.model_dump_json()).items() if k != "guard"}
    _refuse_another(cfg, json.dumps(recorded_before_the_guard))


# --- 1. training guards -------------------------------------------------------------------------------------------
def test_a_non_finite_loss_fails_the_train_step_at_once_exit_2_no_checkpoint(finished_run, tmp_path) -> None:
    data = _copy(finished_run, tmp_path)
    with Store(data / "east.duckdb") as store:
        checkpoints = store.execute("SELECT count(*) FROM checkpoints")
    code, output = _east(*_finished_variant(data, "nan", "train.lr=1e9"))
    assert code == 2, output
    assert "nan: train [" in output and "stopped: the loss became nan at optimizer step" in output
    assert "nothing was saved: lower train.lr (now 1e+09)" in output and "Traceback" not in output
    with Store(data / "east.duckdb") as store:
        assert store.execute("SELECT count(*) FROM checkpoints") == checkpoints  # none recorded
        assert store.execute("SELECT status FROM step_status WHERE step = 'train' AND experiment = 'nan'") \
            == [("running",)]  # tried once: a UserError is not retried
        assert store.execute("SELECT max(round) FROM experiment_rounds WHERE experiment = 'nan'") == [(0,)]
        kept = {key for key, in store.execute("SELECT ckpt_key FROM checkpoints")}
    assert {p.name for p in (data / "checkpoints").iterdir()} == kept  # nor written


def test_a_round_that_wrecks_validation_is_rejected_shown_and_not_built_on(finished_run, tmp_path,
                                                                         prefect_server) -> None:
    """lr = 10000 trains without a NaN but leaves a model that answers nothing: the round is recorded as rejected,
    `east report` (and --json) shows it, the Prefect UI shows the round Failed with the line, the experiment stays
    at round 0; a rerun with the guard relaxed accepts the round from the store, built on round 0's model."""
    import asyncio

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    from east_tasks.steps.experiments import round_checkpoint

    data = _copy(finished_run, tmp_path)
    code, output = _east(*_finished_variant(data, "wreck", "train.lr=10000", "eval.n=0"))
    assert code == 2, output
    line = output[output.index("wreck: round 1 rejected"):]
    assert "validation greedy accuracy fell from 0.400 to 0.000 on 40 questions (40.0 points; guard.max_val_drop " \
           "is 5" in line and "the experiment stays at round 0: lower train.lr (now 10000)" in line
    assert "--set guard.max_val_drop=null" in line and "Traceback" not in output
    with Store(data / "east.duckdb") as store:
        rejected = store.query("SELECT * FROM rejected_rounds WHERE experiment = 'wreck'")
        parent = store.execute("SELECT model_hash FROM experiment_rounds WHERE experiment = 'wreck' AND round = 0")
    assert list(rejected["round"]) == [1] and rejected.val_acc[0] == 0.0 and rejected.parent_val_acc[0] == 0.4
    assert round_checkpoint(data, "wreck").last_round == 0  # a schedule's next round builds on round 0

    code, report = _east("report", "--experiment", "wreck", "--data-dir", data)
    assert code == 0 and "1 rejected" in report and "wreck: round 1 rejected: validation greedy" in report
    code, as_json = _east("report", "--json", "--experiment", "wreck", "--data-dir", data)
    rounds = json.loads(as_json)["wreck"]
    assert [r["round"] for r in rounds] == [0, 1] and "rejected" not in rounds[0]
    assert rounds[1]["rejected"].startswith("wreck: round 1 rejected") and rounds[1]["val_greedy_acc"] == 0.0

    async def round_runs() -> list:
        async with get_client() as client:
            return await client.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[
                "wreck-round-1"])))

    runs = asyncio.run(round_runs())
    assert [r.state.name for r in runs] == ["Failed"] and "wreck: round 1 rejected" in runs[0].state.message

    code, output = _east(*_finished_variant(data, "wreck", "train.lr=10000", "eval.n=0", "guard.max_val_drop=null"))
    assert code == 0, output
    with Store(data / "east.duckdb") as store:
        (model_hash, parent_hash), = store.execute(
            "SELECT r.model_hash, c.parent_hash FROM experiment_rounds r JOIN checkpoints c ON c.path = r.model_path "
            "WHERE r.experiment = 'wreck' AND r.round = 1")
    assert model_hash == rejected.model_hash[0] and (parent_hash,) == parent[0]  # from the store, on round 0's model
    code, as_json = _east("report", "--json", "--experiment", "wreck", "--data-dir", data)
    assert [("rejected" in r) for r in json.loads(as_json)["wreck"]] == [False, False]  # accepted now


def test_without_a_validation_split_the_guard_says_once_that_it_is_off() -> None:
    from east_tasks.steps import guard_off

    cfg = load_config("tiny-test", experiment="no-validation", data={"validation_size": 0})
    assert "no round is checked: set data.validation_size" in guard_off(cfg)
    assert guard_off(cfg) is None  # once
    assert guard_off(load_config("tiny-test", experiment="guarded")) is None  # tiny-test has a validation split


# --- 2. an identity that survives a move --------------------------------------------------------------------------
def test_a_second_clone_with_its_own_environment_on_the_same_data_dir_is_a_full_cache_hit(
        finished_run, second_clone, prefect_server, tmp_path) -> None:
    """A clone at another path, its own venv, its own committed backbone (the default base model): the finished
    experiment, run from there, finds every step, rewrites nothing and reports the same rounds."""
    cfg, records = finished_run
    data = _copy(finished_run, tmp_path)

    def stored() -> tuple[list, list]:
        with Store(data / "east.duckdb") as s:
            return (s.execute("SELECT step_key, status, updated_at FROM step_status ORDER BY step_key"),
                    s.execute("SELECT round, model_hash, step_keys, updated_at FROM experiment_rounds ORDER BY round"))

    def east_there(*args: str | Path) -> subprocess.CompletedProcess:
        return subprocess.run([second_clone.east, *map(str, args)], cwd=second_clone.root, capture_output=True,
                              text=True, timeout=600, env={**second_clone.env, "PREFECT_API_URL": prefect_server})

    before = stored()
    ran = east_there("run", "--preset", "tiny-test", "--experiment", "finished", "--a", "1.0", "--data-dir", data)
    assert ran.returncode == 0, ran.stdout[-2000:] + ran.stderr[-3000:]
    assert stored() == before  # nothing computed, nothing rewritten
    report = east_there("report", "--json", "--experiment", "finished", "--data-dir", data)
    assert report.returncode == 0, report.stderr[-3000:]
    assert json.loads(report.stdout)["finished"] == json.loads(json.dumps(records, default=str))


def test_a_moved_model_or_data_is_compared_by_content(tmp_path) -> None:
    """A local model compares by its content hash (the one round 0 recorded, or the old directory's), the embedded
    backbone by its name, data by its dataset_key; something else is still refused, naming the field."""
    here, there, other = tmp_path / "a" / "model", tmp_path / "b" / "model", tmp_path / "c" / "model"
    shutil.copytree(BACKBONE_DIR, here)
    shutil.copytree(BACKBONE_DIR, there)
    shutil.copytree(BACKBONE_DIR, other)
    (other / "config.json").write_text((other / "config.json").read_text().replace("}", ', "note": 1}', 1))
    recorded = hash_dir(here)
    assert same_model(str(here), str(there), recorded) and same_model(str(here), str(there), None)
    shutil.rmtree(here)  # moved away: round 0's hash still says what it was
    assert same_model(str(here), str(there), recorded) and not same_model(str(here), str(other), recorded)
    assert is_embedded_backbone("/elsewhere/east/east_tasks/models/backbone") and not is_embedded_backbone(str(there))
    assert same_model("/a/east_tasks/models/backbone", str(BACKBONE_DIR), None)

    old = load_config("tiny-test", data={"source": "table", "path": "/a/data", "answer_style": "gsm8k"})
    new = old.model_copy(update={"data": old.data.model_copy(update={"path": "/b/data"})})
    _refuse_another(new, old.model_dump_json(), (None, "k"))  # before the data is loaded: left to the claim
    _refuse_another(new, old.model_dump_json(), (None, "k"), "k", claiming=True)  # the same rows
    with pytest.raises(UserError, match=r"data.path: '/a/data' -> '/b/data'"):
        _refuse_another(new, old.model_dump_json(), (None, "k"), "other rows", claiming=True)


# --- 3. checkpoints verified --------------------------------------------------------------------------------------
def test_store_check_hashes_every_checkpoint_and_a_damaged_one_exits_3(finished_run, tmp_path) -> None:
    data = _copy(finished_run, tmp_path)
    code, output = _east("store", "check", "--data-dir", data)
    assert code == 0 and "ok checkpoint hashes: 2 of 2 match the store" in output and "hashed in" in output
    with Store(data / "east.duckdb") as store:
        (path,), = store.execute("SELECT model_path FROM experiment_rounds WHERE experiment = 'finished' AND "
                                 "round = 2")
    weights = data / path / "model.safetensors"
    blob = bytearray(weights.read_bytes())
    blob[-64:] = bytes(b ^ 0xFF for b in blob[-64:])
    weights.write_bytes(blob)
    code, output = _east("store", "check", "--data-dir", data)
    assert code == 3, output
    assert f"checkpoint {data / path} (finished:2): its files hash to" in output
    assert "the next run of its experiment trains it again, or restore the directory from a backup" in output
    code, output = _east("store", "check", "--quick", "--data-dir", data)
    assert code == 0 and "checkpoint hashes: not checked (--quick)" in output


# --- 4. paths that cannot work ------------------------------------------------------------------------------------
def _one_line(out: subprocess.CompletedProcess) -> str:
    lines = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "prefect" not in out.stdout + out.stderr, out.stdout + out.stderr
    return lines[0]


def test_a_data_dir_that_cannot_be_created_is_one_line_exit_3_before_anything_starts() -> None:
    out = CliRunner().invoke(app, ["run", "--preset", "tiny-test", "--data-dir", "/proc/x"])
    line = " ".join(out.output.split())  # the terminal's width wraps it
    assert out.exit_code == 3 and line.startswith("data_dir /proc/x cannot be created: No such file or directory")
    assert line.endswith("on a writable file system") and line.count("data_dir") == 1  # that line, nothing else


def test_a_store_on_a_read_only_file_system_is_one_line_exit_3(finished_run, tmp_path) -> None:
    """The data dir bind-mounted read-only in a mount namespace of its own (`unshare`), as a read-only volume is; the
    real `east run`, so nothing but the line is printed (no Prefect server started)."""
    if subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("no user and mount namespaces here (unshare -rm)")
    cfg, _ = finished_run
    data = tmp_path / "data"
    data.mkdir()
    shutil.copy(cfg.data_dir / "east.duckdb", data)
    script = (f"mount --bind {data} {data} && mount -o remount,ro,bind {data} && exec {EAST} run --preset "
              f"tiny-test --experiment finished --data-dir {data}")
    out = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert out.returncode == 3
    assert _one_line(out).startswith(f"data_dir {data} cannot be written: Read-only file system")
