"""The in-process frontier: one machine, one crawl."""

from __future__ import annotations

import asyncio
from array import array
from bisect import bisect_left
from collections import deque
from pathlib import Path

from ..sinks import Sink
from ..urls import fingerprint
from .base import Frontier, Item

__all__ = ["MemoryFrontier"]


class SeenSet:
    """64-bit URL fingerprints in 65,536 sorted arrays, chosen by the top 16 bits.

    A Python `set` of ints costs about 70 bytes an entry (the int object and a
    hash-table slot with its slack); here an entry is its 8 bytes, plus one
    small array per bucket (about 4 MB in all once every bucket is in use). Each
    bucket holds n / 65,536 entries, so the insort's memmove stays a few dozen
    bytes long even at ten million URLs.
    """

    __slots__ = ("_buckets", "_len")

    def __init__(self) -> None:
        self._buckets: list[array | None] = [None] * 65_536
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def __contains__(self, fp: int) -> bool:
        bucket = self._buckets[fp >> 48]
        if bucket is None:
            return False
        i = bisect_left(bucket, fp)
        return i < len(bucket) and bucket[i] == fp

    def add(self, fp: int) -> bool:
        """Add a fingerprint; False when it was there already."""
        b = fp >> 48
        bucket = self._buckets[b]
        if bucket is None:
            self._buckets[b] = array("Q", (fp,))
            self._len += 1
            return True
        i = bisect_left(bucket, fp)
        if i < len(bucket) and bucket[i] == fp:
            return False
        bucket.insert(i, fp)
        self._len += 1
        return True


class _Batch:
    """Links of one page still pending: their URLs packed in one bytes object.

    A page's links share depth, referrer and lineage, so those are kept once and
    each URL costs its UTF-8 length plus one separator byte, not an `Item` and a
    `str` (about 200 bytes).
    """

    __slots__ = ("allow_private", "data", "depth", "pos", "referrer")

    def __init__(self, depth: int, referrer: str | None, allow_private: bool, urls: list[str]) -> None:
        self.depth = depth
        self.referrer = referrer
        self.allow_private = allow_private
        self.data = "\n".join(urls).encode("utf-8", "surrogatepass") + b"\n"
        self.pos = 0

    def pop(self) -> Item:
        end = self.data.index(b"\n", self.pos)
        url = self.data[self.pos:end].decode("utf-8", "surrogatepass")
        self.pos = end + 1
        return Item(url=url, depth=self.depth, referrer=self.referrer, allow_private=self.allow_private)

    @property
    def empty(self) -> bool:
        return self.pos >= len(self.data)


class MemoryFrontier(Frontier):
    """Seen set of 64-bit fingerprints, pending links by depth (shallowest first).

    Pending links are unbounded on purpose: they are the one place fetchers put
    discovered links, so a fetcher never waits on the bounded queue that feeds
    it, and a crawl cannot deadlock however small that queue is. Taking the
    shallowest depth first keeps the crawl breadth-first, so every page is
    reached at its least depth and the pending set stays as small as it can.

    Both are compact, because a crawl over many pages with many links holds
    millions of URLs it has not fetched yet: the seen set keeps 8 bytes per
    URL (`SeenSet`), the pending links their UTF-8 bytes, packed per page
    (`_Batch`).

    Records go to a `Sink` (buffered, whole lines per write) before their URL
    stops being outstanding; a crash loses this frontier anyway, and a resumed
    run rebuilds it from the records.
    """

    def __init__(self) -> None:
        self._seen = SeenSet()
        self._pending: dict[int, deque[_Batch]] = {}
        self._pending_count = 0
        self._outstanding = 0
        self._seeds_closed = False
        self._stopped = False
        self._changed = asyncio.Event()
        self._claimed = 0
        self._sink: Sink | None = None

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def pending(self) -> int:
        return self._pending_count

    def _accept(self, url: str) -> bool:
        return self._seen.add(fingerprint(url))

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
        group: list[str] = []
        key: tuple[int, str | None, bool] | None = None
        accept = self._seen.add
        for item in items:
            if not accept(fingerprint(item.url)):
                continue
            added += 1
            this = (item.depth, item.referrer, item.allow_private)
            if this != key:
                self._park(key, group)
                key, group = this, []
            group.append(item.url)
        self._park(key, group)
        if added:
            self._pending_count += added
            self._outstanding += added
            self._changed.set()
        return added

    def _park(self, key: tuple[int, str | None, bool] | None, urls: list[str]) -> None:
        if key is None or not urls:
            return
        depth = key[0]
        queue = self._pending.get(depth)
        if queue is None:
            queue = self._pending[depth] = deque()
        queue.append(_Batch(depth, key[1], key[2], urls))

    async def next(self) -> Item | None:
        while True:
            if self._stopped:
                return None
            if self._pending_count:
                depth = min(self._pending)
                queue = self._pending[depth]
                batch = queue[0]
                item = batch.pop()
                if batch.empty:
                    queue.popleft()
                    if not queue:
                        del self._pending[depth]
                self._pending_count -= 1
                return item
            if self._seeds_closed and self._outstanding == 0:
                return None
            self._changed.clear()
            await self._changed.wait()

    async def open_output(self, path: Path, header: str | None) -> None:
        self._sink = Sink(path, header=header)
        await self._sink.open()

    async def record(self, item: Item, line: str | None) -> bool:
        if line is not None and self._sink is not None:
            await self._sink.write_line(line)
        await self.release(item)
        return True

    async def record_unaccepted(self, item: Item, line: str | None) -> bool:
        if not self._accept(item.url):
            return False
        if line is not None and self._sink is not None:
            await self._sink.write_line(line)
        return True

    async def release(self, item: Item) -> None:
        self._outstanding -= 1
        if self._outstanding == 0:
            self._changed.set()

    async def flush(self) -> None:
        if self._sink is not None:
            await self._sink.flush()

    async def close(self) -> None:
        if self._sink is not None:
            sink, self._sink = self._sink, None
            await sink.close()

    def close_seeds(self) -> None:
        self._seeds_closed = True
        self._changed.set()

    def stop(self) -> None:
        self._stopped = True
        self._changed.set()
