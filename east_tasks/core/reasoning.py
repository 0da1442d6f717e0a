"""Checked reasoning on the embedded task: a solution's steps recomputed, so a right final answer reached by wrong
steps ("right by luck") can be told from a right one. The embedded task writes `17 + 6 = 23. 23 - 4 = 19. #### 19`.

A response's steps are valid when it has at least one `x op y = z` step, each step's arithmetic is right, each step
starts from the previous step's result, and the last result is the final answer. The share of a round's training
rows that are correct but not valid is its `lucky_share`.
"""

from __future__ import annotations

import re

_STEP = re.compile(r"(-?\d+)\s*([+\-*×x])\s*(-?\d+)\s*=\s*(-?\d+)")
_FINAL = re.compile(r"####\s*(-?\d+)")
_OPS = {"+": lambda x, y: x + y, "-": lambda x, y: x - y, "*": lambda x, y: x * y, "×": lambda x, y: x * y,
        "x": lambda x, y: x * y}


def steps_valid(response: str) -> bool:
    """Whether every step of `response` is right and the chain ends at its final answer (module docstring)."""
    final = _FINAL.search(response)
    steps = _STEP.findall(response[: final.start()] if final else response)
    if final is None or not steps:
        return False
    previous = None
    for x, op, y, z in steps:
        x, y, z = int(x), int(y), int(z)
        if _OPS[op](x, y) != z or (previous is not None and x != previous):
            return False
        previous = z
    return previous == int(final.group(1))
