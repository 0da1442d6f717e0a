"""Runs inside vLLM's worker process, added to the worker through vLLM's `worker_extension_cls` (the hook TRL
and OpenRLHF use for weight sync); called with `llm.collective_rpc("load_checkpoint", ...)`."""

from __future__ import annotations

from east_tasks.engines.generation.vllm_env import setup_engine_process

setup_engine_process()  # this module is imported in the worker, whatever the command's main module


class WeightSync:
    def load_checkpoint(self, path: str) -> None:
        """The checkpoint's weights in place of the engine's, and nothing derived from the old ones left.

        vLLM's `reload_weights` re-processes every layer whose weights it loaded. A tied LM head loads none
        of its own (it shares the embedding's), so on the CPU build it kept the oneDNN matrix packed from the
        *old* embedding at start-up: logits came from stale weights and greedy output differed from a fresh
        engine's on 22 of 600 prompts. Re-processing every embedding layer (the head is one) repacks it; on a
        GPU that step is a no-op.
        """
        from vllm.model_executor.layers.vocab_parallel_embedding import VocabParallelEmbedding

        self.reload_weights(weights_path=path)  # type: ignore[attr-defined]  # the vLLM Worker this extends
        for module in self.model_runner.model.modules():  # type: ignore[attr-defined]
            if isinstance(module, VocabParallelEmbedding):
                module.quant_method.process_weights_after_loading(module)
