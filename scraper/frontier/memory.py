"""The in-process frontier: one machine, one crawl."""

from __future__ import annotations

import asyncio
from collections import deque

from ..urls import fingerprint
from .base import Frontier, Item

__all__ = ["MemoryFrontier"]


class MemoryFrontier(Frontier):
    """Seen set of 64-bit fingerprints, pending links by depth (shallowest first).

    Pending links are unbounded on purpose: they are the one place fetchers put
    discovered links, so a fetcher never waits on the bounded queue that feeds
    it, and a crawl cannot deadlock however small that queue is. Taking the
    shallowest depth first keeps the crawl breadth-first, so every page is
    reached at its least depth and the pending set stays as small as it can.
    """

    def __init__(self) -> None:
        self._seen: set[int] = set()
        self._pending: dict[int, deque[Item]] = {}
        self._pending_count = 0
        self._outstanding = 0
        self._seeds_closed = False
        self._stopped = False
        self._changed = asyncio.Event()
        self._claimed = 0

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def pending(self) -> int:
        return self._pending_count

    @property
    def seen_count(self) -> int:
        return len(self._seen)

    def _accept(self, url: str) -> bool:
        fp = fingerprint(url)
        if fp in self._seen:
            return False
        self._seen.add(fp)
        return True

    async def mark_seen(self, url: str) -> None:
        self._seen.add(fingerprint(url))

    async def is_seen(self, url: str) -> bool:
        return fingerprint(url) in self._seen

    async def claim(self, limit: int) -> bool:
        if self._claimed >= limit:
            return False
        self._claimed += 1
        return True

    def count_claimed(self, n: int) -> None:
        self._claimed += n

    @property
    def claimed(self) -> int:
        return self._claimed

    async def add_seed(self, item: Item) -> bool:
        if not self._accept(item.url):
            return False
        self._outstanding += 1
        return True

    async def add_links(self, items: list[Item]) -> int:
        added = 0
        for item in items:
            if self._accept(item.url):
                queue = self._pending.get(item.depth)
                if queue is None:
                    queue = self._pending[item.depth] = deque()
                queue.append(item)
                added += 1
        if added:
            self._pending_count += added
            self._outstanding += added
            self._changed.set()
        return added

    async def next(self) -> Item | None:
        while True:
            if self._stopped:
                return None
            if self._pending_count:
                depth = min(self._pending)
                queue = self._pending[depth]
                item = queue.popleft()
                if not queue:
                    del self._pending[depth]
                self._pending_count -= 1
                return item
            if self._seeds_closed and self._outstanding == 0:
                return None
            self._changed.clear()
            await self._changed.wait()

    async def done(self, item: Item) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._changed.set()

    def close_seeds(self) -> None:
        self._seeds_closed = True
        self._changed.set()

    def stop(self) -> None:
        self._stopped = True
        self._changed.set()
