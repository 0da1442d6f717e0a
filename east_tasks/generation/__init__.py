"""One sampling interface, two backends: vLLM (GPU, or its CPU build) and transformers `generate`.

Engines are expensive to start (~20 s for vLLM even for a tiny model), so one engine is kept alive and
reused while the same model is asked for; asking for another model, or `release_generator()` (call it
before training, so the engine's memory and threads are free), shuts the old one down.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from east_tasks.config import BackendConfig


@dataclass(frozen=True)
class SampleSpec:
    n: int
    temperature: float  # 0 means greedy (and n must be 1)
    top_p: float
    max_tokens: int
    stop: tuple[str, ...] = ()  # generation ends before any of these strings (which are not returned)


@dataclass(frozen=True)
class Completion:
    text: str
    num_tokens: int


class Generator(Protocol):
    def generate(self, prompts: Sequence[str], seeds: Sequence[int], spec: SampleSpec) -> list[list[Completion]]:
        """n completions per prompt; `seeds[i]` makes prompt i's samples reproducible."""
        ...

    def close(self) -> None: ...


_active: tuple[tuple, Generator] | None = None


def get_generator(model_path: str, backend: BackendConfig) -> Generator:
    global _active
    key = (model_path, backend)
    if _active is not None and _active[0] == key:
        return _active[1]
    release_generator()
    if backend.backend == "vllm":
        from east_tasks.generation.vllm_backend import VLLMGenerator

        gen: Generator = VLLMGenerator(model_path, backend)
    else:
        from east_tasks.generation.hf_backend import HFGenerator

        gen = HFGenerator(model_path, backend)
    _active = (key, gen)
    return gen


def release_generator() -> None:
    global _active
    if _active is not None:
        _active[1].close()
        _active = None
