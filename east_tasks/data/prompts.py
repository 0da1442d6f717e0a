"""The zero-shot prompt shared by bootstrap training, self-training and evaluation."""

PROMPT_TEMPLATE = "Q: {question}\nA:"


def format_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def format_completion(solution: str) -> str:
    """Completions start with a space so prompt + completion reads naturally and tokenizes stably."""
    return " " + solution.strip()
