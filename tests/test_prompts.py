"""Prompt modes: the embedded task's exact zero-shot prompt, few-shot for base models, the chat template for
instruct models (pinned date, no doubled BOS), stop strings, and the prompt stored with each generation."""

import json
import shutil

import pytest
from transformers import AutoTokenizer

from east_tasks import steps
from east_tasks.config import load_config
from east_tasks.core.answers import extract_answer
from east_tasks.data.prompts import FEW_SHOT, PLAIN_STOP, few_shot_prompt, make_prompter
from east_tasks.engines.generation import SampleSpec, release_generator
from east_tasks.paths import BACKBONE_DIR
from east_tasks.store import Store

# A small chat template in the style of Llama 3's: it writes the BOS itself and prints a date.
CHAT_TEMPLATE = ("{{ bos_token }}{% if date_string is defined %}[{{ date_string }}]{% endif %}"
                 "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                 "{% if add_generation_prompt %}<|assistant|>{% endif %}")


@pytest.fixture()
def chat_tokenizer(tiny_tokenizer):
    tok = AutoTokenizer.from_pretrained(BACKBONE_DIR)
    tok.chat_template = CHAT_TEMPLATE
    return tok


def test_embedded_task_keeps_its_zero_shot_prompt() -> None:
    cfg = load_config("tiny")
    prompter = steps.prompter_for(cfg, str(BACKBONE_DIR))
    assert (prompter.mode, prompter.stop) == ("zeroshot", PLAIN_STOP)
    assert prompter("Tom has 3 apples.") == "Q: Tom has 3 apples.\nA:"
    assert prompter.template == "Q: {q}\nA:"


@pytest.mark.parametrize("style", ["gsm8k", "math", "mcq"])
def test_few_shot_examples_end_the_way_the_extractor_reads(style: str) -> None:
    prompt = few_shot_prompt("What is 1 + 1?", style)
    assert prompt.endswith("\n\nQ: What is 1 + 1?\nA:") and prompt.count("Q: ") == len(FEW_SHOT[style]) + 1
    expected = {"gsm8k": ["12", "110", "30", "6"], "math": ["6", "\\frac{5}{6}", "5\\sqrt{2}", "(-2, 2)"],
                "mcq": ["B", "C", "A", "D"]}[style]
    assert [extract_answer(a, style) for _, a in FEW_SHOT[style]] == expected
    assert not any(s in a for _, a in FEW_SHOT[style] for s in PLAIN_STOP)


def test_auto_picks_the_chat_template_when_there_is_one(tiny_tokenizer, chat_tokenizer) -> None:
    assert make_prompter("auto", "gsm8k", None, tiny_tokenizer).mode == "fewshot"
    chat = make_prompter("auto", "math", None, chat_tokenizer)
    assert (chat.mode, chat.stop) == ("chat", ())
    text = chat("What is $1+1$?")
    # the template's BOS is dropped (the tokenizer adds its own), the date is pinned, the instruction leads
    assert text == ("[26 Jul 2024]<|user|>Solve the following math problem step by step. Put your final answer "
                    "within \\boxed{}.\n\nWhat is $1+1$?<|assistant|>")
    assert chat_tokenizer(text).input_ids.count(chat_tokenizer.bos_token_id) == 1
    assert make_prompter("fewshot", "gsm8k", ("###",), chat_tokenizer).stop == ("###",)  # explicit stop wins
    with pytest.raises(ValueError, match="no chat template; use 'fewshot'"):
        make_prompter("chat", "gsm8k", None, tiny_tokenizer)


def test_generation_stores_the_chat_prompt_and_keys_on_it(tmp_path, chat_tokenizer) -> None:
    model_dir = tmp_path / "chat-model"
    shutil.copytree(BACKBONE_DIR, model_dir)
    chat_tokenizer.save_pretrained(model_dir)
    # the few-shot prompt is ~660 tokens: the plain copy's context is raised so that it fits (RoPE runs past 256)
    plain_dir = tmp_path / "plain-model"
    shutil.copytree(BACKBONE_DIR, plain_dir)
    config = json.loads((plain_dir / "config.json").read_text())
    (plain_dir / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 1024}))
    spec = SampleSpec(n=1, temperature=0.0, top_p=1.0, max_tokens=8)
    keys = {}
    for name, model in (("chat", steps.model_ref(model_dir)), ("plain", steps.model_ref(plain_dir))):
        cfg = load_config("tiny-test", data_dir=tmp_path / name, base_model=model.path,
                          backend={"engine": "hf", "max_model_len": 1024 if name == "plain" else 256},
                          sampling={"max_tokens": spec.max_tokens}, eval={"max_tokens": spec.max_tokens},
                          data={"pool_size": 3, "test_size": 2, "prompt": "auto"})
        dataset_key = steps.prepare_data(cfg).key
        keys[name] = steps.generate(cfg, model, dataset_key, "test", spec, seed=0, step="gen").key
        release_generator()
        with Store(cfg.store_path) as store:
            rows = store.query("SELECT t.prompt, p.question FROM generations g JOIN prompts t USING (prompt_key) "
                               "JOIN problems p USING (problem_id)")  # each prompt stored once, by its hash
        assert len(rows) == 2
        for prompt, question in rows.itertuples(index=False):
            if name == "chat":
                assert prompt.startswith("[26 Jul 2024]<|user|>Solve") and prompt.endswith(f"{question}<|assistant|>")
            else:  # no chat template: few-shot
                assert prompt == few_shot_prompt(question, "gsm8k")
    assert keys["chat"] != keys["plain"]
