"""Soak: R rounds of `tiny-test` in one process, resident memory after each; then whether the process left
leaked shared memory behind at exit (Python's resource_tracker warns on stderr).

    .venv/bin/python bench/soak.py [--rounds 6] [--backend vllm]

Target: after round 2, resident memory grows by less than 10 % in total, and no leak warning.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks import record


def child(rounds: int, backend: str, data_dir: Path) -> None:
    import psutil

    from east_tasks.config import load_config
    from flows.self_train import self_train

    proc = psutil.Process()
    for r in range(1, rounds + 1):  # each call continues the experiment by one round (earlier ones are cached)
        self_train(load_config("tiny-test", experiment="soak", rounds=r, data_dir=data_dir,
                               backend={"engine": backend}), keep_engine=r < rounds)
        print(f"SOAK round {r} rss_mb {proc.memory_info().rss / 2**20:.0f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--backend", default="vllm")
    parser.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.rounds, args.backend, args.child)
        return
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PREFECT_HOME": str(Path(tmp) / "prefect-home")}
        out = subprocess.run([sys.executable, __file__, "--rounds", str(args.rounds), "--backend", args.backend,
                              "--child", str(Path(tmp) / "data")], env=env, capture_output=True, text=True)
    rss = [float(line.split()[-1]) for line in out.stdout.splitlines() if line.startswith("SOAK")]
    if out.returncode or len(rss) < 3:
        sys.exit(f"soak failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    growth = rss[-1] / rss[1] - 1
    leaks = [line for line in out.stderr.splitlines() if "leaked" in line]
    lines = [*(f"round {r}: {mb:.0f} MB resident" for r, mb in enumerate(rss, 1)),
             f"growth after round 2: {100 * growth:+.1f} % (target < 10 %); leak warnings at exit: {len(leaks)}",
             *("  " + line.strip() for line in leaks)]
    record("soak", f"Soak: {args.rounds} rounds of tiny-test in one process", lines)


if __name__ == "__main__":
    main()
