"""Answer styles beyond gsm8k and math: the built-in `mcq`, and a user's checker given as an import path (answers
with units, a check-only style, one that hangs), run in the bounded workers; bad values refused in one line; the
keys follow the style; an mcq pool's clusters, entropy and kept rows by hand, in SQL and in frames alike."""

from __future__ import annotations

import logging
import os
import shutil
import time

import pandas as pd
import pytest
from pydantic import ValidationError

from east_tasks.config import BUILTIN_ANSWER_STYLES, DataConfig, load_config
from east_tasks.core import answers
from east_tasks.core.answers import (
    CHECK_FAILED,
    CHECK_PASSED,
    NO_ANSWER,
    Cluster,
    answer_style,
    answers_match,
    cluster_answers,
    extract_answer,
    extract_answers,
    grade_responses,
    normalize,
)
from east_tasks.core.metrics import evaluate
from east_tasks.core.selection import cluster_and_score
from east_tasks.data.prompts import instruction, make_prompter
from east_tasks.engines import grading
from east_tasks.errors import UserError
from east_tasks.steps import ModelRef, keys, preflight, select_and_weight
from east_tasks.steps import selection as selection_step
from east_tasks.store import Store

# (response, the letter the mcq style extracts). The rules: a letter counts after "answer is" / "answer:", in a box,
# or alone on its line, and the last of those wins; a letter inside a sentence is no answer; a lower-case letter
# only before punctuation or the line's end (so "the answer is a number" names none); letters past J are not
# choices.
MCQ_CASES = [
    ("The answer is (B)", "B"),
    ("The answer is B.", "B"),
    ("Answer: C", "C"),
    ("B.", "B"),
    ("(D)", "D"),
    ("So we get $\\boxed{B}$", "B"),
    ("The answer is $\\boxed{\\text{(C)}}$.", "C"),
    ("Adding the two, 3 + 4 = 7, which is option C.\nC", "C"),
    ("**Answer:** (e)", "E"),
    ("the answer is b.", "B"),
    ("The correct answer is option D.", "D"),
    ("Answer: j", "J"),
    ("I think A is wrong, since 3 * 4 = 12. The answer is (C).", "C"),  # the sentence's A is no mention
    ("The answer is B. Wait, 12 / 4 = 3, not 4. The answer is D.", "D"),  # the last mention wins
    ("The answer is (B), not (C).", "B"),  # "(C)" inside a sentence is no mention
    ("Answer: C\n\nWhy not A? Because A counts twice.", "C"),
    ("I think A is wrong.", None),
    ("A train leaves at 3 and arrives at 5.", None),  # the article
    ("The answer is a number larger than 10.", None),
    ("Options: (A) 3 (B) 4 (C) 5", None),  # restating the choices
    ("The answer is not A.", None),
    ("The answer is K.", None),
    ("The answer is 42.", None),
    ("", None),
]


@pytest.mark.parametrize(("response", "letter"), MCQ_CASES)
def test_mcq_extracts_the_last_letter_given_as_the_answer(response: str, letter: str | None) -> None:
    assert extract_answer(response, "mcq") == letter


def test_mcq_compares_letters_exactly_and_keeps_the_sql_path(tmp_path) -> None:
    assert answers.STYLES == BUILTIN_ANSWER_STYLES == ("gsm8k", "math", "mcq")  # the core's and the config's
    assert [normalize(g, "mcq") for g in ("(B)", "b", " C. ", "B) 12")] == ["B", "B", "C", "B) 12"]
    assert answers_match("B", "(B)", "mcq") and answers_match("B", "b", "mcq") and not answers_match("B", "C", "mcq")
    assert not answers_match(None, "B", "mcq")
    assert cluster_answers(["B", "C", None, "B"], "(B)", "mcq") == [Cluster("B", 2, True), Cluster(NO_ANSWER, 1, False),
                                                                   Cluster("C", 1, False)]  # ties in sort order
    cfg = load_config("tiny-test", data_dir=tmp_path, data={"answer_style": "mcq"})
    assert selection_step.in_store(cfg)
    label_free = load_config("tiny-test", data_dir=tmp_path, data={"answer_style": "mcq"},
                             weighting={"labels": "majority"})
    assert not selection_step.in_store(label_free)


