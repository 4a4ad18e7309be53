"""The Scrapy baseline: a spider that does what our scraper does, the Scrapy way.

Run as a subprocess by the driver (settings come as `-s`, arguments as `-a`):

    scrapy runspider benchmarks/scrapy_spider.py -a urls=URLS_FILE -a mode=list \
        -s CONCURRENT_REQUESTS=64 -s CONCURRENT_REQUESTS_PER_DOMAIN=64 -O out.jsonl

- `mode=list`: every URL of the file, read lazily (no links followed).
  Lazily for real: start() waits while the downloader is full (the
  `needs_backout` idiom of Scrapy's docs), as our producer does.
- `mode=crawl`: the file's first URL, then every same-host link, up to
  `DEPTH_LIMIT` (Scrapy's duplicate filter drops URLs already seen,
  ignoring fragments, as ours does).
- `fields=1`: also extract `h1` (text of the first <h1>) and `links` (every
  <a href>, raw), like the driver's `[parse.fields]` scenario.
- `lag_file=PATH`: write the reactor's lag p99 (how late a 50 ms timer fires)
  there at the end, for comparison with our `loop_lag_p99_ms`.

Each response yields one item: url, status, title, description and links
(resolved, fragment dropped, http(s) only, in document order, without
duplicates), as our records have; a failed request yields an item with `error`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urldefrag, urlsplit

import scrapy
from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.http import Response, TextResponse
from twisted.python.failure import Failure

LAG_INTERVAL = 0.05  # as the scraper samples its own loop


class BenchSpider(scrapy.Spider):
    name = "bench"

    def __init__(
        self,
        urls: str = "",
        mode: str = "list",
        fields: str = "0",
        lag_file: str = "",
        *args: Any,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if mode not in ("list", "crawl"):
            raise ValueError(f"mode must be list or crawl, not {mode!r}")
        self.urls_file = urls
        self.crawl_links = mode == "crawl"
        self.fields = fields not in ("", "0", "false")
        self.lag_file = lag_file
        self._lag: list[float] = []
        self._lag_running = False

    @classmethod
    def from_crawler(cls, crawler: Crawler, *args: Any, **kwargs: Any) -> BenchSpider:
        spider = super().from_crawler(crawler, *args, **kwargs)
        crawler.signals.connect(spider._opened, signal=signals.spider_opened)
        crawler.signals.connect(spider._closed, signal=signals.spider_closed)
        return spider

    def _urls(self) -> Iterator[str]:
        with open(self.urls_file, encoding="utf-8", errors="replace") as f:
            for line in f:
                url = line.strip()
                if url and not url.startswith("#"):
                    yield url
                    if self.crawl_links:
                        return  # a crawl starts from the first URL only

    async def start(self) -> AsyncIterator[Any]:
        # Scrapy's documented idiom for lazy start requests: without it the
        # engine drains start() into the scheduler (a 2M-line file: GBs).
        engine = self.crawler.engine
        for url in self._urls():
            if engine is not None and engine.needs_backout():
                await self.crawler.signals.wait_for(signals.scheduler_empty)
            yield scrapy.Request(url, callback=self.parse, errback=self.failed)

    def parse(self, response: Response, **kwargs: Any) -> Iterator[Any]:
        item: dict[str, Any] = {
            "url": response.request.url if response.request else response.url,
            "final_url": response.url,
            "status": response.status,
            "ok": 200 <= response.status < 300,
            "depth": response.meta.get("depth", 0),
            "bytes": len(response.body),
            "title": None,
            "description": None,
            "links": [],
            "error": None,
        }
        if not isinstance(response, TextResponse):
            yield item
            return
        item["title"] = response.xpath("//title/text()").get()
        item["description"] = response.xpath("//meta[@name='description']/@content").get()
        links = self._links(response)
        item["links"] = links
        if self.fields:
            item["fields"] = {
                "h1": response.xpath("string(//h1[1])").get() if response.css("h1") else None,
                "links": response.css("a::attr(href)").getall(),
            }
        yield item
        if self.crawl_links:
            host = urlsplit(response.url).hostname
            for link in links:
                if urlsplit(link).hostname == host:
                    yield scrapy.Request(link, callback=self.parse, errback=self.failed)

    @staticmethod
    def _links(response: TextResponse) -> list[str]:
        seen: dict[str, None] = {}  # an ordered set
        for href in response.xpath("//a/@href | //area/@href").getall():
            url = urldefrag(response.urljoin(href.strip())).url  # honours <base href>
            if url.startswith(("http://", "https://")):
                seen.setdefault(url, None)
        return list(seen)

    def failed(self, failure: Failure) -> Iterator[dict[str, Any]]:
        request = getattr(failure, "request", None)
        response = getattr(failure.value, "response", None)
        yield {
            "url": request.url if request else None,
            "status": response.status if response is not None else None,
            "ok": False,
            "error": {"kind": type(failure.value).__name__, "message": str(failure.value)},
        }

    # --- reactor lag sampler -----------------------------------------------------

    def _opened(self, spider: scrapy.Spider) -> None:
        self._lag_running = bool(self.lag_file)
        if self._lag_running:
            self._tick(0.0)

    def _tick(self, scheduled: float) -> None:
        from twisted.internet import reactor  # the one Scrapy installed, imported late

        now = time.monotonic()
        if scheduled:
            self._lag.append(max(0.0, now - scheduled) * 1000)
        if self._lag_running:
            clock: Any = reactor  # zope interfaces confuse type checkers; this is IReactorTime
            clock.callLater(LAG_INTERVAL, self._tick, now + LAG_INTERVAL)

    def _closed(self, spider: scrapy.Spider, reason: str) -> None:
        self._lag_running = False
        if not self.lag_file:
            return
        ordered = sorted(self._lag)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] if ordered else None
        with open(self.lag_file, "w") as f:
            json.dump({"loop_lag_p99_ms": p99, "samples": len(ordered), "reason": reason}, f)
