"""What an answer style is, and how a user's style is found: the protocol the built-in styles (gsm8k, math, mcq in
`east_tasks.core.answers`) are instances of, and the loader of `module:attr` import paths and entry points.

A style is either
- answers: `extract(response) -> str | None` and a way to compare two answers: `equivalent(a, b) -> bool`, or
  `exact_match=True` (string equality after the optional `normalize(answer) -> str`). A response is correct when
  its answer matches the gold one; responses cluster by equivalent answers. An exact-match style's selection runs
  in the store (`east_tasks.store.selection`); or
- a whole-response check: `check(response, gold) -> bool`, optionally with `extract` (and `equivalent` or
  `exact_match`) to cluster the answers. A check style grades each response by its own verdict. Its clusters, for
  the entropy and the filters: with `extract`, the answers (a cluster is correct when one of its responses
  passed); without, two: the responses that passed and those that failed, so the entropy is that of the pass
  rate. Label-free rounds need answers to vote on, so they refuse a check style without `extract`.

Loading a user's style imports the user's code; it touches no store, file or engine (importlib does the finding).
Whatever the style is, its functions run in the engines' worker processes (`east_tasks.engines.grading`), killed
past `timeout_s`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from importlib import import_module
from importlib.metadata import entry_points

from east_tasks.errors import UserError

# data.answer_style: a built-in, a `module:attr` import path, or an entry point's name in this group. The config
# checks the form (and that a bare name is registered: installed metadata only); preflight imports the style.
BUILTIN_ANSWER_STYLES = ("gsm8k", "math", "mcq")
ANSWER_STYLE_GROUP = "east.answer_styles"


def registered_answer_styles() -> list[str]:
    """The answer styles installed packages register (their metadata is read; nothing is imported)."""
    return sorted(ep.name for ep in entry_points(group=ANSWER_STYLE_GROUP))


def allowed_answer_styles() -> str:
    """What data.answer_style takes, for messages."""
    registered = ", ".join(registered_answer_styles()) or "none registered"
    return (f"allowed: {', '.join(BUILTIN_ANSWER_STYLES)}, a 'module:function' or 'module:object' import path, or "
            f"an entry point of group {ANSWER_STYLE_GROUP} ({registered})")


FUNCTIONS = ("extract", "normalize", "equivalent", "check")


@dataclass(frozen=True)
class AnswerStyle:
    """An answer style (module docstring). Every function must be importable by the worker processes that run
    it: defined at a module's top level, in a module on the workers' path (PYTHONPATH, or an installed package)."""

    extract: Callable[[str], str | None] | None = None
    equivalent: Callable[[str, str], bool] | None = None
    normalize: Callable[[str], str] | None = None
    exact_match: bool = False  # equivalence is `normalize(a) == normalize(b)`: the selection can run in SQL
    check: Callable[[str, str], bool] | None = None
    timeout_s: float = 5.0  # bound on each call in a worker; past it the call counts as no answer / not equal
    instruction: str | None = None  # a chat prompt's first line: how to end the response so `extract` finds it
    examples: tuple[tuple[str, str], ...] = ()  # (question, worked solution) pairs for data.prompt=fewshot
    # Functions that cannot hang (plain string code) may run in the caller's process, which is faster: the
    # built-in regexes do. Every other function runs in a worker process bounded by `timeout_s`.
    in_process: frozenset[str] = field(default_factory=frozenset)
    version: str | None = None  # part of the generation key; unset, a user style's key hashes its module's file

    def __post_init__(self) -> None:
        if self.check is None and self.extract is None:
            raise ValueError("give extract(response) (with equivalent(a, b) or exact_match=True), "
                             "or check(response, gold)")
        if self.extract is not None and (self.equivalent is None) == (not self.exact_match):
            raise ValueError("extract needs one way to compare answers: equivalent(a, b), or exact_match=True "
                             "(string equality after normalize), not both")
        if self.extract is None and (self.equivalent or self.normalize or self.exact_match):
            raise ValueError("equivalent, normalize and exact_match compare extracted answers: give extract too")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if unknown := set(self.in_process) - set(FUNCTIONS):
            raise ValueError(f"in_process names functions of {', '.join(FUNCTIONS)}; not {', '.join(sorted(unknown))}")

    @property
    def grades_responses(self) -> bool:
        """Whether a response is graded by `check` (its own verdict) rather than by its extracted answer."""
        return self.check is not None


def load_style(spec: str) -> AnswerStyle:
    """A user's style from `module:attr` (attr may be dotted) or an entry point's name: an `AnswerStyle`, a
    function `check(response, gold)`, or an object with the style's attributes (a module, a class instance).
    Raises `UserError` in one line that names the value and what is allowed."""
    try:
        if ":" in spec:
            module, _, attr = spec.partition(":")
            obj: object = import_module(module)
            for part in attr.split("."):
                obj = getattr(obj, part)
        else:
            found = [ep for ep in entry_points(group=ANSWER_STYLE_GROUP) if ep.name == spec]
            if not found:
                raise UserError(f"data.answer_style: unknown style {spec!r}; {allowed_answer_styles()}")
            obj = found[0].load()
    except UserError:
        raise
    except Exception as err:  # the user's module failed to import or lacks the name: say which, in one line
        why = f"{type(err).__name__}: {(str(err).splitlines() or [''])[0]}"
        raise UserError(f"data.answer_style: cannot import {spec!r} ({why}); {allowed_answer_styles()}") from err
    try:
        return as_style(obj)
    except (TypeError, ValueError) as err:
        raise UserError(f"data.answer_style: {spec!r} is not an answer style: {err}") from err


def as_style(obj: object) -> AnswerStyle:
    """`obj` as an `AnswerStyle`: itself, a function taken as `check(response, gold)`, or the style's attributes
    read off an object."""
    if isinstance(obj, AnswerStyle):
        return obj
    if inspect.isfunction(obj) or inspect.isbuiltin(obj):
        try:
            inspect.signature(obj).bind("response", "gold")
        except TypeError as err:
            raise TypeError(f"a function must be check(response, gold) -> bool ({err})") from err
        return AnswerStyle(check=obj)
    given = {f.name: getattr(obj, f.name) for f in fields(AnswerStyle) if hasattr(obj, f.name)}
    if not given:
        raise TypeError(f"{type(obj).__name__} has none of {', '.join(FUNCTIONS)}")
    return AnswerStyle(**given)


def style_module(spec: str) -> str | None:
    """The module a user's style (`module:attr` or an entry point's name) is defined in, to fingerprint its code."""
    if ":" in spec:
        return spec.partition(":")[0]
    found = [ep for ep in entry_points(group=ANSWER_STYLE_GROUP) if ep.name == spec]
    return found[0].module if found else None
