"""The in-process frontier keeps millions of discovered URLs in little memory, in breadth-first order."""

from __future__ import annotations

import random
import tracemalloc

from scraper.frontier import Item, MemoryFrontier
from scraper.frontier.memory import SeenSet
from scraper.urls import fingerprint


def _links(page: int, n: int) -> list[Item]:
    referrer = f"https://www.example-{page % 7}.com/section/{page}/"
    return [Item(f"https://www.example-{page % 7}.com/section/{page}/article-{i * 7}.html?ref=home",
                 depth=1, referrer=referrer, allow_private=False) for i in range(n)]


async def test_a_discovered_url_costs_under_120_bytes():
    frontier = MemoryFrontier()
    pages = [_links(p, 5_000) for p in range(40)]  # 200,000 URLs of ~60 bytes, as a crawl's pages bring them
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for links in pages:
        assert await frontier.add_links(links) == 5_000
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_url = (after - before) / 200_000
    assert frontier.pending == 200_000
    assert per_url < 120, per_url
    # and every one comes back whole, with its page's depth and referrer
    frontier.close_seeds()
    first = await frontier.next()
    assert first is not None and first == pages[0][0]
    assert first.referrer == "https://www.example-0.com/section/0/" and first.depth == 1


async def test_pending_links_come_back_in_order_shallowest_first_each_once():
    frontier = MemoryFrontier()
    a = [Item(f"http://a/{i}", depth=2, referrer="http://a/", allow_private=True) for i in range(3)]
    b = [Item("http://a/x\u00e9", depth=1, referrer="http://a/b", allow_private=False),
         Item("http://a/0", depth=1, referrer="http://a/b", allow_private=False)]  # already pending: dropped
    assert await frontier.add_links(a) == 3
    assert await frontier.add_links(b) == 1
    frontier.close_seeds()
    got = []
    while frontier.pending:
        item = await frontier.next()
        got.append((item.url, item.depth, item.referrer, item.allow_private))
        await frontier.release(item)
    assert got == [("http://a/x\u00e9", 1, "http://a/b", False)] + [(f"http://a/{i}", 2, "http://a/", True)
                                                                    for i in range(3)]
    assert await frontier.next() is None


def test_seen_set_agrees_with_a_python_set():
    rng = random.Random(7)
    seen, reference = SeenSet(), set()
    values = [rng.getrandbits(64) for _ in range(20_000)] + [fingerprint("http://a/"), 0, 2**64 - 1]
    for v in values + values[:500]:
        assert seen.add(v) == (v not in reference)
        reference.add(v)
    assert len(seen) == len(reference)
    assert all(v in seen for v in values)
    assert not any(rng.getrandbits(64) in seen for _ in range(1_000))
