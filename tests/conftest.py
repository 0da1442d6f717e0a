import pytest

from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_completion, format_prompt
from east_tasks.models.tiny import build_tokenizer


@pytest.fixture(scope="session")
def tiny_tokenizer():
    corpus = [format_prompt(p.question) + format_completion(p.solution) for p in make_split(300, seed=7)]
    return build_tokenizer(corpus)
