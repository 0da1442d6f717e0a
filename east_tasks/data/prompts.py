"""Prompts: the zero-shot "Q: {question}\\nA:" of the embedded task, a few-shot variant of it for base models,
and the tokenizer's chat template for instruct models (`DataConfig.prompt`; `auto` = chat when the tokenizer
has a template, else few-shot).

The few-shot examples are hand-written (not taken from any benchmark) and end the way the answer extractor
expects: "The answer is N." for gsm8k style, "\\boxed{...}" for math style, "The answer is (X)." for mcq. A user's
answer style brings its own (`AnswerStyle.instruction`, `.examples`). Plain prompts stop at "\\nQ:", where a base
model would start inventing the next question.
"""

from __future__ import annotations

from dataclasses import dataclass

from east_tasks.core.answers import answer_style

PROMPT_TEMPLATE = "Q: {question}\nA:"
PLAIN_STOP = ("\nQ:",)
# Chat templates that print today's date (Llama 3) would change every prompt, and with it every cache key,
# at midnight; the date is pinned instead.
CHAT_TEMPLATE_DATE = "26 Jul 2024"

INSTRUCTIONS = {
    "gsm8k": "Solve the following math problem step by step. End with \"The answer is N.\" where N is the final "
             "number.",
    "math": "Solve the following math problem step by step. Put your final answer within \\boxed{}.",
    "mcq": "Solve the following multiple-choice problem step by step. End with \"The answer is (X).\" where X is the "
           "letter of the correct option.",
}
GENERIC_INSTRUCTION = "Solve the following problem step by step."

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
    "mcq": [
        ("A box holds 6 eggs. How many eggs are in 4 boxes? (A) 10 (B) 24 (C) 18 (D) 64",
         "Each box holds 6 eggs, so 4 boxes hold 4 * 6 = 24 eggs. The answer is (B)."),
        ("Which number is prime? (A) 21 (B) 27 (C) 29 (D) 33",
         "21 = 3 * 7, 27 = 3 * 9 and 33 = 3 * 11, while 29 has no divisor but 1 and itself. The answer is (C)."),
        ("A train travels 120 km in 2 hours. What is its average speed? (A) 60 km/h (B) 240 km/h (C) 122 km/h "
         "(D) 40 km/h", "Average speed is distance over time: 120 / 2 = 60 km/h. The answer is (A)."),
        ("What is 15% of 80? (A) 8 (B) 15 (C) 10 (D) 12",
         "15% of 80 is 0.15 * 80 = 12. The answer is (D)."),
    ],
}


def format_prompt(question: str) -> str:
    return PROMPT_TEMPLATE.format(question=question)


def format_completion(solution: str) -> str:
    """Completions start with a space so prompt + completion reads naturally and tokenizes stably."""
    return " " + solution.strip()


def instruction(style: str) -> str:
    """A chat prompt's first line for the answer style: a built-in's, a user style's own, or a generic one."""
    return INSTRUCTIONS.get(style) or answer_style(style).instruction or GENERIC_INSTRUCTION


def examples(style: str) -> list[tuple[str, str]]:
    """The answer style's worked examples for few-shot prompts (a user's style may have none)."""
    return FEW_SHOT[style] if style in FEW_SHOT else list(answer_style(style).examples)


def few_shot_prompt(question: str, style: str) -> str:
    shots = "".join(format_prompt(q) + format_completion(a) + "\n\n" for q, a in examples(style))
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
        messages = [{"role": "user", "content": f"{instruction(self.style)}\n\n{question}"}]
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
    if mode == "fewshot" and not examples(style):
        raise ValueError(f"data.prompt is few-shot (given, or 'auto' for a model without a chat template) but answer "
                         f"style {style!r} has no worked examples (AnswerStyle.examples): give some, or use "
                         "data.prompt=zeroshot")
    default_stop = () if mode == "chat" else PLAIN_STOP
    return Prompter(mode, style, default_stop if stop is None else tuple(stop), tokenizer if mode == "chat" else None)
