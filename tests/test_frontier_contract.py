"""The Frontier base class is the whole contract: a frontier that has only what it declares runs a crawl."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from scraper import Scraper
from scraper.frontier import Frontier, Item, MemoryFrontier
from scraper.limits import Limiter
from tests.conftest import config, html, page_handler, read_jsonl


class Declared(Frontier):
    """Forwards exactly what `Frontier` declares to a MemoryFrontier, and logs the calls."""

    def __init__(self) -> None:
        self.inner = MemoryFrontier()
        self.calls: list[str] = []
        self.limiters: list[Limiter] = []

    def __getattribute__(self, name: str) -> Any:
        # the pipeline may use what the base class declares, and nothing else
        if not name.startswith("__") and name not in ("inner", "calls", "limiters") and not hasattr(Frontier, name):
            raise AssertionError(f"the pipeline asked a frontier for {name!r}, which Frontier does not declare")
        return super().__getattribute__(name)

    async def add_seed(self, item: Item) -> bool:
        self.calls.append("add_seed")
        return await self.inner.add_seed(item)

    async def add_links(self, items: list[Item]) -> int:
        self.calls.append("add_links")
        return await self.inner.add_links(items)

    async def mark_seen(self, url: str) -> None:
        await self.inner.mark_seen(url)

    async def is_seen(self, url: str) -> bool:
        return await self.inner.is_seen(url)

    async def next(self) -> Item | None:
        return await self.inner.next()

    def close_seeds(self) -> None:
        self.inner.close_seeds()

    def stop(self) -> None:
        self.inner.stop()

    async def open_output(self, path: Path, header: str | None) -> None:
        self.calls.append("open_output")
        await self.inner.open_output(path, header)

    async def record(self, item: Item, line: str | None) -> bool:
        self.calls.append("record")
        return await self.inner.record(item, line)

    async def record_unaccepted(self, item: Item, line: str | None) -> bool:
        self.calls.append("record_unaccepted")
        return await self.inner.record_unaccepted(item, line)

    async def release(self, item: Item) -> None:
        self.calls.append("release")
        await self.inner.release(item)

    async def flush(self) -> None:
        await self.inner.flush()

    @property
    def outstanding(self) -> int:
        return self.inner.outstanding

    @property
    def claimed(self) -> int:
        return self.inner.claimed

    async def claim(self, limit: int) -> bool:
        return await self.inner.claim(limit)

    def count_claimed(self, n: int) -> None:
        self.inner.count_claimed(n)

    def limiter(self, concurrency: int, per_host: int, delay: float) -> Limiter:
        made = super().limiter(concurrency, per_host, delay)
        self.limiters.append(made)
        return made

    async def close(self) -> None:
        self.calls.append("close")
        await self.inner.close()


def test_the_base_class_declares_every_part_the_engine_uses():
    abstract = set(Frontier.__abstractmethods__)
    assert {"add_seed", "add_links", "next", "record", "record_unaccepted", "release", "claim",
            "outstanding", "claimed"} <= abstract
    for name in ("open_output", "flush", "limiter", "close"):  # defaults a frontier may keep
        assert name in vars(Frontier) and name not in abstract
    assert not hasattr(Frontier, "done") and not hasattr(Frontier, "commit")
    assert inspect.signature(Frontier.record).return_annotation in (bool, "bool")


async def test_a_crawl_through_a_frontier_that_has_only_the_contract(serve, tmp_path):
    site = await serve({
        "/a": page_handler(html("A", links=["/b", "/c"])),
        "/b": page_handler(html("B", links=["/a"])),
        "/c": page_handler(html("C")),
    })
    frontier = Declared()
    cfg = config(tmp_path, crawl={"depth": 1})
    async with Scraper(cfg, frontier=frontier) as s:
        urls = [site.url("/a"), "not a url", "not a url"]
        stats = await s.run(urls)
    records = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert sorted(r["url"] for r in records) == sorted([site.url("/a"), site.url("/b"), site.url("/c"), "not a url"])
    assert stats.pages == 4
    assert frontier.calls[0] == "open_output" and frontier.calls[-1] == "close"
    assert frontier.calls.count("record") == 3  # one per fetched page, each releasing its URL
    assert frontier.calls.count("record_unaccepted") == 2  # the second is refused: seen
    assert "release" not in frontier.calls  # nothing dropped
    assert len(frontier.limiters) == 1 and frontier.limiters[0].closed  # the frontier's limiter, closed at the end
    assert frontier.outstanding == 0


async def test_record_and_release_in_memory(tmp_path):
    f = MemoryFrontier()
    await f.open_output(tmp_path / "p.csv", "url\n")
    a, b = Item(url="http://h/a"), Item(url="http://h/b")
    assert await f.add_seed(a) and await f.add_seed(b) and not await f.add_seed(Item(url="http://h/a"))
    assert f.outstanding == 2
    assert await f.record(a, "http://h/a\n")
    await f.release(b)  # dropped: no record, no longer outstanding
    assert f.outstanding == 0
    assert await f.record_unaccepted(Item(url="bad"), "bad\n")
    assert not await f.record_unaccepted(Item(url="bad"), "bad\n")
    f.close_seeds()
    assert await f.next() is None
    await f.close()
    assert (tmp_path / "p.csv").read_text() == "url\nhttp://h/a\nbad\n"
