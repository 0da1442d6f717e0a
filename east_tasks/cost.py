"""What a step cost: wall seconds, CPU seconds of the process and its live children (the vLLM engine runs in
children), GPU seconds where a GPU did the work, tokens generated and trained. Recorded with each computed step
(`step_status`), summed per round, so a report can say what a point of accuracy cost."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import psutil

COST_FIELDS = ("wall_s", "cpu_s", "gpu_s", "tokens_generated", "tokens_trained")


def _cpu_seconds() -> float:
    """User + system CPU of this process, its finished children and its live descendants."""
    me = psutil.Process()
    t = me.cpu_times()
    total = t.user + t.system + t.children_user + t.children_system
    for child in me.children(recursive=True):
        try:
            c = child.cpu_times()
            total += c.user + c.system
        except psutil.Error:
            pass
    return total


def _on_gpu() -> bool:
    import torch

    return torch.cuda.is_available()


@dataclass(frozen=True)
class Cost:
    wall_s: float
    cpu_s: float
    gpu_s: float
    tokens_generated: int = 0
    tokens_trained: int = 0

    def as_dict(self) -> dict:
        return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(self).items()}


class Meter:
    """Started when a step starts computing; `cost()` when it is done. A child that starts and exits inside
    the step, or a live one started before it, is counted for the part it ran while being watched."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.time(), _cpu_seconds()

    def cost(self, tokens_generated: int = 0, tokens_trained: int = 0) -> Cost:
        wall = time.time() - self.wall0
        return Cost(wall, max(0.0, _cpu_seconds() - self.cpu0), wall if _on_gpu() else 0.0,
                    tokens_generated, tokens_trained)
