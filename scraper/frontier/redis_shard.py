"""The shard writer: a worker's records, from its outbox in Redis to its shard file, exactly once.

How and why, step by step, is in `scraper.frontier.redis`'s docstring ("Exactly
once, under SIGKILL"). In short: a batch moves from `outbox:W` to `flushing:W`
(`take_batch`), is appended to the shard and fsynced, and then `size:W` becomes
the shard's new size as `flushing:W` is emptied, in one script. Whoever next
holds the shard (`open`) cuts it back to `size:W` and appends `flushing:W`
again. A worker holds an exclusive `flock` on its shard from `open` until it
closes; `adopt` takes over the lines of dead workers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from pathlib import Path

from ..config import OutputConfig
from ..errors import OutputError
from ..sinks import sink_path
from .redis_link import Periodic, RedisLink

__all__ = ["FLUSH_BATCH", "FLUSH_EVERY", "ShardWriter"]

log = logging.getLogger("scraper.frontier.redis")

#: records moved from the outbox to the shard in one append
FLUSH_BATCH = 500
#: seconds between two flushes of the outbox to the shard
FLUSH_EVERY = 0.2


class ShardWriter:
    """Writes worker `link.worker`'s shard, `DIR/pages-<worker>.<format>`, from its outbox in Redis."""

    def __init__(self, link: RedisLink, output: OutputConfig) -> None:
        self._link = link
        self._output = output
        self.path: Path = sink_path(output.dir, output.format, link.worker)
        self._lock = asyncio.Lock()  # one flush at a time; never cut short by close
        self._fd: int | None = None
        self._committed = 0  # bytes of the shard that Redis knows are whole records
        self._dirty = True  # lines may wait in Redis (a previous life under this name)
        self._appending: asyncio.Future[None] | None = None  # an append under way in a thread
        self._size_key = link.prefix + "size:" + link.worker
        self._flusher = Periodic(f"worker {link.worker}: flushing its shard", FLUSH_EVERY, self._flush_if_dirty,
                                 keep_going=True)

    def start(self) -> None:
        """Flush every `FLUSH_EVERY` seconds from now on, while there is something to flush."""
        self._flusher.start()

    def mark_dirty(self) -> None:
        """A line went to the outbox: the next round flushes it."""
        self._dirty = True

    async def _flush_if_dirty(self) -> None:
        if self._dirty:
            await self.flush()

    # --- the shard file ------------------------------------------------------------------

    async def open(self, header: str | None = None) -> int:
        """The shard, open for appending and locked; cut back to what Redis knows is whole.

        `header` is written first when the shard is empty and Redis knows of no records in it.
        """
        async with self._lock:
            fd = await self._open()
            if header and self._committed == 0 and os.fstat(fd).st_size == 0:
                try:
                    await asyncio.to_thread(_append, fd, header.encode("utf-8"))
                except OSError as e:
                    raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
                self._committed = os.fstat(fd).st_size
                await self._link.command("set", self._link.prefix + "size:" + self._link.worker, self._committed)
            return fd

    async def _open(self) -> int:
        if self._fd is not None:
            return self._fd
        link, path = self._link, self.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        waited_from = time.monotonic()
        while not _try_lock(fd):  # an adopter may hold it for a moment
            if time.monotonic() - waited_from > max(10.0, 2 * link.lease):
                os.close(fd)
                raise OutputError(
                    f"{path} is locked by another process: is another worker named {link.worker} running?"
                )
            await asyncio.sleep(0.05)
        size = os.fstat(fd).st_size
        committed = await link.command("get", link.prefix + "size:" + link.worker)
        if committed is None or size < int(committed):
            if committed is not None:
                log.warning("worker %s: %s is shorter than the records it had written", link.worker, path)
            await link.command("set", link.prefix + "size:" + link.worker, size)
        elif size > int(committed):
            os.ftruncate(fd, int(committed))  # a flush that did not finish: its lines are still in Redis
            size = int(committed)
        self._committed = size
        self._fd = fd
        return fd

    def close_file(self) -> None:
        """Close the shard, and so give up its lock."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --- outbox -> shard ---------------------------------------------------------------

    async def take_batch(self, n: int = FLUSH_BATCH) -> list[bytes]:
        """The batch on its way to the shard (`flushing:W`), moved from the outbox when none was."""
        return await self._link.call("flush_begin", self._link.worker, n)

    async def flush(self) -> None:
        """Move the outbox to the shard, a batch at a time."""
        async with self._lock:
            self._dirty = False
            await self._appended()
            while True:
                lines = await self.take_batch()
                if not lines:
                    return
                if self._fd is None:
                    await self._open()
                    # locked only now: a worker that took this one for dead may have adopted that batch
                    lines = await self.take_batch()
                    if not lines:
                        return
                fd = await self._open()
                try:
                    size = os.fstat(fd).st_size
                    if size > self._committed:
                        # a confirmation cut short leaves our count behind Redis's: ask before cutting
                        self._committed = int(await self._link.command("get", self._size_key) or 0)
                    if size > self._committed:  # an append of ours that was not confirmed: cut it, write again
                        os.ftruncate(fd, self._committed)
                    elif size < self._committed:
                        self._committed = size  # cut by someone else (--overwrite): start from there
                    # a thread cannot be stopped: a cancelled flush leaves it to finish, and stop() waits for it
                    self._appending = asyncio.ensure_future(asyncio.to_thread(_append, fd, b"".join(lines)))
                    await asyncio.shield(self._appending)
                    size = os.fstat(fd).st_size
                except OSError as e:
                    raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
                await self._link.call("flush_end", self._link.worker, size)
                self._committed = size

    async def stop(self) -> None:
        """Stop flushing in the background (after a flush under way: its append must not outlive it).

        A flush cut short while its append runs in a thread leaves the lines unconfirmed (the next
        holder of the shard cuts them and writes them again); the append itself is waited for, so
        it can never land after the shard is closed, and so after that repair.
        """
        await self._flusher.stop(timeout=max(1.0, 2 * self._link.lease))
        await self._appended()

    async def _appended(self) -> None:
        """Wait for the append of a flush that was cancelled (its thread goes on): a flush that did not
        wait would find the shard not grown yet, and append the same batch a second time."""
        if self._appending is not None:
            with contextlib.suppress(OSError):  # the flush reported it, or the next flush repairs it
                await asyncio.shield(self._appending)
            self._appending = None

    # --- dead workers' lines ---------------------------------------------------------------

    async def adopt(self, wait: bool) -> None:
        """Take over the records of dead workers that never reached their shards.

        With `wait` (the crawl is over), wait for workers that are still alive in
        Redis to flush theirs, or to be found dead (at most `2 * lease + 5` seconds).
        """
        link = self._link
        deadline = time.monotonic() + (2 * link.lease + 5 if wait else 0)
        left: dict[str, int] = {}
        while True:
            waiting = False
            left.clear()
            for raw in await link.command("smembers", link.prefix + "workers"):
                other = raw.decode()
                if other == link.worker:
                    continue
                outbox, flushing, alive = await self._status(other)
                if not outbox and not flushing:
                    if not alive:
                        await link.command("srem", link.prefix + "workers", other)
                    continue
                if alive:
                    waiting = True
                    continue
                moved, took_flushing, locked = await self._adopt_one(other, flushing)
                if moved > 0:
                    await self.flush()
                if moved < 0 or locked:
                    waiting = True
                elif flushing and not took_flushing:
                    left[other] = flushing
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        for other, n in left.items():
            log.warning(
                "worker %s died while writing %d records to its shard, which this worker cannot see: they stay "
                "in Redis until a worker named %s is started again with --resume where its shard is",
                other, n, other,
            )

    async def _status(self, other: str) -> list[int]:
        """(records in its outbox, records it was writing, alive) of worker `other`."""
        prefix = self._link.prefix

        def build(pipe: object) -> None:
            pipe.llen(prefix + "outbox:" + other)  # type: ignore[attr-defined]
            pipe.llen(prefix + "flushing:" + other)  # type: ignore[attr-defined]
            pipe.exists(prefix + "alive:" + other)  # type: ignore[attr-defined]

        return await self._link.pipeline(build)

    async def _adopt_one(self, other: str, flushing: int) -> tuple[int, bool, bool]:
        """(lines adopted, or -1 when `other` is alive after all; its unfinished batch with them; its shard locked)."""
        link = self._link
        fd: int | None = None
        locked = False
        take_flushing = False
        committed = 0
        if flushing:
            path = sink_path(self._output.dir, self._output.format, other)
            try:
                fd = os.open(path, os.O_WRONLY)
            except OSError:
                fd = None  # not on this machine
            if fd is not None and not _try_lock(fd):
                os.close(fd)
                fd, locked = None, True  # its owner still runs, or another worker is adopting it
        try:
            if fd is not None:
                raw = await link.command("get", link.prefix + "size:" + other)
                if raw is not None and os.fstat(fd).st_size >= int(raw):
                    take_flushing, committed = True, int(raw)
            moved = int(await link.call("adopt", link.worker, other, 1 if take_flushing else 0))
            if take_flushing and moved >= 0 and fd is not None:
                os.ftruncate(fd, committed)  # what its unfinished flush left: those lines are ours now
            return moved, take_flushing and moved >= 0, locked
        finally:
            if fd is not None:
                os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)
