"""Prompts: the zero-shot "Q: {question}\\nA:" of the embedded task, a few-shot variant of it for base models,
and the tokenizer's chat template for instruct models (`DataConfig.prompt`; `auto` = chat when the tokenizer
has a template, else few-shot).

The few-shot examples are hand-written (not taken from any benchmark) and end the way the answer extractor
expects: "The answer is N." for gsm8k style, "\\boxed{...}" for math style. Plain prompts stop at "\\nQ:", where
a base model would start inventing the next question.
"""

from __future__ import annotations

from dataclasses import dataclass

PROMPT_TEMPLATE = "Q: {question}\nA:"
PLAIN_STOP = ("\nQ:",)
# Chat templates that print today's date (Llama 3) would change every prompt, and with it every cache key,
# at midnight; the date is pinned instead.
CHAT_TEMPLATE_DATE = "26 Jul 2024"

INSTRUCTIONS = {
    "gsm8k": "Solve the following math problem step by step. End with \"The answer is N.\" where N is the final "
             "number.",
    "math": "Solve the following math problem step by step. Put your final answer within \\boxed{}.",
}

FEW_SHOT: dict[str, list[tuple[str, str]]] = {
    "gsm8k": [
        ("A baker makes 24 rolls in the morning and 18 in the afternoon. He sells 30 of them. How many rolls "
         "are left?", "He makes 24 + 18 = 42 rolls. After selling 30, 42 - 30 = 12 are left. The answer is 12."),
        ("Maya reads 15 pages a day for 6 days, then 20 pages on the seventh day. How many pages does she read "
         "in total?", "In 6 days she reads 15 * 6 = 90 pages. Adding the seventh day, 90 + 20 = 110. "
         "The answer is 110."),
        ("A shirt costs $40 and is on sale for 25% off. How much does it cost on sale?",
         "The discount is 40 * 25 / 100 = 10 dollars, so the price is 40 - 10 = 30 dollars. The answer is 30."),
        ("Four friends share 3 pizzas, each cut into 8 slices, equally. How many slices does each get?",
         "There are 3 * 8 = 24 slices, so each friend gets 24 / 4 = 6 slices. The answer is 6."),
    ],
    "math": [
        ("Solve for $x$: $3x - 7 = 11$.", "Adding 7 to both sides gives $3x = 18$, so $x = 6$. "
         "The answer is $\\boxed{6}$."),
        ("What is $\\frac{2}{3} + \\frac{1}{6}$?", "With a common denominator, $\\frac{4}{6} + \\frac{1}{6} = "
         "\\frac{5}{6}$. The answer is $\\boxed{\\frac{5}{6}}$."),
        ("Simplify $\\sqrt{50}$.", "$\\sqrt{50} = \\sqrt{25 \\cdot 2} = 5\\sqrt{2}$. "
         "The answer is $\\boxed{5\\sqrt{2}}$."),
        ("For which $x$ is $x^2 < 4$?", "$x^2 < 4$ holds exactly when $-2 < x < 2$. "
         "The answer is $\\boxed{(-2, 2)}$."),
    ],
}


def format_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def format_completion(solution: str) -> str:
    """Completions start with a space so prompt + completion reads naturally and tokenizes stably."""
    return " " + solution.strip()


def few_shot_prompt(question: str, style: str) -> str:
    shots = "".join(format_prompt(q) + format_completion(a) + "\n\n" for q, a in FEW_SHOT[style])
    return shots + format_prompt(question)


@dataclass(frozen=True)
class Prompter:
    """Builds each question's prompt in one of the modes; `stop` are the sampling stop strings that go with it."""

    mode: str  # zeroshot | fewshot | chat (never auto: resolved by `make_prompter`)
    style: str
    stop: tuple[str, ...]
    tokenizer: object = None  # only for chat

    def __call__(self, question: str) -> str:
        if self.mode == "zeroshot":
            return format_prompt(question)
        if self.mode == "fewshot":
            return few_shot_prompt(question, self.style)
        messages = [{"role": "user", "content": f"{INSTRUCTIONS[self.style]}\n\n{question}"}]
        text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                  date_string=CHAT_TEMPLATE_DATE)
        # vLLM and training tokenize the prompt with the tokenizer's special tokens; a BOS the template already
        # wrote would be doubled.
        bos = self.tokenizer.bos_token
        if bos and text.startswith(bos) and self.tokenizer("x").input_ids[:1] == [self.tokenizer.bos_token_id]:
            text = text[len(bos):]
        return text

    @property
    def template(self) -> str:
        """The prompt with a placeholder question: part of the generation cache key."""
        return self("{q}")


def make_prompter(mode: str, style: str, stop: tuple[str, ...] | None, tokenizer=None) -> Prompter:
    """`tokenizer` is needed for `chat` and `auto` (a transformers tokenizer; `auto` picks chat if it has a
    chat template)."""
    if mode == "auto":
        mode = "chat" if getattr(tokenizer, "chat_template", None) else "fewshot"
    if mode == "chat" and not getattr(tokenizer, "chat_template", None):
        raise ValueError("data.prompt is 'chat' but the model's tokenizer has no chat template; use 'fewshot'")
    default_stop = () if mode == "chat" else PLAIN_STOP
    return Prompter(mode, style, default_stop if stop is None else tuple(stop), tokenizer if mode == "chat" else None)
