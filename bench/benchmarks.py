"""docs/BENCHMARKS.md, written by the bench scripts: each replaces its own section with what it just printed,
stamped with the machine, the commit and the date, so every figure there says where and when it was measured.

    from benchmarks import record          # in a bench script (bench/ is on sys.path when it runs)
    record("weight-sync", "Live weight sync vs engine restart", lines)   # prints them too
"""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

PAGE = Path(__file__).resolve().parent.parent / "docs" / "BENCHMARKS.md"
HEADER = """# Benchmarks

Each section is written by the bench script it names (`bench/`), from one run that measures both sides of its
ratio side by side on the machine stated. Rerun a script to replace its section.
"""


def machine() -> str:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor() or "unknown CPU")
    mem = next((int(line.split()[1]) / 2**20 for line in Path("/proc/meminfo").read_text().splitlines()
                if line.startswith("MemTotal")), 0.0)
    try:
        gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10).stdout.strip().replace("\n", ", ")
    except (OSError, subprocess.SubprocessError):
        gpu = ""
    load = os.getloadavg()[0]
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GB RAM, {gpu or 'no GPU'}; load average {load:.1f} at the end"


def _commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                         cwd=PAGE.parent).stdout.strip()
    return out or "unknown"


def record(section: str, title: str, lines: list[str]) -> None:
    """Prints `lines` and replaces (or appends) the section `section` of docs/BENCHMARKS.md, atomically, with the
    command that produced them."""
    print("\n".join(lines))
    command = " ".join(["python", *sys.argv])
    stamp = f"{time.strftime('%Y-%m-%d')}, commit {_commit()}, {machine()}"
    body = "\n".join([f"<!-- bench:{section} -->", f"## {title}", "", f"`{command}` ({stamp})", "", "```",
                      *lines, "```", f"<!-- /bench:{section} -->"])
    page = PAGE.read_text() if PAGE.exists() else HEADER
    block = re.compile(rf"<!-- bench:{re.escape(section)} -->.*?<!-- /bench:{re.escape(section)} -->", re.S)
    page = block.sub(lambda _: body, page) if block.search(page) else page.rstrip("\n") + "\n\n" + body
    tmp = PAGE.with_suffix(".md.tmp")
    tmp.write_text(page.rstrip("\n") + "\n")
    tmp.replace(PAGE)
