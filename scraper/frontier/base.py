"""The Frontier seam: everything the engine needs from whatever holds the crawl's state.

The pipeline never knows which frontier it has, and asks nothing that is not
declared here. The in-process one (`MemoryFrontier`) serves one machine; the
Redis one shares a crawl between machines. A frontier owns:

* the seen set (every URL the crawl decided to visit, so that none is visited
  twice) and the pending links: **adding** (`add_seed`, `add_links`,
  `mark_seen`) and **taking** (`next`);
* the URLs outstanding (accepted, not yet recorded), which is how a crawl
  knows it has ended, and **recording**: `record` keeps a URL's record and
  releases the URL as one step, so that no crash can split the two (Redis);
  `release` drops a URL without a record;
* the output file of its records, when the run writes one (`open_output`):
  one writer per file, and it is the frontier's;
* the counts the engine shows and obeys (`claimed`, `outstanding`), and the
  per-host `Limiter` that its requests go through (`limiter`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

from ..limits import Limiter

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
    """Seen set, pending links, outstanding URLs, records and counts of one crawl."""

    #: the output shard this worker writes (`DIR/pages-<shard>.jsonl`); None: the one file `DIR/pages.jsonl`
    shard: str | None = None

    # --- adding -------------------------------------------------------------------

    @abstractmethod
    async def add_seed(self, item: Item) -> bool:
        """Accept a seed (the producer hands it to the fetchers itself); False if already seen."""

    @abstractmethod
    async def add_links(self, items: list[Item]) -> int:
        """Queue the unseen ones among followed links; returns how many were new."""

    @abstractmethod
    async def mark_seen(self, url: str) -> None:
        """Remember `url` as visited without queueing it (a record already in the output)."""

    @abstractmethod
    async def is_seen(self, url: str) -> bool: ...

    # --- taking -------------------------------------------------------------------

    @abstractmethod
    async def next(self) -> Item | None:
        """The next pending link, waiting for one; None once the crawl has nothing left.

        Only call this after `close_seeds`: until then the producer is still reading seeds.
        """

    @abstractmethod
    def close_seeds(self) -> None:
        """No more seeds will come."""

    @abstractmethod
    def stop(self) -> None:
        """Stop handing out work (an interrupt): `next` returns None from now on."""

    # --- recording ----------------------------------------------------------------

    async def open_output(self, path: Path, header: str | None) -> None:  # noqa: B027 - optional
        """Write every record's line to `path` from now on (`Scraper.run`; `crawl` writes no file).

        `header` is the file's first line when it starts empty (CSV). A frontier
        that names its own shard (`shard`) writes to the path it was given when built.
        """

    @abstractmethod
    async def record(self, item: Item, line: str | None) -> bool:
        """Keep `item`'s record and release `item`, as one step.

        `line` is the record as a line of the output (None: no output file).
        False: the record is refused, because another worker holds `item` now
        and records it; the caller drops it.
        """

    @abstractmethod
    async def record_unaccepted(self, item: Item, line: str | None) -> bool:
        """Keep the record of a URL the crawl never accepted (an invalid seed line).

        Once for each: False when that URL is already seen (then nothing is kept).
        """

    @abstractmethod
    async def release(self, item: Item) -> None:
        """Drop `item` without a record (the run is stopping, or `max_pages` is spent).

        It is no longer this run's: a shared frontier gives it back for another
        worker to take; a resumed run fetches it again.
        """

    async def flush(self) -> None:  # noqa: B027 - optional
        """Write out the records kept so far; raises `OutputError` when the output cannot be written."""

    # --- counts -------------------------------------------------------------------

    @property
    @abstractmethod
    def outstanding(self) -> int:
        """URLs accepted and not yet recorded or released (over all workers of a shared crawl)."""

    @property
    @abstractmethod
    def claimed(self) -> int:
        """Page fetches taken so far against `max_pages` (over all workers of a shared crawl)."""

    @abstractmethod
    async def claim(self, limit: int) -> bool:
        """Take one of `limit` page fetches (`max_pages`, over the whole crawl); False when none is left."""

    @abstractmethod
    def count_claimed(self, n: int) -> None:
        """Count `n` page fetches already made (records found in the output on resume)."""

    # --- limits and the end ---------------------------------------------------------

    def limiter(self, concurrency: int, per_host: int, delay: float) -> Limiter:
        """The `Limiter` every request of this crawl goes through: by default this process's own."""
        return Limiter(concurrency, per_host, delay)

    async def close(self) -> None:  # noqa: B027 - optional
        """Write what is left of the output and release what the frontier holds (files, connections)."""
