"""Output a person reads (docs/output.md): a plain progress line every tenth of the way off a terminal, vLLM's
known-benign warnings kept out of the log, result tables that fit 80 columns on a terminal and are Markdown
elsewhere, and `east --version` / `east doctor`."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import time
from pathlib import Path

import pytest
from rich.console import Console
from transformers import TrainerControl, TrainerState, TrainingArguments
from typer.testing import CliRunner

from east_tasks import progress
from east_tasks.engines.generation import vllm_env
from east_tasks.engines.training import PlainProgress
from east_tasks.report.tables import print_results
from east_tasks.store import Store
from flows.cli import app


@pytest.fixture
def off_terminal(monkeypatch, caplog):
    monkeypatch.setattr(progress, "on_terminal", lambda: False)
    caplog.set_level(logging.INFO, logger="east_tasks.progress")
    return caplog


def _percents(caplog) -> list[int]:
    return [int(re.search(r": (\d+)% \(", r.getMessage()).group(1)) for r in caplog.records]


def test_off_a_terminal_progress_is_a_line_at_every_tenth(off_terminal) -> None:
    assert list(progress.progress(range(25), "generate pool round 1", "chunk")) == list(range(25))
    # 25 chunks: the tenths are crossed at chunks 3, 5, 8, 10, 13, 15, 18, 20, 23 and 25
    assert _percents(off_terminal) == [12, 20, 32, 40, 52, 60, 72, 80, 92, 100]
    first, last = off_terminal.records[0].getMessage(), off_terminal.records[-1].getMessage()
    assert re.fullmatch(r"generate pool round 1: 12% \(3/25 chunks\) in \d+s, about \d+s left", first)
    assert "(25/25 chunks)" in last and "left" not in last
    off_terminal.clear()
    list(progress.progress(range(7), "score responses", "batch"))  # every item crosses a tenth
    assert _percents(off_terminal) == [14, 28, 42, 57, 71, 85, 100] and "(1/7 batches)" in off_terminal.text
    off_terminal.clear()
    list(progress.progress(range(1), "generate test greedy", "chunk"))  # one chunk: one line, when it is done
    assert [r.getMessage()[:45] for r in off_terminal.records] == ["generate test greedy: 100% (1/1 chunk) in 0s"]
    off_terminal.clear()
    list(progress.progress([], "generate test greedy", "chunk"))  # nothing to do (all cached): nothing to say
    assert off_terminal.records == []


def test_on_a_terminal_progress_is_tqdm_s_bar_and_no_log_line(monkeypatch, caplog) -> None:
    monkeypatch.setattr(progress, "on_terminal", lambda: True)
    caplog.set_level(logging.INFO, logger="east_tasks.progress")
    meter = progress.Progress("train", 10, "step")
    for _ in range(10):
        meter.update(1, loss="0.5")
    assert meter.bar is not None and meter.bar.n == 10 and caplog.records == []
    meter.close()


def test_durations_read_as_a_person_writes_them() -> None:
    assert [progress._duration(s) for s in (0.4, 45, 139, 3599, 3720)] == ["0s", "45s", "2m19s", "59m59s", "1h02m"]


def test_training_off_a_terminal_is_a_line_at_every_tenth_with_the_last_loss(off_terminal, tmp_path) -> None:
    args, control = TrainingArguments(output_dir=str(tmp_path), report_to=[]), TrainerControl()
    state = TrainerState(max_steps=20)
    callback = PlainProgress()
    callback.on_train_begin(args, state, control)
    for step in range(1, 21):
        if step % 10 == 0:  # the Trainer logs every logging_steps (10)
            callback.on_log(args, state, control, logs={"loss": 1.0 / step})
        callback.on_step_end(args, state, control)
    assert _percents(off_terminal) == list(range(10, 101, 10))
    messages = [r.getMessage() for r in off_terminal.records]
    assert "loss" not in messages[3] and "(10/20 steps, loss 0.1000)" in messages[4]
    assert "(20/20 steps, loss 0.0500)" in messages[-1]


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("vllm.model_executor", logging.WARNING, "layerwise.py", 266, message, args, None)


def test_vllm_s_benign_warnings_are_filtered_and_the_rest_kept() -> None:
    quiet = vllm_env.QuietVllm()
    benign = [_record("%s: Failed to load weights", "RotaryEmbedding"),
              _record("%s: Failed to load weights", "ParallelLMHead"),
              _record("Triton is installed, but doesn't include CPU backend. Disabling Triton."),
              _record("Model Runner V2 requires Triton; using the V1 model runner instead."),
              _record("VLLM_CPU_NUM_OF_RESERVED_CPU is less than the minimum requirement: %d cores", 1),
              _record("OMP_NUM_THREADS=%s is set; leaving Torch threads at %s for serving.", "2", "2")]
    kept = [_record("%s: Failed to load weights", "QKVParallelLinear"),  # a layer with weights of its own: real
            _record("[shutdown] Process manager: force killing remaining process %s pid %d", "EngineCore", 7),
            _record("%s is not found in LD_PRELOAD. For best performance, ...", "libtcmalloc")]
    assert [quiet.filter(r) for r in benign] == [False] * len(benign)
    assert [quiet.filter(r) for r in kept] == [True] * len(kept)


@pytest.fixture
def vllm_logger():
    """The `vllm` logger as it was, again after the test (quiet_vllm_logging configures it)."""
    logger = logging.getLogger("vllm")
    saved = logger.handlers[:], logger.level, logger.propagate
    yield logger
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


def test_vllm_s_log_is_quieted_in_every_engine_process_unless_the_user_set_it(monkeypatch, capsys,
                                                                                 vllm_logger) -> None:
    monkeypatch.setenv("VLLM_LOGGING_CONFIG_PATH", "")  # restored after the test, whatever sets it
    monkeypatch.delenv("VLLM_LOGGING_CONFIG_PATH")
    monkeypatch.setenv("VLLM_LOGGING_LEVEL", "INFO")  # the user asks for vLLM's log: it is left as vLLM writes it
    vllm_env.quiet_vllm_logging()
    assert "VLLM_LOGGING_CONFIG_PATH" not in os.environ
    monkeypatch.delenv("VLLM_LOGGING_LEVEL")
    vllm_env.quiet_vllm_logging()
    path = os.environ["VLLM_LOGGING_CONFIG_PATH"]  # what vLLM applies in its EngineCore and workers
    config = json.loads(Path(path).read_text())
    assert config["handlers"]["vllm"]["filters"] == ["quiet"] and config["loggers"]["vllm"]["level"] == "WARNING"
    assert not vllm_env.user_asked()  # the path is the pipeline's own, not the user's
    engine = logging.getLogger("vllm.v1.worker")
    engine.warning("%s: Failed to load weights", "ParallelLMHead")
    engine.info("Loading weights took 0.1 seconds")
    engine.warning("a warning worth reading")
    out = capsys.readouterr().out
    assert "a warning worth reading" in out and "Failed to load" not in out and "Loading weights" not in out


def test_the_engine_starts_with_the_preloads_and_this_process_keeps_its_environment(monkeypatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "libmine.so")
    monkeypatch.delenv("TORCH_CPP_LOG_LEVEL", raising=False)
    for name in ("VLLM_LOGGING_LEVEL", vllm_env.ENGINE_PROCESS, vllm_env.WORKER_GRACE):
        monkeypatch.delenv(name, raising=False)
    libraries, found = vllm_env.preload_libraries()
    with vllm_env.engine_environment(cpu=True):
        assert os.environ["LD_PRELOAD"] == ":".join([*libraries, "libmine.so"])
        assert os.environ["TORCH_CPP_LOG_LEVEL"] == "ERROR"  # torch's C++ notices (NUMA binding) in the engine
        assert os.environ[vllm_env.ENGINE_PROCESS] == "1" and os.environ[vllm_env.WORKER_GRACE] == "10"
    assert os.environ["LD_PRELOAD"] == "libmine.so" and "TORCH_CPP_LOG_LEVEL" not in os.environ
    assert vllm_env.ENGINE_PROCESS not in os.environ and vllm_env.WORKER_GRACE not in os.environ
    assert (libraries and found == ", ".join(libraries)) or found.startswith("not found: ")
    monkeypatch.setenv("EAST_NO_PRELOAD", "1")
    assert vllm_env.preload_libraries() == ([], "off (EAST_NO_PRELOAD is set)")
    monkeypatch.setenv("EAST_NO_PRELOAD", "0")
    monkeypatch.setenv("LD_PRELOAD", "/x/libtcmalloc_minimal.so.4:/y/libiomp5.so")
    assert vllm_env.preload_libraries()[0] == []  # given already



def test_an_engine_without_its_preloads_says_in_one_line_how_to_get_them(monkeypatch, caplog) -> None:
    monkeypatch.delenv("EAST_NO_PRELOAD", raising=False)
    monkeypatch.delenv("LD_PRELOAD", raising=False)
    monkeypatch.setattr(vllm_env, "_first", lambda dirs, names: "/v/libiomp5.so" if "libiomp5.so" in names else None)
    with caplog.at_level(logging.WARNING), vllm_env.engine_environment(cpu=True):
        assert "LD_PRELOAD" not in os.environ  # both or neither
    (line,) = [r.getMessage() for r in caplog.records if "preload" in r.getMessage()]
    assert "not found: tcmalloc (apt-get install libtcmalloc-minimal4))" in line and "libiomp5" not in line
    caplog.clear()
    with caplog.at_level(logging.WARNING), vllm_env.engine_environment(cpu=False):  # a GPU wants none
        pass
    assert not caplog.records

# Two rounds with every column a table can have: 6 tiers, k > 0, the pool's monitor (numbers checked by hand).
TIERS = {str(t): {"greedy_acc": round(0.95 - 0.125 * t, 3)} for t in range(1, 7)}
RECORDS = [dict(round=0, greedy_acc=0.5111, k=4, pass1=0.4667, pass1_se=0.0456, maj_acc=0.5, pass_acc=0.6222,
                val_greedy_acc=0.4, n_kept=None, by_tier=TIERS, pool_pass_at_n=None, pool_balance=None,
                label_accuracy=None),
           dict(round=1, greedy_acc=0.3778, k=4, pass1=0.3056, pass1_se=0.0431, maj_acc=0.3556, pass_acc=0.4444,
                val_greedy_acc=0.375, n_kept=54, by_tier=TIERS, pool_pass_at_n=0.7125, pool_balance=0.0581,
                label_accuracy=None)]
NUMBERS = ["0.511", "0.378", "0.467", "0.046", "0.306", "0.043", "0.500", "0.356", "0.622", "0.444", "0.400",
           "0.375", "54", "0.713", "0.058", "0.825", "0.700", "0.575", "0.450", "0.325", "0.200"]


def _printed(width: int) -> str:
    out = io.StringIO()
    print_results(Console(file=out, width=width, force_terminal=True, color_system=None), "exp", RECORDS)
    return out.getvalue()


def test_a_terminal_of_80_columns_gets_the_tiers_in_a_table_of_their_own() -> None:
    wide, narrow = _printed(200), _printed(80)
    headers = [len(re.findall(r"^ +round ", text, re.M)) for text in (wide, narrow)]
    assert headers == [1, 3]  # one table, then three: results, sampled metrics, tiers
    for text, width in ((wide, 200), (narrow, 80)):
        assert "…" not in text and max(len(line) for line in text.splitlines()) <= width
        assert all(n in text for n in NUMBERS), text
    assert re.search(r"round +t1 +t2 +t3 +t4 +t5 +t6", narrow)
    assert re.search(r"round +test +val +kept +pass@n +balance", narrow), narrow
    assert re.search(r"round +pass@1 +±SE +maj@4 +pass@4", narrow), narrow
    assert "### " in _printed(40)  # narrower than either: Markdown, whose numbers no width cuts


def test_report_off_a_terminal_is_markdown_with_every_number(tmp_path) -> None:
    with Store(tmp_path / "east.duckdb") as store:
        for r in RECORDS:
            eval_key = f"e{r['round']}"
            store.execute("INSERT INTO evaluations (eval_key, model_hash, dataset_key, n_questions, k, greedy_acc, "
                          "maj_acc, pass_acc, by_tier, created_at, pass1, pass1_se, pass_at_k, maj_at_k) "
                          "VALUES (?, 'h', 'd', 90, 4, ?, ?, ?, ?, 0, ?, ?, ?, ?)",
                          [eval_key, r["greedy_acc"], r["maj_acc"], r["pass_acc"], json.dumps(r["by_tier"]),
                           r["pass1"], r["pass1_se"], json.dumps({"4": r["pass_acc"]}),
                           json.dumps({"4": r["maj_acc"]})])
            store.execute("INSERT INTO evaluations (eval_key, model_hash, dataset_key, n_questions, k, greedy_acc, "
                          "by_tier, created_at) VALUES (?, 'h', 'd', 40, 0, ?, '{}', 0)",
                          [f"v{r['round']}", r["val_greedy_acc"]])
            store.execute("INSERT INTO experiment_rounds (experiment, round, eval_key, val_eval_key, n_kept, "
                          "weight_key) VALUES ('exp', ?, ?, ?, ?, ?)",
                          [r["round"], eval_key, f"v{r['round']}", r["n_kept"], f"w{r['round']}"])
        store.execute("INSERT INTO round_monitor (weight_key, tier, pass_at_n, balance) VALUES ('w1', 'all', "
                      "0.7125, 0.0581)")
    out = CliRunner().invoke(app, ["report", "--data-dir", str(tmp_path)])
    assert out.exit_code == 0, out.output
    rows = [line for line in out.output.splitlines() if line.startswith("| ")]
    assert rows[0] == ("| round | test | t1 | t2 | t3 | t4 | t5 | t6 | pass@1 | ±SE | maj@4 | pass@4 | val | kept | "
                       "pass@n | balance |")
    assert rows[1:] == ["| backbone | 0.511 | 0.825 | 0.700 | 0.575 | 0.450 | 0.325 | 0.200 | 0.467 | 0.046 | 0.500 | "
                        "0.622 | 0.400 | - | - | - |",
                        "| 1 | 0.378 | 0.825 | 0.700 | 0.575 | 0.450 | 0.325 | 0.200 | 0.306 | 0.043 | 0.356 | 0.444 | "
                        "0.375 | 54 | 0.713 | 0.058 |"]
    assert "…" not in out.output


def test_version_names_the_package_and_the_commit() -> None:
    out = CliRunner().invoke(app, ["--version"])
    assert out.exit_code == 0 and re.fullmatch(r"east \d+\.\d+\.\d+\S* \(git [0-9a-f]{7,}(, with local changes)?\)\n",
                                               out.output), out.output


def test_doctor_says_one_line_per_check_in_seconds(tmp_path) -> None:
    t0 = time.monotonic()
    out = CliRunner().invoke(app, ["doctor", "--data-dir", str(tmp_path / "data")])
    seconds = time.monotonic() - t0
    names = ["python", "packages", "builds", "gpus", "disk", "store", "prefect", "preload", "test tools"]
    lines = out.output.splitlines()
    assert [line[6:16].strip() for line in lines] == names, out.output
    assert all(line[:4] in ("ok  ", "warn", "FAIL") for line in lines)
    assert "none yet at" in lines[5] and "vLLM 0.32.0 (CPU build), torch" in lines[2]
    assert out.exit_code == (1 if any(line.startswith("FAIL") for line in lines) else 0)
    assert seconds < 30  # a few seconds, starting no engine; the margin is a loaded 2-core machine's
