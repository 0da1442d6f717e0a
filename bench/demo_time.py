"""Where `make demo`'s time goes, from a fresh `git clone`: setup, the CLI's start, Prefect's temporary server, the
engine's start, and per round the pool, selection, training, evaluation and the record, read from the demo's own log.

    .venv/bin/python bench/demo_time.py [--repo .] [--workdir /tmp/east-demo-time] [--uv-cache warm|cold]

The clone is of `--repo`'s HEAD (commit first). Setup is `make setup` in the clone (uv from its cache where warm:
say which); the demo is `make demo`, timed from the command's start to its exit. Last line:
`demo_s=D setup_s=S flow_s=F` (the whole, the setup, and the flow from its first line to its last record).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import time
from datetime import datetime, timedelta
from pathlib import Path

from benchmarks import record

STAMP = re.compile(r"^(\d\d:\d\d:\d\d\.\d+) \| \w+ +\| (.*)$")
COMPUTED = re.compile(r"- (.+?) \[[0-9a-f]+\]: computed in ([\d.]+)s(?: \((.*)\))?$")
ENGINE_START = re.compile(r"engine=started in ([\d.]+)s")
STEP_PHASE = [(r"^data$", "data"), (r"^(generate|top up) pool round (\d+)$", "pool"), (r"^select\+weight", "selection"),
              (r"^train", "training"), (r"^(generate|evaluate) (test|validation)", "evaluation"),
              (r"^record round (\d+)$", "record")]


def timed(cmd: list[str], cwd: Path) -> tuple[float, str]:
    t0 = time.monotonic()
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return time.monotonic() - t0, done.stdout + done.stderr


def phases(log: str, demo_s: float) -> tuple[list[tuple[str, str, float]], float]:
    """(round, phase, seconds) from the demo's log, and the flow's seconds (first line to last record). Rounds are 0
    (the base model's evaluation) to R; the engine's start is taken out of the generation that started it; what no
    step logs (the CLI's start, Prefect's work between steps) is found by difference."""
    stamps, steps, current = [], [], "0"
    for line in log.splitlines():
        if not (m := STAMP.match(line)):
            continue
        at, text = datetime.strptime(m[1], "%H:%M:%S.%f"), m[2]
        stamps.append((at, text))
        if round_start := re.search(r"Beginning subflow run '.*-round-(\d+)'", text):
            current = round_start[1]
        if not (c := COMPUTED.search(text)):
            continue
        step, seconds = c[1], float(c[2])
        if started := ENGINE_START.search(c[3] or ""):
            steps.append(("-", "engine start", float(started[1])))
            seconds -= float(started[1])
        steps.append((current, next((name for pattern, name in STEP_PHASE if re.search(pattern, step)), "other"),
                      seconds))

    def first(marker: str) -> datetime:
        return next(at for at, text in stamps if marker in text)

    def seconds(a: datetime, b: datetime) -> float:
        return (b - a + timedelta(days=1 if b < a else 0)).total_seconds()  # a run past midnight

    server, flow = first("Starting temporary server"), first("Beginning flow run")
    last_record = max(at for at, text in stamps if "record round" in text)
    server_s, flow_s = seconds(server, flow), seconds(flow, last_record)
    return [("-", "CLI start (by difference)", demo_s - seconds(server, stamps[-1][0])),
            ("-", "Prefect server start", server_s),
            *steps,
            ("-", "Prefect between steps (by difference)", flow_s - sum(s for _, _, s in steps)),
            ("-", "after the last round: tables, plots, engine and server stop", seconds(last_record, stamps[-1][0]))
            ], flow_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/east-demo-time"))
    parser.add_argument("--uv-cache", choices=["warm", "cold"], default="warm",
                        help="cold: setup with an empty uv cache (downloads everything)")
    args = parser.parse_args()
    shutil.rmtree(args.workdir, ignore_errors=True)
    clone = args.workdir / "east"
    subprocess.run(["git", "clone", "-q", str(args.repo), str(clone)], check=True)
    env_cache = ["env", f"UV_CACHE_DIR={args.workdir / 'uv-cache'}"] if args.uv_cache == "cold" else []
    setup_s, _ = timed([*env_cache, "make", "setup"], clone)
    demo_s, log = timed(["make", "demo"], clone)
    (args.workdir / "demo.log").write_text(log)
    steps, flow_s = phases(log, demo_s)
    rows: dict[tuple[str, str], float] = {}
    by_phase: dict[str, float] = {}
    for r, phase, seconds in steps:
        rows[r, phase] = rows.get((r, phase), 0.0) + seconds
        by_phase[phase] = by_phase.get(phase, 0.0) + seconds
    lines = [f"fresh clone of {args.repo} at HEAD; setup with uv's cache {args.uv_cache}; log: {args.workdir}/demo.log",
             f"{'what':62s} | {'round':>5s} | seconds",
             f"{'make setup':62s} | {'-':>5s} | {setup_s:7.1f}",
             *(f"{phase:62s} | {r:>5s} | {s:7.1f}" for (r, phase), s in rows.items()),
             f"{'make demo, whole':62s} | {'-':>5s} | {demo_s:7.1f}",
             "by phase: " + ", ".join(f"{p} {s:.1f}" for p, s in by_phase.items()),
             f"demo_s={setup_s + demo_s:.0f} setup_s={setup_s:.0f} flow_s={flow_s:.0f}"]
    record("demo-time", "Where make demo's time goes, from a fresh clone", lines)


if __name__ == "__main__":
    main()
