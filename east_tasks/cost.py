"""What a step cost: wall seconds, CPU seconds of the process and its live children (the vLLM engine runs in
children), GPU seconds (the wall time of a step that computes on the GPU, where one is visible), tokens generated
and trained. Recorded with each computed step
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
    """Started when a step starts; `cost()` when it is done. A child that starts and exits inside the step, or a
    live one started before it, is counted for the part it ran while being watched."""

    def __init__(self) -> None:
        self.wall0, self.cpu0 = time.time(), _cpu_seconds()

    def seconds(self) -> float:
        """Wall seconds since the start."""
        return time.time() - self.wall0

    def cost(self, tokens_generated: int = 0, tokens_trained: int = 0, gpu: bool = False,
             gpu_s: float = 0.0) -> Cost:
        """`gpu`: the step computes on the GPU, so its wall time is GPU time where one is visible; otherwise
        `gpu_s`, what the steps it computed inside it spent on the GPU."""
        wall = self.seconds()
        return Cost(wall, max(0.0, _cpu_seconds() - self.cpu0), wall if gpu and _on_gpu() else gpu_s,
                    tokens_generated, tokens_trained)
