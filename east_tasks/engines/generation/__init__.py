"""One sampling interface, two backends: vLLM (GPU, or its CPU build) and transformers `generate`.

Engines are slow to start (vLLM even for a tiny model: docs/concepts/engines.md), so one engine is kept alive and
reused while the same model is asked for. Asking for another checkpoint of the same model loads its weights
into the running engine where it can (`backend.weight_sync`, as verl and OpenRLHF do), else restarts it.
`park_generator()` before training frees what training needs (an accelerator's memory) and keeps an engine
that holds only host memory; `release_generator()` shuts it down.
"""

from __future__ import annotations

import time
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

    def load_weights(self, model_path: str) -> bool:
        """Another checkpoint's weights into the running engine; False (nothing changed) where that cannot
        give exactly what a fresh engine would."""
        ...

    def close(self) -> None: ...

    stays_up_while_training: bool  # True where the engine holds only host memory and idles without a cost


_active: tuple[tuple, Generator] | None = None
last_engine_event = ""  # how the last `get_generator` got its engine, for the step log


def get_generator(model_path: str, backend: BackendConfig) -> Generator:
    global _active, last_engine_event
    key = (model_path, backend)
    if _active is not None and _active[0] == key:
        last_engine_event = "reused"
        return _active[1]
    t0 = time.time()
    if _active is not None and backend.weight_sync and _active[0][1] == backend and _active[1].load_weights(model_path):
        _active = (key, _active[1])
        last_engine_event = f"weights synced in {time.time() - t0:.2f}s"
        return _active[1]
    release_generator()
    if backend.engine == "vllm":
        from east_tasks.engines.generation.vllm_backend import VLLMGenerator

        gen: Generator = VLLMGenerator(model_path, backend)
    else:
        from east_tasks.engines.generation.hf_backend import HFGenerator

        gen = HFGenerator(model_path, backend)
    _active = (key, gen)
    last_engine_event = f"started in {time.time() - t0:.1f}s"
    return gen


def park_generator() -> None:
    """Before training: an engine on an accelerator is shut down (its memory is what training needs); one in
    host memory (vLLM's CPU build) stays up idle, so the next checkpoint's weights can be synced into it."""
    if _active is not None and not _active[1].stays_up_while_training:
        release_generator()


def release_generator() -> None:
    global _active
    if _active is not None:
        _active[1].close()
        _active = None
