"""`--output -`: the records go to standard output, for `| jq`, `| head`, another program.

Each record is written and flushed as it is made (one `write` of one whole line),
so a reader sees it at once and a stopped run never leaves half a line. The
writes run on a thread: a reader that is slow to read makes the run wait for it
(backpressure), never the event loop. A reader that goes away (`| head -1`) is not
an error: the sink says so with `OutputClosed`, and the run ends quietly.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import aiofiles

from .errors import OutputError
from .page import record_keys
from .sinks import Sink

__all__ = ["OutputClosed", "StdoutSink"]


class OutputClosed(OutputError):
    """The reader of standard output went away: the run ends, quietly."""


class StdoutSink(Sink):
    """A `Sink` on standard output: one record a line, flushed record by record."""

    BATCH = 1

    def __init__(self, fmt: str, keys: tuple[str, ...] = record_keys(), fd: int | None = None) -> None:
        super().__init__(Path("<stdout>"), fmt, keys)
        self._fd = _stdout_fd() if fd is None else fd
        self.closed = False  # the reader went away

    async def open(self) -> None:
        # the fd stays open (it is not ours); unbuffered, so each record reaches the reader whole
        self._file = await aiofiles.open(self._fd, "wb", buffering=0, closefd=False)
        if self._header:  # CSV: its header row first
            self._buffer.append(self._header)
            await self.flush()

    async def flush(self) -> None:
        await super().flush()
        if self.closed:
            raise OutputClosed("standard output was closed")

    async def _append(self, data: bytes) -> None:
        async with self._lock:
            if self.closed or self._failed is not None:
                return
            try:
                view = memoryview(data)
                while view:
                    n = await self._file.write(view)
                    view = view[n:]
            except BrokenPipeError:
                self.closed = True
                # what Python writes to stdout at exit now goes nowhere, not to a broken pipe
                devnull = os.open(os.devnull, os.O_WRONLY)
                os.dup2(devnull, self._fd)
                os.close(devnull)
            except OSError as e:
                self._failed = f"cannot write to standard output: {e.strerror or e}"


def _stdout_fd() -> int:
    try:
        return sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # a notebook's stdout is not a file
        return 1
