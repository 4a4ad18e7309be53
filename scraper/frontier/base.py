"""The Frontier seam: what the pipeline needs from whatever holds the crawl's state.

The pipeline never knows which frontier it has. The in-process one
(`MemoryFrontier`) serves one machine; the Redis one shares a crawl between
machines. A frontier owns the seen set (every URL the crawl decided to visit,
so that none is visited twice), the pending links, and the count of URLs
still outstanding (accepted but not yet recorded), which is how a crawl knows
it has ended.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

__all__ = ["Frontier", "Item"]


@dataclass(slots=True)
class Item:
    """A URL the crawl decided to visit."""

    url: str
    depth: int = 0
    referrer: str | None = None
    #: the seed of this item's lineage was on a loopback/private address
    allow_private: bool = False


class Frontier(ABC):
    """Seen set, pending links and the outstanding count of one crawl.

    Optional hooks, looked up by the pipeline: `async commit(item, line) -> bool`
    records `item` (its output line, or None when no file is written) and releases
    it in one atomic step, the frontier writing its shard itself (then `done` means
    "dropped, give it back"); `limiter(concurrency, per_host, delay)` returns the
    `Limiter` to use (Redis: per-host limits over all workers).
    """

    @abstractmethod
    async def add_seed(self, item: Item) -> bool:
        """Accept a seed (the producer hands it to the fetchers itself); False if already seen."""

    @abstractmethod
    async def add_links(self, items: list[Item]) -> int:
        """Queue the unseen ones among followed links; returns how many were new."""

    @abstractmethod
    async def next(self) -> Item | None:
        """The next pending link, waiting for one; None once the crawl has nothing left.

        Only call this after `close_seeds`: until then the producer is still reading seeds.
        """

    @abstractmethod
    async def done(self, item: Item) -> None:
        """`item` has its record (or was dropped): it is no longer outstanding."""

    @abstractmethod
    def close_seeds(self) -> None:
        """No more seeds will come."""

    @abstractmethod
    def stop(self) -> None:
        """Stop handing out work (an interrupt): `next` returns None from now on."""

    @abstractmethod
    async def mark_seen(self, url: str) -> None:
        """Remember `url` as visited without queueing it (a record already in the output)."""

    @abstractmethod
    async def is_seen(self, url: str) -> bool: ...

    @abstractmethod
    async def claim(self, limit: int) -> bool:
        """Take one of `limit` page fetches (`max_pages`, over the whole crawl); False when none is left."""

    @abstractmethod
    def count_claimed(self, n: int) -> None:
        """Count `n` page fetches already made (records found in the output on resume)."""

    #: the output shard this worker writes (`DIR/pages-<shard>.jsonl`); None: the one file `DIR/pages.jsonl`
    shard: str | None = None

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what the frontier holds (connections)."""
