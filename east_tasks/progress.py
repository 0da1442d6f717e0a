"""A long loop's progress: tqdm's bar on a terminal; anywhere else (a log file, CI, a pipe) one plain line at every
tenth of the way, because a bar redrawn with carriage returns becomes hundreds of fragments
of one line there.

Generation (its chunks), training (the Trainer's steps), reference scoring and the bootstrap report through here.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")
log = logging.getLogger(__name__)
# The lines are INFO; the root logger stays at WARNING (Prefect's default), and a record's own logger decides.
log.setLevel(logging.INFO)


def on_terminal() -> bool:
    """Whether progress bars can redraw in place: stderr (where tqdm and the logs write) is a terminal."""
    return sys.stderr.isatty()


def _duration(seconds: float) -> str:
    """45s, 2m19s, 1h02m."""
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    return f"{s // 60}m{s % 60:02d}s" if s < 3600 else f"{s // 3600}h{s % 3600 // 60:02d}m"


def _plural(unit: str) -> str:
    return unit + ("es" if unit.endswith(("ch", "sh", "s", "x")) else "s")


class Progress:
    """`update(n, **latest)` as the work goes; `latest` (a loss) is shown beside the count. Off a terminal a line
    comes at each tenth of the way crossed (a loop of one item: its one line when it is done)."""

    def __init__(self, desc: str, total: int, unit: str, enabled: bool = True):
        self.desc, self.total, self.unit, self.enabled = desc, total, unit, enabled
        self.done, self.latest, self._tenths = 0, {}, 0
        self.started = time.monotonic()
        self.bar = tqdm(total=total, desc=desc, unit=unit) if enabled and on_terminal() else None

    def update(self, n: int = 1, **latest: object) -> None:
        self.done += n
        self.latest = latest or self.latest
        if self.bar is not None:
            if latest:
                self.bar.set_postfix(latest, refresh=False)
            self.bar.update(n)
            return
        tenths = self.done * 10 // max(self.total, 1)
        if self.enabled and tenths > self._tenths:
            self._tenths = tenths
            log.info(self.line())

    def line(self) -> str:
        """e.g. `generate pool round 1: 40% (2/5 chunks) in 2m19s, about 3m28s left`."""
        elapsed = time.monotonic() - self.started
        latest = "".join(f", {k} {v}" for k, v in self.latest.items())
        left = f", about {_duration(elapsed * (self.total - self.done) / self.done)} left" \
            if 0 < self.done < self.total else ""
        return (f"{self.desc}: {self.done * 100 // max(self.total, 1)}% ({self.done}/{self.total} "
                f"{self.unit if self.total == 1 else _plural(self.unit)}{latest}) in {_duration(elapsed)}{left}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress(items: Iterable[T], desc: str, unit: str, total: int | None = None) -> Iterator[T]:
    """`items`, reporting progress as they are consumed (`total`: len(items) unless given)."""
    meter = Progress(desc, len(items) if total is None else total, unit)  # type: ignore[arg-type]
    try:
        for item in items:
            yield item
            meter.update()
    finally:
        meter.close()
