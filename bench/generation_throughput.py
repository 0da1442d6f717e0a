"""Sampling throughput, vLLM vs transformers `generate`, on the same prompts in one run.

    .venv/bin/python bench/generation_throughput.py [--prompts 128] [--n 16] [--model DIR] [--only preload]

Prints samples/s for each backend (engine start-up excluded and reported separately) and the ratios, with vLLM
as the pipeline configures it on the CPU build, at vLLM's own 256 sequences a step, and in bfloat16. Then vLLM with
and without tcmalloc and Intel OpenMP preloaded into its engine (engines/generation/vllm_env.py), each side in a
fresh process, twice, alternating: the ratio, and whether the samples are the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

from benchmarks import record

from east_tasks.config import BackendConfig
from east_tasks.data.arith import make_split
from east_tasks.data.prompts import format_prompt
from east_tasks.engines.generation import SampleSpec, get_generator, release_generator
from east_tasks.paths import BACKBONE_DIR


def _timed(backend: BackendConfig, model: str, prompts: list[str], spec: SampleSpec) -> tuple[float, float, list]:
    """(engine start-up s, sampling s after a warm-up, the samples); the engine is released afterwards."""
    t0 = time.time()
    gen = get_generator(model, backend)
    startup = time.time() - t0
    gen.generate(prompts[:4], list(range(4)), spec)  # warm-up
    t0 = time.time()
    out = gen.generate(prompts, list(range(len(prompts))), spec)
    seconds = time.time() - t0
    release_generator()
    return startup, seconds, out


def measure(backend: BackendConfig, model: str, prompts: list[str], spec: SampleSpec) -> tuple[float, float, float]:
    """(start-up s, samples/s once started, samples/s counting the start-up)."""
    startup, seconds, out = _timed(backend, model, prompts, spec)
    samples = sum(len(o) for o in out)
    return startup, samples / seconds, samples / (seconds + startup)


def preload_side(model: str, prompts: list[str], spec: SampleSpec) -> dict:
    """One side of the preload pair, in this (fresh) process: start-up, samples/s, and a digest of the samples."""
    startup, seconds, out = _timed(BackendConfig(), model, prompts, spec)
    digest = hashlib.sha256(json.dumps([[c.text for c in o] for o in out]).encode()).hexdigest()
    return {"startup": startup, "rate": sum(len(o) for o in out) / seconds, "digest": digest}


def preload_pair(args: argparse.Namespace) -> list[str]:
    """vLLM with the preloads (the default where both libraries are found) and without (EAST_NO_PRELOAD=1), each
    side in a fresh process, off / on / off / on."""
    from east_tasks.engines.generation.vllm_env import preload_libraries

    libraries, found = preload_libraries()
    if not libraries:
        return [f"preload: {found}; nothing to compare"]
    runs: dict[str, list[dict]] = {"off": [], "on": []}
    for side in ("off", "on", "off", "on"):
        env = {**os.environ, "EAST_NO_PRELOAD": "1" if side == "off" else "0"}
        done = subprocess.run([sys.executable, __file__, "--side", "preload", "--prompts", str(args.prompts), "--n",
                               str(args.n), "--max-tokens", str(args.max_tokens), "--model", args.model], env=env,
                              capture_output=True, text=True, check=True)
        runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    lines = [f"preload into vLLM's engine: {found}"]
    for side, results in runs.items():
        rates = ", ".join(f"{r['rate']:.1f}" for r in results)
        lines.append(f"vllm, preload {side:3s}  start-up {sum(r['startup'] for r in results) / 2:5.1f}s  {rates} "
                     "samples/s")
    mean = {side: sum(r["rate"] for r in results) / len(results) for side, results in runs.items()}
    digests = {r["digest"] for results in runs.values() for r in results}
    lines.append(f"preload on / off: {mean['on'] / mean['off']:.2f}x; samples identical in all four runs: "
                 f"{'yes' if len(digests) == 1 else 'NO'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--model", default=str(BACKBONE_DIR))
    parser.add_argument("--only", choices=["preload"], help="only the preload pair")
    parser.add_argument("--side", choices=["preload"], help=argparse.SUPPRESS)  # one side of the pair (a subprocess)
    args = parser.parse_args()
    prompts = [format_prompt(p.question) for p in make_split("pool", args.prompts, seed=5)]
    spec = SampleSpec(args.n, 0.8, 1.0, args.max_tokens)
    if args.side:
        print(json.dumps(preload_side(args.model, prompts, spec)))
        return
    if args.only != "preload":
        backends_side_by_side(args, prompts, spec)
    record("generation-preload", "Sampling: tcmalloc and Intel OpenMP preloaded into vLLM's engine, or not",
           [f"{len(prompts)} prompts x {args.n} samples, up to {args.max_tokens} tokens", *preload_pair(args)])


def backends_side_by_side(args: argparse.Namespace, prompts: list[str], spec: SampleSpec) -> None:
    # vllm as configured (float32, the pipeline's default), at vLLM's own 256 sequences a step, and in bfloat16
    # (faster where the CPU has AMX / AVX512-BF16, but its samples are not float32's)
    backends = {"hf": BackendConfig(engine="hf"), "vllm": BackendConfig(),
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