CHECKERS = '''
"""A user's answer styles, as a test writes them: distances with units, a keyword check, a check that hangs."""
import re
import time

from east_tasks.core.styles import AnswerStyle

METRES = {"mm": 0.001, "cm": 0.01, "m": 1.0, "km": 1000.0}
QUANTITY = re.compile(r"(-?\\d+(?:\\.\\d+)?)\\s*(mm|cm|km|m)\\b")


def extract(response):
    found = QUANTITY.findall(response)
    return f"{found[-1][0]} {found[-1][1]}" if found else None


def metres(answer):
    value, unit = answer.split()
    return float(value) * METRES[unit]


def equivalent(a, b):
    return abs(metres(a) - metres(b)) < 1e-9


UNITS = AnswerStyle(extract=extract, equivalent=equivalent, timeout_s=2.0, version="1",
                    instruction="Solve the problem. End with the distance and its unit, e.g. 12 km.")


def check(response, gold):
    """Check-only: the response names the gold keyword."""
    return gold.lower() in response.lower()


def hanging_check(response, gold):
    if "spin" in response:
        while True:  # a checker that never returns, holding the GIL
            pass
    if "sleep" in response:
        time.sleep(3600)
    return gold in response


HANGING = AnswerStyle(check=hanging_check, timeout_s=1.0)
'''


@pytest.fixture()
def checkers(tmp_path, monkeypatch) -> str:
    """The module above, importable here and in the workers (sys.path and PYTHONPATH): its name, unique to the
    test, since a process imports a style once."""
    name = f"user_checkers_{tmp_path.name.replace('-', '_')}"
    (tmp_path / "mods").mkdir()
    (tmp_path / "mods" / f"{name}.py").write_text(CHECKERS)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    monkeypatch.setenv("PYTHONPATH", f"{tmp_path / 'mods'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    return name


def test_a_users_extract_and_equivalent_run_in_the_workers(checkers, tmp_path) -> None:
    style = f"{checkers}:UNITS"
    assert DataConfig(answer_style=style).answer_style == style  # recorded as given
    assert extract_answers(["It is 12 km away.", "1200000 cm in all", "far"], style) == ["12 km", "1200000 cm", None]
    assert answers_match("12 km", "12000 m", style) and not answers_match("12 km", "12 m", style)
    clusters = cluster_answers(["12 km", "5 m", "12000 m", None, "500 cm"], "12000 m", style)
    assert clusters == [Cluster("12 km", 2, True), Cluster("5 m", 2, False), Cluster(NO_ANSWER, 1, False)]
    assert not answer_style(style).exact_match  # equivalence is the user's: clustered in Python, not in SQL
    # the same style registered as an entry point by an installed package (its metadata, on sys.path)
    dist = tmp_path / "mods" / f"{checkers}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {checkers}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[east.answer_styles]\nunits-{checkers} = {style}\n")
    assert DataConfig(answer_style=f"units-{checkers}").answer_style == f"units-{checkers}"
    assert answers_match("12 km", "12000 m", f"units-{checkers}")
    assert keys.style_key(f"units-{checkers}") == f"units-{checkers}@1"
    # its prompt: its own instruction in a chat; few-shot needs worked examples, which it has none of
    assert instruction(style) == "Solve the problem. End with the distance and its unit, e.g. 12 km."
    with pytest.raises(ValueError, match=rf"answer style '{style}' has no worked examples \(AnswerStyle.examples\)"):
        make_prompter("fewshot", style, None)
    assert make_prompter("zeroshot", style, None)("How far?") == "Q: How far?\nA:"


def test_a_check_only_style_grades_responses_and_clusters_by_verdict(checkers, tmp_path) -> None:
    style = f"{checkers}:check"
    texts = ["The capital is Paris.", "It is paris", "Lyon, I think", "Paris!"]
    assert extract_answers(texts, style) == [None] * 4
    verdicts = grade_responses([None] * 4, ["Paris"] * 4, style, texts)
    assert verdicts == [True, True, False, True]
    assert cluster_answers([None] * 4, "Paris", style, verdicts=verdicts) == [Cluster(CHECK_PASSED, 3, True),
                                                                             Cluster(CHECK_FAILED, 1, False)]
    # the entropy of two clusters, passed and failed: -(3/4 log2 3/4 + 1/4 log2 1/4)
    gens = pd.DataFrame({"problem_id": "q", "sample_idx": range(4), "pred_answer": None, "correct": verdicts})
    _, stats = cluster_and_score(gens, pd.DataFrame({"problem_id": ["q"], "answer": ["Paris"]}), style)
    assert stats.entropy[0] == pytest.approx(0.8112781244591328)
    assert (stats.n_correct[0], stats.n_wellformed_incorrect[0]) == (3, 1)
    # maj@k votes on the verdicts of the first k samples, ties to the one seen first: F | F,P | F,P,P | F,P,P,F
    sampled = pd.DataFrame({"problem_id": "q", "pred_answer": None, "correct": [False, True, True, False]})
    result = evaluate(sampled.head(1), sampled, pd.DataFrame({"problem_id": ["q"], "answer": ["Paris"], "tier": [1]}),
                      4, style)
    assert result.maj_at_k == {1: 0.0, 2: 0.0, 3: 1.0, 4: 0.0} and result.pass_at_k[4] == 1.0
    # label-free rounds vote on answers, which this style has none of: refused before anything runs
    cfg = load_config("tiny-test", data_dir=tmp_path, data={"answer_style": style}, weighting={"labels": "majority"})
    with pytest.raises(UserError, match=r"weighting.labels=majority votes on the responses' answers, and answer "
                                        rf"style '{style}' extracts none"):
        preflight(cfg)


