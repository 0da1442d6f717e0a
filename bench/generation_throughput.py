"""Sampling throughput, vLLM vs transformers `generate`, on the same prompts in one run.

    .venv/bin/python bench/generation_throughput.py [--prompts 128] [--n 16] [--model DIR]

Prints samples/s for each backend (engine start-up excluded and reported separately) and the ratios, with vLLM
as the pipeline configures it on the CPU build, at vLLM's own 256 sequences a step, and in bfloat16.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import record

from east_tasks.config import BackendConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_prompt
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.paths import BACKBONE_DIR


def measure(backend: BackendConfig, model: str, prompts: list[str], spec: SampleSpec) -> tuple[float, float, float]:
    """(start-up s, samples/s once started, samples/s counting the start-up)."""
    t0 = time.time()
    gen = get_generator(model, backend)
    startup = time.time() - t0
    gen.generate(prompts[:4], list(range(4)), spec)  # warm-up
    t0 = time.time()
    out = gen.generate(prompts, list(range(len(prompts))), spec)
    seconds, samples = time.time() - t0, sum(len(o) for o in out)
    release_generator()
    return startup, samples / seconds, samples / (seconds + startup)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default=str(BACKBONE_DIR))
    args = parser.parse_args()
    prompts = [format_prompt(p.question) for p in make_split("pool", args.prompts, seed=5)]
    spec = SampleSpec(args.n, 0.8, 1.0, args.max_tokens)
    # vllm as configured (float32, the pipeline's default), at vLLM's own 256 sequences a step, and in bfloat16
    # (faster where the CPU has AMX / AVX512-BF16, but its samples are not float32's)
    backends = {"hf": BackendConfig(backend="hf"), "vllm": BackendConfig(),
                "vllm, 256 seqs": BackendConfig(max_num_seqs=256), "vllm, bf16": BackendConfig(dtype="bfloat16")}
    results = {name: measure(b, args.model, prompts, spec) for name, b in backends.items()}
    lines = [f"{len(prompts)} prompts x {args.n} samples, up to {args.max_tokens} tokens"]
    for b, (startup, rate, with_startup) in results.items():
        lines.append(f"{b:14s} start-up {startup:6.1f}s  {rate:7.1f} samples/s  ({with_startup:.1f} with start-up)")
    vllm, default, hf = results["vllm"], results["vllm, 256 seqs"], results["hf"]
    lines.append(f"vllm / hf throughput: {vllm[1] / hf[1]:.2f}x ({vllm[2] / hf[2]:.2f}x counting start-up; target 5x)")
    lines.append(f"vllm / vllm at vLLM's default 256 sequences a step: {vllm[1] / default[1]:.2f}x")
    lines.append(f"vllm in bfloat16 / hf: {results['vllm, bf16'][1] / hf[1]:.2f}x (other samples than float32's)")
    record("generation-throughput", "Sampling: vLLM vs transformers generate", lines)


if __name__ == "__main__":
    main()
