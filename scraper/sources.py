"""Where seeds come from: a URLS_FILE, standard input, or an iterable of URLs.

Every source is streamed as numbered lines (1-based, for the `line N` of
`invalid_url` records); a 10-million-line file is read a megabyte at a time
and never sits in memory whole.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import sys
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import aiofiles

from .errors import UsageError

__all__ = ["numbered", "open_source"]



def open_source(source: Any) -> AsyncIterator[tuple[int, bytes | str]]:
    if isinstance(source, (str, os.PathLike)):
        if str(source) == "-":
            return _numbered_lines(_stdin_chunks())
        path = Path(source)
        if not path.is_file():
            why = "is not a file" if path.exists() else "not found"
            raise UsageError(f"URLS_FILE {source} {why}")
        try:
            with open(path, "rb"):
                pass
        except OSError as e:
            raise UsageError(f"cannot read URLS_FILE {source}: {e.strerror}") from None
        return _numbered_lines(_file_chunks(path))
    return numbered(source)


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    async with aiofiles.open(path, "rb") as f:
        while chunk := await f.read(1 << 20):
            yield chunk


async def _stdin_chunks() -> AsyncIterator[bytes]:
    """Standard input in chunks, read on a daemon thread: a stdin that never closes
    must not keep the process alive after an interrupt."""
    loop = asyncio.get_running_loop()
    chunks: asyncio.Queue[bytes] = asyncio.Queue(maxsize=16)
    fd = sys.stdin.fileno()

    def reader() -> None:
        while True:
            try:
                # os.read, not stdin.buffer.read1: a daemon thread left holding the buffer's lock
                # aborts the interpreter at exit ("could not acquire lock for <stdin>")
                chunk = os.read(fd, 1 << 16)
            except (OSError, ValueError):
                chunk = b""
            try:
                asyncio.run_coroutine_threadsafe(chunks.put(chunk), loop).result()
            except (RuntimeError, concurrent.futures.CancelledError):
                return  # the loop is gone
            if not chunk:
                return

    threading.Thread(target=reader, name="scraper.stdin", daemon=True).start()
    while chunk := await chunks.get():
        yield chunk


_BOM = b"\xef\xbb\xbf"


async def _numbered_lines(chunks: AsyncIterator[bytes]) -> AsyncIterator[tuple[int, bytes]]:
    """Lines (LF or CRLF) with their 1-based numbers, from a stream of chunks.

    A UTF-8 byte-order mark at the start (a file saved by Notepad) is dropped, as
    Python's `utf-8-sig` does: it is not part of the first URL.
    """
    lineno = 0
    rest = b""
    first = True
    async for chunk in chunks:
        if first:
            rest += chunk
            if len(rest) < len(_BOM) and _BOM.startswith(rest):
                continue  # too short yet to tell
            first = False
            chunk, rest = rest.removeprefix(_BOM), b""
        lines = (rest + chunk).split(b"\n")
        rest = lines.pop()
        for line in lines:
            lineno += 1
            yield lineno, line
    if rest:
        yield lineno + 1, rest


async def numbered(urls: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[tuple[int, str]]:
    if isinstance(urls, str):
        raise TypeError("crawl() takes an iterable of URLs, not one string: wrap it in a list")
    if isinstance(urls, AsyncIterable):
        n = 0
        async for url in urls:
            n += 1
            yield n, url
    else:
        for n, url in enumerate(urls, 1):
            yield n, url