def test_a_hanging_checker_is_killed_at_its_bound_and_counts_as_incorrect(checkers, caplog) -> None:
    style = f"{checkers}:HANGING"
    assert grade_responses([None], ["42"], style, ["42"]) == [True]  # the workers are up, the style imported
    before = grading.timeouts["timed out"]
    t0 = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="east_tasks.engines.grading"):
        verdicts = grade_responses([None] * 4, ["42"] * 4, style, ["42", "41", "spin 42", "sleep 42"])
    elapsed = time.monotonic() - t0
    assert verdicts == [True, False, False, False]
    # two workers: each hang costs its bound (1 s) once, side by side; the margin is a loaded 2-core machine's
    # (replacing the killed workers), and a hang that was not killed would never end
    assert elapsed < 1.0 + 20.0
    assert grading.timeouts["timed out"] == before + 2  # for the step's answers_unchecked
    warnings = [r.getMessage() for r in caplog.records if r.name == "east_tasks.engines.grading"]
    assert warnings == [f"answer style '{style}': check ran past its 1 s bound and was killed; it counts as "
                        "incorrect (further ones are counted in the step's answers_unchecked, not logged)"]
    assert grade_responses([None], ["42"], style, ["42"]) == [True]  # the killed workers were replaced


def test_a_bad_style_is_one_line_before_anything_runs(checkers, tmp_path) -> None:
    cfg = load_config("tiny-test", data_dir=tmp_path, data={"answer_style": "no_such_checkers:chk"})
    with pytest.raises(UserError) as err:
        preflight(cfg)
    assert str(err.value).startswith("data.answer_style: cannot import 'no_such_checkers:chk' (ModuleNotFoundError: "
                                     "No module named 'no_such_checkers'); allowed: gsm8k, math, mcq, a "
                                     "'module:function' or 'module:object' import path, or an entry point of group "
                                     "east.answer_styles (")
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=rf"cannot import '{checkers}:nope' \(AttributeError: module "):
        answer_style(f"{checkers}:nope")
    with pytest.raises(UserError, match=rf"'{checkers}:METRES' is not an answer style: dict has none of extract, "):
        answer_style(f"{checkers}:METRES")
    with pytest.raises(UserError, match=r"is not an answer style: a function must be check\(response, gold\)"):
        answer_style(f"{checkers}:metres")
    # the config checks the form only (importing is preflight's): a bare name must be a registered entry point
    with pytest.raises(ValidationError, match="answer_style\n  Value error, unknown style 'multiple-choice'; allowed: "
                                              "gsm8k, math, mcq, a 'module:function'"):
        DataConfig(answer_style="multiple-choice")


def test_the_generation_key_follows_the_style(checkers, tmp_path) -> None:
    """Built-ins keep the keys every earlier store holds (tests/test_keys.py); a user's style is keyed by its
    version, or else by its module's code, so an edited checker grades again."""
    assert [keys.style_key(s) for s in ("gsm8k", "math", "mcq")] == ["gsm8k", "math", "mcq"]
    assert keys.style_key(f"{checkers}:UNITS") == f"{checkers}:UNITS@1"
    before = keys.style_key(f"{checkers}:check")
    assert before.startswith(f"{checkers}:check@") and len(before.split("@")[1]) == 16
    module = tmp_path / "mods" / f"{checkers}.py"
    module.write_text(module.read_text().replace("gold.lower() in", "gold.lower().strip() in"))
    assert keys.style_key(f"{checkers}:check") not in (before, "")
    gen = [keys.gen_key("m", "d", "pool", {}, 0, "vllm", "Q: {q}\nA:", keys.style_key(s)) for s in ("gsm8k", "mcq")]
    assert gen[0] != gen[1]


