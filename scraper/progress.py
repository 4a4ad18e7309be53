"""Live progress and the summary, on stderr.

On a terminal: one bar line redrawn in place. Elsewhere (a log file, CI): a
plain line every few seconds, no escape codes. `-q` shows neither; `-v` adds a
line per page.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from .page import Page
from .stats import Stats

__all__ = ["Progress", "summary"]


class Progress:
    def __init__(self, *, verbose: bool = False, stream: TextIO | None = None, interval: float | None = None) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.tty = self.stream.isatty()
        env = os.environ.get("SCRAPER_PROGRESS_INTERVAL")
        self.interval = interval or (float(env) if env else (0.2 if self.tty else 5.0))
        self._task: asyncio.Task[None] | None = None
        self._counts: Callable[[], tuple[int, ...]] | None = None
        self._started = time.monotonic()

    def start(self, counts: Callable[[], tuple[int, ...]]) -> None:
        """`counts()` gives (done, known, errors[, done this run]): the rate is this run's."""
        self._counts = counts
        self._started = time.monotonic()
        self._task = asyncio.get_running_loop().create_task(self._tick())

    def page(self, page: Page) -> None:
        if not self.verbose:
            return
        if page.error is None:
            line = f"{page.status} {page.url} ({page.bytes} bytes, {page.elapsed_ms} ms)"
        else:
            status = page.status if page.status is not None else "---"
            line = f"{status} {page.url} {page.error.kind}: {page.error.message}"
        self._write_line(line)

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        if self.tty:
            self.stream.write("\r\x1b[2K")
            self.stream.flush()

    def _write_line(self, line: str) -> None:
        if self.tty:
            self.stream.write("\r\x1b[2K" + line + "\n")
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def line(self) -> str:
        assert self._counts is not None
        done, known, errors, *this_run = self._counts()
        elapsed = max(time.monotonic() - self._started, 1e-9)
        rate = (this_run[0] if this_run else done) / elapsed
        if self.tty:
            width = 24
            filled = int(width * done / known) if known else 0
            bar = "#" * filled + "-" * (width - filled)
            return f"[{bar}] {done}/{known} pages  {rate:.1f} pages/s  {errors} errors"
        return f"progress: {done}/{known} pages, {rate:.1f} pages/s, {errors} errors, {elapsed:.0f} s"

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            if self.tty:
                self.stream.write("\r\x1b[2K" + self.line())
                self.stream.flush()
            else:
                self._write_line(self.line())


def summary(stats: Stats) -> str:
    """The end-of-run summary: a few plain lines."""
    statuses = ", ".join(f"{k}: {v}" for k, v in stats.by_status.items()) or "none"
    errors = ", ".join(f"{k}: {v}" for k, v in stats.by_error.items()) or "none"
    head = "interrupted" if stats.interrupted else "done"
    return (
        f"{head}: {stats.pages} pages ({stats.ok} ok, {stats.failed} failed), {stats.bytes} bytes, "
        f"{stats.run_pages} this run in {stats.elapsed_s:.1f} s ({stats.pages_per_s:.1f} pages/s)\n"
        f"  status codes: {statuses}\n"
        f"  errors: {errors}"
        + (f"\n  since the earlier crawl: {stats.changed} changed, {stats.unchanged} unchanged, {stats.new} new"
           if stats.changed is not None else "")
    )
