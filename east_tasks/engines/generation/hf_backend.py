"""transformers `generate` fallback: slower than vLLM, but needs nothing beyond torch."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from east_tasks.config import BackendConfig
from east_tasks.engines.generation import Completion, SampleSpec


class HFGenerator:
    stays_up_while_training = False  # it shares the training process and device; reloading it is cheap

    def __init__(self, model_path: str, cfg: BackendConfig):
        self.cfg = cfg
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=cfg.trust_remote_code)
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=getattr(torch, cfg.dtype), trust_remote_code=cfg.trust_remote_code
        ).to(self.device).eval()

    @torch.inference_mode()
    def generate(self, prompts: Sequence[str], seeds: Sequence[int], spec: SampleSpec) -> list[list[Completion]]:
        greedy = spec.temperature == 0
        n = 1 if greedy else spec.n
        results: list[list[Completion]] = []
        bs = self.cfg.hf_batch_size
        for start in range(0, len(prompts), bs):
            batch = list(prompts[start : start + bs])
            # One seed per call: same prompts in the same batches give the same samples.
            torch.manual_seed(seeds[start])
            enc = self.tokenizer(batch, return_tensors="pt", padding=True).to(self.device)
            out = self.model.generate(
                **enc,
                do_sample=not greedy,
                temperature=None if greedy else spec.temperature,
                top_p=None if greedy else spec.top_p,
                top_k=None if greedy else 0,  # HF defaults to top_k=50; vLLM samples the full distribution
                max_new_tokens=spec.max_tokens,
                num_return_sequences=n,
                pad_token_id=self.tokenizer.pad_token_id,
                stop_strings=list(spec.stop) or None,
                tokenizer=self.tokenizer,
            )
            new = out[:, enc.input_ids.shape[1] :]
            for i in range(len(batch)):
                rows = new[i * n : (i + 1) * n]
                results.append([self._completion(r, spec.stop) for r in rows])
        return results

    def _completion(self, ids: torch.Tensor, stop: tuple[str, ...]) -> Completion:
        ids = ids.tolist()
        eos = self.tokenizer.eos_token_id  # finished rows are padded after their EOS: cut there
        if eos in ids:
            ids = ids[: ids.index(eos) + 1]
        text = self.tokenizer.decode(ids, skip_special_tokens=True)
        # generate stops after a stop string but keeps it; vLLM drops it: cut here so both return the same text
        cuts = [text.find(s) for s in stop if s in text]
        return Completion(text[: min(cuts)] if cuts else text, len(ids))

    def load_weights(self, model_path: str) -> bool:
        return False  # a new model is loaded as fast as new weights would be

    def close(self) -> None:
        del self.model