# An mcq pool by hand: per question its gold, its responses, and what the selection makes of them.
#   q1: B, B, C, -      clusters 2/1/1 -> H = 1.5 bits; kept (a wrong C to reject)
#   q2: D, D, D, D      all correct -> H = 0; dropped (all_correct)
#   q3: A, C, B, -      four clusters of 1 -> H = 2 bits; kept
#   q4: A, A, A, B      none is D -> H = 0.811; dropped (no_correct)
#   q5: E, E, -, -      no wrong letter -> H = 1; dropped (no_wellformed_incorrect)
MCQ_POOL = {
    "q1": ("B", ["The answer is (B).", "Answer: B", "I think A is wrong. The answer is C.", "No idea, sorry."]),
    "q2": ("(D)", ["(D)", "D.", "So $\\boxed{D}$", "the answer is d."]),
    "q3": ("C", ["Answer: A", "The answer is (C)", "A train is faster. The answer is B", "I think A is wrong."]),
    "q4": ("D", ["The answer is A.", "Answer: (a)", "A", "The answer is B"]),
    "q5": ("E", ["The answer is (E).", "E", "I'm not sure.", "Maybe 42?"]),
}


def test_an_mcq_pool_selects_the_hand_computed_rows_in_sql_and_in_frames(tmp_path, monkeypatch) -> None:
    settings = {"data": {"answer_style": "mcq"}, "weighting": {"a": 1.0}}
    sql = load_config("tiny-test", data_dir=tmp_path / "sql", **settings)
    frames = load_config("tiny-test", data_dir=tmp_path / "frames", **settings)
    problems = pd.DataFrame([{"dataset_key": "d", "split": "pool", "idx": i, "problem_id": pid, "question": pid,
                              "answer": gold, "tier": 1} for i, (pid, (gold, _)) in enumerate(MCQ_POOL.items())])
    samples = [(pid, i, text, gold) for pid, (gold, texts) in MCQ_POOL.items() for i, text in enumerate(texts)]
    preds = extract_answers([text for _, _, text, _ in samples], "mcq")
    correct = grade_responses(preds, [gold for *_, gold in samples], "mcq")
    gens = pd.DataFrame([{"gen_key": "g", "problem_id": pid, "sample_idx": i, "prompt_key": pid, "text": text,
                          "pred_answer": pred, "num_tokens": 10, "correct": ok}
                         for (pid, i, text, _), pred, ok in zip(samples, preds, correct, strict=True)])
    with Store(sql.store_path) as store:
        store.insert_df("problems", problems)
        store.insert_df("generations", gens)
    (tmp_path / "frames").mkdir()
    shutil.copy(sql.store_path, frames.store_path)
    parent = ModelRef(path="unused", hash="h")
    assert selection_step.in_store(sql)
    select_and_weight(sql, "g", "d", parent)
    monkeypatch.setattr(selection_step, "in_store", lambda cfg: False)
    select_and_weight(frames, "g", "d", parent)
    for cfg in (sql, frames):
        with Store(cfg.store_path) as store:
            stats = store.query("SELECT problem_id, entropy, drop_reason FROM question_stats ORDER BY problem_id")
            rows = store.query("SELECT problem_id, sample_idx, weight FROM training_examples ORDER BY example_idx")
            q1 = store.query("SELECT answer, size, correct FROM clusters WHERE problem_id = 'q1' ORDER BY ALL")
        assert stats.entropy.tolist() == pytest.approx([1.5, 0.0, 2.0, 0.8112781244591328, 1.0])
        assert stats.drop_reason.fillna("kept").tolist() == ["kept", "all_correct", "kept", "no_correct",
                                                             "no_wellformed_incorrect"]
        assert q1.values.tolist() == [[NO_ANSWER, 1, False], ["B", 2, True], ["C", 1, False]]
        # one correct response per kept question (q1's drawn from its two), weighted H / mean H (a = 1)
        assert rows.problem_id.tolist() == ["q1", "q3"] and rows.sample_idx[0] in (0, 1) and rows.sample_idx[1] == 1
        assert rows.weight.tolist() == pytest.approx([1.5 / 1.75, 2.0 / 1.75])
