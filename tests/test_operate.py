"""Operating east from Prefect the way a person does: a real `prefect server` process (started by `east server`),
the deployments registered by `east deploy`, runs executed by `east worker`, a failed run retried with the
request the UI's Retry button sends, and the run's page checked in headless Chromium.

The browser is Debian's `chromium` + `chromium-driver` (.ci/run installs them); without them these tests
fail, unless EAST_SKIP_BROWSER=1 says to skip only the browser test.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import jsonschema
import pytest
from markdown_images import embedded_pngs
from prefect_live import EAST, Live, free_port, prefect_env, start_server, stop

from east_tasks.config import PRESETS, load_config
from east_tasks.core.weighting import MAPPINGS, MEASURES
from east_tasks.store import Store
from flows.faults import FAIL_ONCE_ENV

REPO = Path(__file__).resolve().parent.parent
SCREENSHOTS = REPO / "build" / "screenshots"
# The experiment the UI tests run, retry, continue and rerun: tiny-test, one round, from the form, with fewer samples
# per question and test questions than the preset (the pool and validation split stay the preset's, so an
# `evaluate` with the preset and this test size finds the round's evaluation in the store). Transformers generation:
# no vLLM engine start-up in each run.
UI = {"experiment": "ui", "preset": "tiny-test", "rounds": 1, "backend": "hf", "samples_per_question": 4,
      "test_size": 30}


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> Live:
    """`east server` on a free port of 127.0.0.1, `east deploy`, and `east worker` (with a fault to inject)."""
    tmp = tmp_path_factory.mktemp("live")
    port = free_port()
    env = prefect_env(tmp / "prefect-home", port)
    procs = []
    logs = {name: (tmp / f"{name}.log").open("w") for name in ("server", "worker")}
    try:
        procs.append(start_server(port, env, logs["server"]))
        deployed = subprocess.run([*EAST, "deploy"], env=env, cwd=tmp, capture_output=True, text=True)
        assert deployed.returncode == 0, deployed.stdout + deployed.stderr
        procs.append(subprocess.Popen([*EAST, "worker"], env={**env, FAIL_ONCE_ENV: "select-and-weight"},
                                      start_new_session=True, stdout=logs["worker"], stderr=subprocess.STDOUT))
        live = Live(f"http://127.0.0.1:{port}", tmp / "data")
        live.worker = procs[-1]
        yield live
    finally:
        for proc in reversed(procs):
            stop(proc)
        for f in logs.values():
            f.close()


def test_deploy_registers_typed_deployments_and_a_paused_schedule(live: Live) -> None:
    names = {"east-self-train/self-train", "east-next-round/next-round", "east-evaluate/evaluate", "sweep/sweep",
             "east-experiment/experiment", "east-generate-shard/generate-shard"}
    deployments = {name: live.deployment(name) for name in names}
    assert {d["work_pool_name"] for d in deployments.values()} == {"east-process"}
    pool = live.api.get("/work_pools/east-process").json()
    assert pool["type"] == "process" and pool["concurrency_limit"] == 1
    assert all(d["enforce_parameter_schema"] for d in deployments.values())

    schema = deployments["east-self-train/self-train"]["parameter_openapi_schema"]
    props = schema["properties"]
    assert props["preset"]["enum"] == list(PRESETS)  # a drop-down in the form
    assert props["loss"]["enum"] == ["sft", "dpo", "kto"]
    assert props["strategy"]["enum"] == list(MEASURES)  # the registry's rules
    assert props["mapping"]["enum"] == list(MAPPINGS)
    assert "vanilla" in props["a"]["description"]
    assert props["prompt"]["anyOf"][0]["enum"] == ["auto", "chat", "fewshot", "zeroshot"]
    assert props["answer_style"]["anyOf"][0] == {"type": "string"}  # any style the config knows, checked there
    assert all(props[name]["description"] for name in FORM)  # every field of the form says what it is
    good = {"experiment": "x", "preset": "tiny-test", "rounds": 3, "a": 1.5, "mapping": "exp", "loss": "dpo"}
    jsonschema.validate(good, schema)
    for bad in ({"preset": "huge"}, {"a": 11}, {"rounds": -1}, {"mapping": "linear"}, {"experiment": "a b"},
                {"samples_per_question": 0}, {"max_tokens": 0}, {"temperature": 6}, {"source": "csv"}):
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)
    # The server enforces the same schema when a run is created (the UI's "Run" form, the API, schedules).
    refused = live.trigger("east-self-train/self-train", {"preset": "huge"})
    assert refused.status_code == 409 and "huge" in refused.text

    [schedule] = deployments["east-next-round/next-round"]["schedules"]
    assert schedule["schedule"]["cron"] == "0 2 * * *" and schedule["active"] is False
    assert schedule["parameters"] == {"experiment": "tiny", "max_rounds": 5}
    jsonschema.validate(schedule["parameters"], deployments["east-next-round/next-round"]["parameter_openapi_schema"])
    assert "checkpoint" in deployments["east-evaluate/evaluate"]["parameter_openapi_schema"]["required"]
    sweep_schema = deployments["sweep/sweep"]["parameter_openapi_schema"]
    jsonschema.validate({"name": "grid", "grid": {"a_values": [0, 1], "losses": ["sft", "dpo"]}}, sweep_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"grid": {"losses": ["ppo"]}}, sweep_schema)


def _count(cfg, table: str) -> int:
    with Store(cfg.store_path) as s:
        return s.execute(f"SELECT count(*) FROM {table}")[0][0]


def test_retry_from_the_ui_resumes_from_the_cache(live: Live) -> None:
    cfg = load_config("tiny-test", experiment="ui", rounds=1, data_dir=live.data_dir, backend={"engine": "hf"},
                      sampling={"n": UI["samples_per_question"]}, data={"test_size": UI["test_size"]})
    run = live.trigger("east-self-train/self-train", {**UI, "data_dir": str(live.data_dir)}).raise_for_status().json()

    failed = live.wait(run["id"])
    assert failed["state_type"] == "FAILED" and "fault injected" in failed["state"]["message"], failed["state"]
    assert failed["name"] == "ui"  # named by the flow when it starts
    generated = _count(cfg, "generations")
    pool, test, n, k = cfg.data.pool_size, cfg.data.test_size, cfg.sampling.n, cfg.eval.n
    evaluation = test * (1 + k) + cfg.data.validation_size  # greedy + k samples on test, greedy on validation
    assert generated == pool * n + evaluation  # the round's pool and the backbone's evaluation
    assert _count(cfg, "checkpoints") == 0

    live.wait_process_exit(failed)
    # What the UI's Retry button sends (prefect-ui-library `retryFlowRun`): force the run back to Scheduled.
    retry = {"state": {"type": "SCHEDULED", "name": "AwaitingRetry", "message": "Retry from the UI"}, "force": True}
    assert live.api.post(f"/flow_runs/{run['id']}/set_state", json=retry).json()["status"] == "ACCEPT"
    done = live.wait(run["id"])
    assert done["state_type"] == "COMPLETED" and done["run_count"] == 2
    assert live.worker.poll() is None  # the worker took the retried run and is still serving
    live.wait_process_exit(done)  # its last log lines are sent as the process ends

    # Prefect reran the failed round as a new subflow run; the failed attempt says it was superseded, and by which.
    attempts = {r["state_name"]: r for r in live.subflows(run["id"], "ui-round-1")}
    assert sorted(attempts) == ["Completed", "Superseded"] and attempts["Superseded"]["state_type"] == "CANCELLED"
    assert f"superseded by flow run ui-round-1 ({attempts['Completed']['id']})" in \
        attempts["Superseded"]["state"]["message"]
    # What the retry found in the store ends Cached; what it computed, Completed (a run per attempt and task).
    # Publishing an artifact is a task of its own, and no step: Completed.
    assert live.task_states(run["id"]) == {
        "ensure-backbone": ["Cached", "Cached"], "prepare-data": ["Completed", "Cached"],
        "resolve-model": ["Completed", "Completed"], "evaluate": ["Completed", "Cached"], "east-round": ["Completed"],
        "publish-results": ["Completed"]}
    assert live.task_states(attempts["Completed"]["id"]) == {
        "generate-pool": ["Cached"], "select-and-weight": ["Completed"], "publish-selection": ["Completed"],
        "train": ["Completed"], "evaluate": ["Completed"], "publish-round": ["Completed"]}

    # Nothing generated twice: only the new checkpoint's evaluation was added.
    assert _count(cfg, "generations") == generated + evaluation
    assert _count(cfg, "checkpoints") == 1 and _count(cfg, "experiment_rounds") == 2
    messages = live.messages()
    pool_step = [m for m in messages if m.startswith("generate pool round 1 ")]
    assert len(pool_step) == 2 and "computed in" in pool_step[0] and "cached, skipped" in pool_step[1], pool_step
    assert any("fault injected" in m for m in messages)

    round_md = live.artifact("ui-round-1")["data"]
    assert "kept questions" in round_md and "entropy" in round_md
    plots = embedded_pngs(round_md)  # inside the artifact, so the UI shows them wherever it is opened
    assert plots["entropy histogram"] == (live.data_dir / "plots" / "ui-round-1-entropy.png").read_bytes()
    assert plots["accuracy per round"] == (live.data_dir / "plots" / "ui-rounds.png").read_bytes()
    assert live.artifact("ui-progress")["data"] == 100.0


@pytest.mark.skipif(os.environ.get("EAST_SKIP_BROWSER") == "1", reason="EAST_SKIP_BROWSER=1")
def test_next_round_then_the_run_page_in_chromium(live: Live) -> None:
    if not (live.data_dir / "east.duckdb").exists():
        pytest.skip("needs the experiment test_retry_from_the_ui_resumes_from_the_cache made")
    params = {"experiment": "ui", "max_rounds": 2, "data_dir": str(live.data_dir)}
    t0 = time.time()
    run = live.trigger("east-next-round/next-round", params).raise_for_status().json()
    done = live.wait(run["id"])
    elapsed = time.time() - t0
    assert done["state_type"] == "COMPLETED", done["state"]
    print(f"next-round: trigger -> completed in {elapsed:.1f}s (one tiny-test round under the server)")
    round_run = live.subflow(run["id"], "ui-round-2")
    assert round_run["state_type"] == "COMPLETED"
    assert live.artifact("ui-round-2")["flow_run_id"] == round_run["id"]

    # At the limit a (scheduled) run does nothing and says why: tests/test_entrypoints.py.

    # `evaluate` on the new checkpoint: the same test split and settings, so it is read from the cache.
    evaluate = {"checkpoint": "ui:2", "preset": "tiny-test", "backend": "hf", "test_size": UI["test_size"],
                "data_dir": str(live.data_dir)}
    evaluated = live.wait(live.trigger("east-evaluate/evaluate", evaluate).json()["id"])
    assert evaluated["state_type"] == "COMPLETED", evaluated["state"]
    with Store(live.data_dir / "east.duckdb") as store:
        greedy = store.execute("SELECT e.greedy_acc FROM experiment_rounds r JOIN evaluations e USING (eval_key) "
                               "WHERE r.experiment = 'ui' AND r.round = 2")[0][0]
    assert f"| greedy_acc | {greedy} |" in live.artifact("evaluate-ui-2")["data"]

    artifact_page, images = _open_run_page(live, round_run["id"])  # fails unless the badge says Completed
    assert "kept questions" in artifact_page and "greedy accuracy" in artifact_page, artifact_page[:2000]
    # the embedded plots decode and show in the browser: (alt, natural width, height) of each <img>
    assert {alt for alt, width, height in images if width > 300 and height > 200} == {
        "entropy histogram", "accuracy per round", "exploration and exploitation per round"}, images


# A real-data run as a person fills the self-train form: three GSM8K test rows and five train rows (the tiny
# arithmetic backbone solves none of them; rounds = 0 evaluates it), as a table with columns of other names.
FORM = {"experiment": "gsm8k-form", "preset": "tiny-test", "rounds": 0, "source": "table",
        "question_column": "problem", "solution_column": "worked", "tier_column": "level", "answer_style": "gsm8k",
        "prompt": "zeroshot", "pool_size": 5, "validation_size": 0, "test_size": 3, "samples_per_question": 2,
        "temperature": 1.1, "max_tokens": 32, "eval_max_tokens": 32, "backend": "hf"}


def _gsm8k_table(dest: Path) -> Path:
    """tests/fixtures/gsm8k as a table source: question -> problem, answer -> worked, and a `level` (1 or 2)."""
    dest.mkdir()
    for split in ("train", "test"):
        rows = [json.loads(line) for line in (REPO / "tests" / "fixtures" / "gsm8k" / f"{split}.jsonl").open()]
        (dest / f"{split}.jsonl").write_text("".join(json.dumps({"problem": r["question"], "worked": r["answer"],
                                                                 "level": 1 + i % 2}) + "\n"
                                                     for i, r in enumerate(rows)))
    return dest


@pytest.mark.skipif(os.environ.get("EAST_SKIP_BROWSER") == "1", reason="EAST_SKIP_BROWSER=1")
def test_a_cached_rerun_and_a_real_data_run_from_the_form_in_chromium(live: Live, tmp_path: Path) -> None:
    if not (live.data_dir / "east.duckdb").exists():
        pytest.skip("needs the experiment test_retry_from_the_ui_resumes_from_the_cache made")
    # The retried experiment again: every step is in the store (the worker takes this run first, the form's next).
    rerun_id = live.trigger("east-self-train/self-train", {**UI, "data_dir": str(live.data_dir)}
                            ).raise_for_status().json()["id"]
    form = {**FORM, "data_path": str(_gsm8k_table(tmp_path / "gsm8k-table")), "data_dir": str(live.data_dir)}
    with _chromium() as driver:
        form_run = _submit_form(driver, live, "east-self-train/self-train", form)
        assert {name: form_run["parameters"][name] for name in form} == form  # as typed, types and all

        rerun = live.wait(rerun_id)
        assert rerun["state_type"] == "COMPLETED", rerun["state"]
        round_run = live.subflow(rerun_id, "ui-round-1")
        assert (round_run["state_type"], round_run["state_name"]) == ("COMPLETED", "Cached")
        # resolve-model is no step (it hashes), nor is publishing
        assert live.task_states(rerun_id) == {"ensure-backbone": ["Cached"], "prepare-data": ["Cached"],
                                              "resolve-model": ["Completed"], "evaluate": ["Cached"],
                                              "east-round": ["Cached"], "publish-results": ["Completed"]}
        assert live.task_states(round_run["id"]) == {
            **{name: ["Cached"] for name in ("generate-pool", "select-and-weight", "train", "evaluate")},
            "publish-selection": ["Completed"], "publish-round": ["Completed"]}
        _cached_run_page(driver, live, rerun_id)  # its task runs and its round say Cached in the UI too

    done = live.wait(form_run["id"])
    assert done["state_type"] == "COMPLETED", done["state"]
    with Store(live.data_dir / "east.duckdb") as store:
        (config,), = store.execute("SELECT config FROM experiments WHERE experiment = 'gsm8k-form'")
        (n_questions, dataset_key), = store.execute(
            "SELECT e.n_questions, e.dataset_key FROM experiment_rounds r JOIN evaluations e USING (eval_key) "
            "WHERE r.experiment = 'gsm8k-form'")
        gold = dict(store.execute("SELECT split, list(answer ORDER BY answer) FROM problems WHERE dataset_key = ? "
                                  "GROUP BY split", [dataset_key]))
    cfg = json.loads(config)
    assert cfg["rounds"] == 0 and cfg["backend"]["engine"] == "hf"
    assert {k: cfg["data"][k] for k in ("source", "path", "answer_style", "prompt", "pool_size", "validation_size",
                                         "test_size")} == {
        "source": "table", "path": form["data_path"], "answer_style": "gsm8k", "prompt": "zeroshot", "pool_size": 5,
        "validation_size": 0, "test_size": 3}
    assert cfg["data"]["columns"] == {"question": "problem", "answer": "answer", "solution": "worked", "tier": "level"}
    assert {k: cfg["sampling"][k] for k in ("n", "temperature", "max_tokens")} == {"n": 2, "temperature": 1.1,
                                                                                 "max_tokens": 32}
    assert cfg["eval"]["max_tokens"] == 32  # the default 96 would not fit the longest prompt (216 tokens) in 256
    # the gold answers are the worked solutions' `#### N`, as the gsm8k style reads them
    assert n_questions == 3 and gold == {"test": ["18", "3", "70000"], "pool": ["10", "42", "5", "624", "72"]}


@pytest.mark.skipif(os.environ.get("EAST_SKIP_BROWSER") == "1", reason="EAST_SKIP_BROWSER=1")
def test_bad_input_is_the_clis_one_line_in_the_run_page_logs(live: Live) -> None:
    missing = str(live.data_dir / "no-such-model")
    cli = subprocess.run([*EAST, "run", "--preset", "tiny-test", "--data-dir", str(live.data_dir), "--set",
                          f"base_model={missing}"], capture_output=True, text=True,
                         env={**os.environ, "COLUMNS": "1000",  # rich wraps at the terminal's width
                              "PREFECT_API_URL": f"{live.url}/api"})  # no temporary server of its own
    assert cli.returncode == 2, cli.stdout + cli.stderr
    (line,) = [ln for ln in cli.stdout.splitlines() if ln.strip()]  # the CLI says one thing
    params = {"experiment": "bad-model", "preset": "tiny-test", "base_model": missing,
              "data_dir": str(live.data_dir)}
    failed = live.wait(live.trigger("east-self-train/self-train", params).raise_for_status().json()["id"])
    assert failed["state_type"] == "FAILED" and line in failed["state"]["message"], failed["state"]
    page = _failed_run_logs(live, failed["id"], line)  # the same line in the UI's logs, without a traceback
    assert "Traceback" not in page and "UserError(" not in page, page[-3000:]


@contextmanager
def _chromium() -> Iterator:
    """Headless Debian Chromium through selenium (both paths given: nothing is downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver_path, "install Debian's chromium and chromium-driver (see .ci/run)"
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


_BADGE = "//*[contains(@class, 'state-badge') and normalize-space(.)='{}']"


def _run_page(driver, live: Live, run_id: str, state: str):
    """Opens a run's page and waits for its state badge; returns a 90-second wait."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{live.url}/runs/flow-run/{run_id}")
    wait = WebDriverWait(driver, 90)
    wait.until(ec.visibility_of_element_located((By.XPATH, _BADGE.format(state))))
    return wait


def _cached_run_page(driver, live: Live, run_id: str) -> None:
    """A cached rerun's page: its tabs of task runs (3 found in the store) and of subflow runs (its round) show
    Cached badges; saves a screenshot of the first (docs/screenshots/cached-rerun.png)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    wait = _run_page(driver, live, run_id, "Completed")
    for tab, cached in (("Task Runs", 3), ("Subflow Runs", 1)):
        tab_xpath = f"//li[contains(@class, 'p-tab') and normalize-space(.)='{tab}']"
        wait.until(ec.element_to_be_clickable((By.XPATH, tab_xpath))).click()
        wait.until(lambda d, n=cached: len(d.find_elements(By.XPATH, _BADGE.format("Cached"))) == n)
        if tab == "Task Runs":
            driver.set_window_size(1400, 1500)  # the graph and every task run
            driver.save_screenshot(str(SCREENSHOTS / "cached-rerun.png"))
            driver.set_window_size(1400, 1000)


def _submit_form(driver, live: Live, deployment: str, form: dict) -> dict:
    """Fills a deployment's custom-run form (Deployments, the deployment, Run, Custom run) field by field as a
    person does and submits it; returns the flow run it created."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import Select, WebDriverWait

    deployment_id = live.deployment(deployment)["id"]
    driver.get(f"{live.url}/deployments/deployment/{deployment_id}/run")
    wait = WebDriverWait(driver, 90)

    def field(name: str):
        return driver.find_element(By.XPATH, "//div[contains(concat(' ', @class, ' '), ' schema-form-property ')]"
                                             "[.//span[contains(@class, 'schema-form-property__label') and "
                                             f"starts-with(normalize-space(.), '{name} (')]]")

    wait.until(lambda _: field("experiment"))
    for name, value in form.items():
        driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", field(name))
        kind = {int: "int", float: "float", str: "str"}[type(value)]
        if kinds := field(name).find_elements(By.XPATH, f".//button[normalize-space(.)='{kind}']"):
            kinds[0].click()  # an optional field starts as None: its type first
        control = wait.until(lambda _, n=name: field(n).find_elements(
            By.CSS_SELECTOR, "fieldset select, fieldset textarea, fieldset input"))[0]
        if control.tag_name == "select":
            Select(control).select_by_value(str(value))
        else:
            control.clear()
            control.send_keys(str(value))
    driver.find_element(By.XPATH, "//button[@type='submit' and normalize-space(.)='Submit']").click()
    wait.until(ec.url_matches(f"/deployments/deployment/{deployment_id}$"))  # back on the deployment's page
    runs = live.api.post("/flow_runs/filter", json={"deployments": {"id": {"any_": [deployment_id]}}}).json()
    [run] = [r for r in runs if r["parameters"].get("experiment") == form["experiment"]]
    return run


def _open_run_page(live: Live, run_id: str, artifact: str = "ui-round-2") -> tuple[str, list[tuple[str, int, int]]]:
    """A completed run's page: waits for the artifact's card (Artifacts tab), then opens the artifact; saves a
    screenshot of each; returns the artifact page's text and its images (alt text, natural width and height
    once loaded: 0 for one the browser could not show)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    with _chromium() as driver:
        wait = _run_page(driver, live, run_id, "Completed")
        tab = "//li[contains(@class, 'p-tab') and normalize-space(.)='Artifacts']"
        wait.until(ec.element_to_be_clickable((By.XPATH, tab))).click()
        card = f"//*[contains(@class, 'artifact-card__title') and normalize-space(.)='{artifact}']"
        wait.until(ec.element_to_be_clickable((By.XPATH, card)))
        driver.save_screenshot(str(SCREENSHOTS / "round-run-page.png"))
        driver.find_element(By.XPATH, card).click()
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), "greedy accuracy"))
        wait.until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))
        driver.set_window_size(1400, 1900)  # the tables and the first plot in one screenshot
        driver.save_screenshot(str(SCREENSHOTS / "round-artifact.png"))
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.naturalWidth, i.naturalHeight])")
        return driver.find_element(By.TAG_NAME, "body").text, [tuple(i) for i in images]


def _failed_run_logs(live: Live, run_id: str, expected: str) -> str:
    """A failed run's page once its logs show `expected`; returns the page's text (screenshot saved)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec

    with _chromium() as driver:
        wait = _run_page(driver, live, run_id, "Failed")
        wait.until(ec.text_to_be_present_in_element((By.TAG_NAME, "body"), expected))
        driver.set_window_size(1400, 1400)  # down to the run's last log lines
        driver.save_screenshot(str(SCREENSHOTS / "failed-run-page.png"))
        return driver.find_element(By.TAG_NAME, "body").text
