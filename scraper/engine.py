"""The engine: one crawl, from seeds to records. `Scraper` builds an `Engine` per run.

producer -> bounded queue -> dispatcher -> fetch tasks -> batches -> parse -> records.

How the parts meet, and why they cannot deadlock:

* The **producer** is the only coroutine that puts into the bounded
  `asyncio.Queue`. It reads the seeds lazily (a 10-million-line file never sits
  in memory), then takes pending links from the frontier. Its `put` waiting on
  a full queue is the backpressure that keeps memory flat.
* The **dispatcher** takes URLs from the queue and starts a fetch task for
  each, at most `2 * per_host` live for one host; the rest of a busy host's
  URLs are parked per host, so one slow host never fills the pool. Fetch tasks
  wait for their host before they take a global slot (see `limits`).
* Fetch tasks never put into the queue: links they find go to the frontier's
  pending set, which is unbounded. So however small the queue, a fetcher
  always finishes, and the producer always gets to run again.
* Fetched pages go through a second bounded queue to the **batcher**, which
  takes what has piled up (up to `batch_size`) and parses it with
  `asyncio.gather` over the process pool, one chunk per worker.
* A page's links are added to the frontier before its record is written, and
  the record before the page stops counting as outstanding: the crawl ends
  when the seeds are read and nothing is outstanding, and a resumed crawl can
  rebuild its frontier from the records alone.

The engine is handed every part it uses when it is built (the config, the
frontier, the parse pool, where records go, the archive, the earlier crawl)
and knows nothing of the `Scraper` that built it, nor of output folders: the
frontier writes the records' lines, and `save_html` is the one file the
engine itself writes.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterator, Awaitable, Callable
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

import aiofiles
from yarl import URL

from .archive import Archive
from .config import Config
from .errors import OutputError
from .fetch import Fetcher, FetchResult
from .frontier import Frontier, Item
from .limits import LimiterClosed
from .page import Page, PageError, now_iso
from .parse import Parsed, ParseJob, is_html
from .pool import ParsePool
from .render import Rendered, Renderer, find_browser
from .robots import RobotsCache
from .since import Earlier, EarlierCrawl
from .sinks import RecordFormat
from .stats import Stats, Tally
from .urls import LinkFilter, host_key, is_sitemap_url, normalize

__all__ = ["PARK_CAP", "Engine", "Progress"]

#: URLs parked per run at most (waiting for a busy host) before the dispatcher waits
PARK_CAP = 10_000

_END: Any = object()
#: a number per engine of this process: a parse worker gives back each followed link once per run
_RUNS = itertools.count(1)


class Progress(Protocol):
    """What `Scraper.run` reports to (the CLI's progress bar and log)."""

    def start(self, counts: Callable[[], tuple[int, int, int, int]]) -> None: ...
    def page(self, page: Page) -> None: ...
    def stop(self) -> None: ...


class Engine:
    """One crawl: seeds in, one record per URL out (to `emit`, and through the frontier to the output).

    Built for one `execute` and given all it uses. `emit` gets each recorded
    Page (`Scraper.crawl` yields them, `--output -` prints them); `records`
    encodes each record's line for the frontier to write (None: no file is
    written, nor html/). `tally` and `budget_used` carry a resumed crawl's
    counts. `workers` sizes the parse queue and the batches in flight;
    `page_to_parse` hands each parse job its Page (an `extract` function
    wants it). `browser` is the Chromium found already, if any.
    """

    def __init__(
        self,
        config: Config,
        frontier: Frontier,
        pool: ParsePool,
        *,
        workers: int,
        queue_size: int,
        page_to_parse: bool = False,
        browser: str | None = None,
        emit: Callable[[Page], Awaitable[None]] | None = None,
        tally: Tally | None = None,
        budget_used: int = 0,
        records: RecordFormat | None = None,
        progress: Progress | None = None,
        archive: Archive | None = None,
        since: EarlierCrawl | None = None,
    ) -> None:
        self.c = config
        self.archive = archive
        self._emit_to = emit
        self.frontier = frontier
        self.pool = pool
        self.workers = workers
        self.page_to_parse = page_to_parse
        self.browser = browser
        self.tally = tally or Tally()
        self.run_pages = 0
        self._budget_spent = False
        frontier.count_claimed(budget_used)
        self.records = records  # the output's lines; None: `crawl()`, which writes no files
        self.limiter = frontier.limiter(config.fetch.concurrency, config.fetch.per_host, config.fetch.delay)
        self._seeding: asyncio.Task[None] | None = None  # see _produce
        self.progress = progress
        self.since = since
        self.link_filter = LinkFilter(config.crawl.same_host, config.crawl.allow, config.crawl.deny)
        self._run_id = next(_RUNS)  # see ParseJob.run

        self.stopping = False
        self._fatal: BaseException | None = None
        self._lags: deque[float] = deque(maxlen=50_000)
        self._started = time.monotonic()
        self._started_at = now_iso()
        self._capacity = asyncio.Event()  # the dispatcher may take more URLs
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # fetch tasks with a request under way
        self.renderer: Renderer | None = None  # [render] mode other than "never"
        self.robots: RobotsCache | None = None  # [fetch] obey_robots
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=queue_size)
        self.parse_q: asyncio.Queue[Any] = asyncio.Queue(maxsize=config.parse.batch_size * (2 * workers + 1))
        self._live = 0
        self._host_live: dict[str, int] = defaultdict(int)
        self._parked: dict[str, deque[Item]] = defaultdict(deque)
        self._parked_total = 0
        self._max_live = max(64, 4 * config.fetch.concurrency)
        self._host_cap = 2 * config.fetch.per_host
        self.fetcher: Fetcher  # execute's: it lives as long as the run
        self._pool_ready: asyncio.Future[None]  # execute's: the pool's start, off the event loop

    # --- lifecycle ---------------------------------------------------------------

    async def execute(self, seeds: AsyncIterator[tuple[int, bytes | str]]) -> None:
        c = self.c
        limit = c.crawl.max_pages
        if limit > 0 and self.frontier.claimed >= limit:
            self._budget_spent = True
            self.stopping = True
            self.frontier.stop()
        browser = None
        if c.render.mode != "never":
            browser = self.browser or await find_browser(c.render)
        on_exchange = self.archive.add if self.archive is not None else None
        async with Fetcher(c, self.limiter, on_exchange=on_exchange) as fetcher:
            self.fetcher = fetcher
            self.robots = RobotsCache(fetcher, self.limiter, c.fetch.user_agent) if c.fetch.obey_robots else None
            if browser is not None:
                self.renderer = Renderer(c, fetcher, self.limiter, self.robots, browser)
            if self.progress is not None:
                self.progress.start(self.counts)
            self._pool_ready = asyncio.get_running_loop().run_in_executor(None, self.pool.start)
            helpers = [asyncio.create_task(self._watch_loop())]
            if self.records is not None:
                helpers.append(asyncio.create_task(self._flush_periodically()))
                helpers[-1].add_done_callback(self._check_task)  # a failed write stops the run at once
            try:
                producer = asyncio.create_task(self._produce(seeds))
                dispatcher = asyncio.create_task(self._dispatch())
                batcher = asyncio.create_task(self._batch())
                for task in (producer, dispatcher, batcher):
                    task.add_done_callback(self._check_task)
                await producer
                await dispatcher
                await self.parse_q.put(_END)
                await batcher
            finally:
                for task in helpers:
                    task.cancel()
                if self.progress is not None:
                    self.progress.stop()
                self.limiter.close()
                if self.renderer is not None:
                    await self.renderer.close()
                await self.frontier.close()
        if self._fatal is not None:
            raise self._fatal

    def _check_task(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        e = task.exception()
        if e is not None and self._fatal is None:
            self._fatal = e
            self.stop(grace=0)

    def stop(self, grace: float) -> None:
        # no early return when already stopping: a run winding down after max_pages still
        # owes an interrupt its grace deadline; a second call only cancels what is left again
        self.stopping = True
        self.frontier.stop()
        self.limiter.close()
        if self._seeding is not None:
            self._seeding.cancel()  # it may wait for a seed that never comes (a stdin left open)
        # URLs not yet under way are dropped now; those under way get the grace period
        for task in list(self._fetch_tasks):
            if task not in self._busy or grace <= 0:
                task.cancel()
        if grace > 0:
            asyncio.get_running_loop().call_later(grace, self._cancel_all)
        self._capacity.set()

    def stop_early(self) -> None:
        """A signal that came while the run was set up, before `execute`: the run takes no URL."""
        self.stopping = True
        self.frontier.stop()

    def count_written(self, tally: Tally, resumed: int) -> None:
        """Count the records the output holds (`tally`, `resumed` of them from before this run).

        After a full disk, the records that were lost are not counted.
        """
        self.tally = tally
        self.run_pages = max(0, tally.pages - resumed)

    def _cancel_all(self) -> None:
        for task in list(self._fetch_tasks):
            task.cancel()

    def counts(self) -> tuple[int, int, int, int]:
        """(done, known, errors, done this run) for the progress display.

        Done, known and errors count the whole crawl (after `--resume`, the records
        already in the output too). With `max_pages`, URLs past the budget get no
        record, so known is capped at the budget (plus the records that do not
        count against it: invalid_url and robots).
        """
        t = self.tally
        known = t.pages + self.frontier.outstanding
        if (limit := self.c.crawl.max_pages) > 0:
            known = min(known, max(t.pages, limit + t.by_error["invalid_url"] + t.by_error["robots"]))
        return t.pages, known, sum(t.by_error.values()), self.run_pages

    def stats(self, interrupted: bool) -> Stats:
        elapsed = time.monotonic() - self._started
        lags = sorted(self._lags)
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))] if lags else 0.0
        return self.tally.stats(
            elapsed=elapsed,
            run_pages=self.run_pages,
            started_at=self._started_at,
            finished_at=now_iso(),
            interrupted=interrupted,
            since=self.since is not None,
            loop_lag_p99_ms=round(p99 * 1000, 2),
        )

    async def _watch_loop(self) -> None:
        """Sample the event loop's lag: how late a 50 ms sleep wakes up."""
        while True:
            t = time.monotonic()
            await asyncio.sleep(0.05)
            self._lags.append(max(0.0, time.monotonic() - t - 0.05))

    async def _flush_periodically(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            await self.frontier.flush()

    # --- records -------------------------------------------------------------------

    async def _record(self, item: Item, page: Page, follow: list[Item] | None = None) -> None:
        """Links first, then the record with the release of its URL (one step, the frontier's).

        The frontier writes the record's line to the output (Redis: in one atomic
        step with the release, so no crash can split the two). False: another
        worker holds the item now, and records it.
        """
        if self.since is not None and page.changed is None:  # a 304 has said "unchanged" already
            page.changed = self.since.changed(page.url, page.ok, page.content_hash)
        if follow:
            await self.frontier.add_links(follow)
        if self.archive is not None:
            await self.archive.synced()  # the archive holds the page's exchanges before its record exists
        if await self.frontier.record(item, None if self.records is None else self.records.encode(page)):
            await self._emit(page)

    async def _emit(self, page: Page) -> None:
        if self._emit_to is not None:
            await self._emit_to(page)
        self.run_pages += 1
        kind = page.error.kind if page.error else None
        self.tally.add(page.status, page.ok, page.bytes, kind, page.changed)
        if self.progress is not None:
            self.progress.page(page)

    def _page(self, item: Item, **values: Any) -> Page:
        return Page(
            url=item.url,
            depth=item.depth,
            referrer=item.referrer,
            with_text=self.c.parse.text,
            with_markdown=self.c.parse.markdown,
            with_rendered=self.c.render.mode != "never",
            **values,
        )

    def _unrequested(self, item: Item, error: PageError) -> Page:
        return self._page(item, fetched_at=now_iso(), error=error)

    # --- producer ----------------------------------------------------------------

    async def _produce(self, seeds: AsyncIterator[tuple[int, bytes | str]]) -> None:
        try:
            # seeds are read in a task of their own, which stop() cancels: a stdin left open never ends
            self._seeding = asyncio.create_task(self._read_seeds(seeds))
            await asyncio.wait({self._seeding})
            if not self._seeding.cancelled() and self._seeding.exception() is not None:
                raise self._seeding.exception()  # type: ignore[misc]
            self.frontier.close_seeds()
            while not self.stopping:
                item = await self.frontier.next()
                if item is None:
                    break
                await self.queue.put(item)
        finally:
            self.frontier.close_seeds()
            await self.queue.put(_END)

    async def _read_seeds(self, seeds: AsyncIterator[tuple[int, bytes | str]]) -> None:
        async for lineno, raw in seeds:
            if self.stopping or self._budget_spent:
                break  # with max_pages spent, the rest of a 10-million-line file is not even read
            await self._seed(lineno, raw)

    async def _seed(self, lineno: int, raw: bytes | str) -> None:
        if isinstance(raw, bytes):
            line = raw.strip()
            if not line or line.startswith(b"#"):
                return
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                await self._invalid(line.decode("utf-8", "replace"), f"line {lineno}: not valid UTF-8")
                return
        else:
            text = raw.strip()
            if not text or text.startswith("#"):
                return
        url = normalize(text)
        if url is None:
            await self._invalid(text, f"line {lineno}: not an http(s) URL with a host")
            return
        item = Item(url=url, depth=0, referrer=None, allow_private=None)  # type: ignore[arg-type]
        if await self.frontier.add_seed(item):
            await self.queue.put(item)

    async def _invalid(self, text: str, message: str) -> None:
        item = Item(url=text)
        page = self._unrequested(item, PageError("invalid_url", message))
        # the seen check and the record in one step (over all workers): one record per line text
        if await self.frontier.record_unaccepted(item, None if self.records is None else self.records.encode(page)):
            await self._emit(page)

    # --- dispatcher and fetch tasks --------------------------------------------------

    async def _dispatch(self) -> None:
        while True:
            while (self._live >= self._max_live or self._parked_total >= PARK_CAP) and not self.stopping:
                self._capacity.clear()
                await self._capacity.wait()
            item = await self.queue.get()
            if item is _END:
                break
            if self.stopping:
                await self.frontier.release(item)
                continue
            host = host_key(item.url)
            if self._host_live[host] < self._host_cap:
                self._spawn(item, host)
            else:
                self._parked[host].append(item)
                self._parked_total += 1
        for items in list(self._parked.values()):  # only left over when stopping
            while items:  # popped one by one: `_finished` may take from it while `done` awaits
                await self.frontier.release(items.popleft())
        self._parked.clear()
        self._parked_total = 0
        while self._fetch_tasks:
            await asyncio.gather(*self._fetch_tasks, return_exceptions=True)

    def _spawn(self, item: Item, host: str) -> None:
        self._live += 1
        self._host_live[host] += 1
        task = asyncio.create_task(self._visit(item))
        self._fetch_tasks.add(task)
        task.add_done_callback(lambda t: self._finished(t, host))

    def _finished(self, task: asyncio.Task[None], host: str) -> None:
        self._fetch_tasks.discard(task)
        self._busy.discard(task)
        self._live -= 1
        self._host_live[host] -= 1
        parked = self._parked.get(host)
        if parked and not self.stopping:
            self._parked_total -= 1
            self._spawn(parked.popleft(), host)
        if not parked:
            self._parked.pop(host, None)
            if self._host_live[host] <= 0:
                del self._host_live[host]
        self._capacity.set()
        self._check_task(task)

    def budget_exhausted(self) -> bool:
        limit = self.c.crawl.max_pages
        return limit > 0 and self._budget_spent

    async def _claim(self) -> bool:
        """Take one of `max_pages` page fetches (the frontier counts them); False when none is left."""
        limit = self.c.crawl.max_pages
        if limit == 0:
            return True
        if self._budget_spent or not await self.frontier.claim(limit):
            self._budget_spent = True
            self.frontier.stop()  # no new URLs; those taken finish
            return False
        return True

    async def _visit(self, item: Item) -> None:
        try:
            await self._visit_inner(item)
        except LimiterClosed:
            pass  # stopped before its request started: a resumed run fetches it again

    async def _visit_inner(self, item: Item) -> None:
        if self.budget_exhausted() or self.stopping:
            await self.frontier.release(item)
            return
        if item.allow_private is None:  # a seed (links inherit their referrer's)
            origin = URL(item.referrer).host if item.referrer else URL(item.url).host
            item.allow_private = await self.fetcher.is_private_host(origin or "")
        if self.robots is not None:
            error = await self.robots.check(item.url, allow_private=item.allow_private)
            if error is not None and error.kind == "robots":
                await self._record(item, self._unrequested(item, error))
                return
        else:
            error = None
        if not await self._claim():
            await self.frontier.release(item)
            return
        if error is not None:  # robots.txt unreachable
            await self._record(item, self._unrequested(item, error))
            return
        task = asyncio.current_task()
        assert task is not None
        self._busy.add(task)  # from here to its record (or the parse queue) the URL gets an interrupt's grace
        earlier = self.since.lookup(item.url) if self.since is not None else None
        result = await self._fetch(item, earlier)
        if earlier is not None and result.ok and result.status == 304:
            if await self._not_modified(item, result, earlier):
                return
            result = await self.fetcher.fetch(item.url, allow_private=item.allow_private)  # see _not_modified
        if self.c.output.save_html and self.records is not None and result.body is not None:  # crawl() writes no files
            await self._save_html(item.url, result.body)
        sitemap = item.depth == 0 and item.referrer is None and is_sitemap_url(item.url)
        if result.ok and result.body and (sitemap or is_html(result.media_type, result.body)):
            if self.renderer is not None and not sitemap and await self.renderer.wanted(item.url, result):
                result = await self.renderer.visit(result, allow_private=item.allow_private)
                if self.archive is not None and isinstance(result, Rendered) and result.body:
                    self.archive.add_rendered(result.final_url or item.url, result.body)  # what reparse parses
            await self.parse_q.put((item, result, sitemap))
            return
        await self._record(item, self._fetched(item, result))

    async def _fetch(self, item: Item, earlier: Earlier | None) -> FetchResult:
        """Fetch `item`, conditionally when the earlier crawl left validators for it (SPEC 9)."""
        kw: dict[str, Any] = {}
        if self.robots is not None:  # a redirect's target obeys robots.txt too
            robots, private = self.robots, item.allow_private
            kw["hop_check"] = lambda url: robots.check(url, allow_private=private)
        if earlier is not None and (headers := earlier.headers()):
            at: str | None = item.url
            if earlier.redirected:  # the validators are those of the URL it redirected to
                record = await asyncio.to_thread(self.since.record, earlier)  # type: ignore[union-attr]
                at = record.get("final_url") if record is not None else None
            if at:
                kw.update(headers=headers, headers_at=at)
        return await self.fetcher.fetch(item.url, allow_private=item.allow_private, **kw)

    async def _not_modified(self, item: Item, result: FetchResult, earlier: Earlier) -> bool:
        """Record a 304: the earlier record's parsed keys carried over, its links followed as if fetched.

        False when the earlier record cannot be read back as this URL's own (its
        folder changed, or two URLs share a fingerprint): the page is fetched again.
        """
        assert self.since is not None
        record = await asyncio.to_thread(self.since.record, earlier)
        if record is None or record.get("url") != item.url:
            return False
        links = [link for link in record.get("links") or () if isinstance(link, str)]
        fields = record.get("fields")
        page = self._fetched(
            item,
            result,
            title=record.get("title"),
            description=record.get("description"),
            links=links,
            fields=fields if isinstance(fields, dict) else {},
            text=record.get("text") if self.c.parse.text else None,
            changed=False,
        )
        page.markdown = record.get("markdown")
        page.rendered = record.get("rendered") is True  # the carried keys came from that render's DOM
        page.content_type = result.media_type or record.get("content_type")
        page.content_hash = record.get("content_hash")
        page.etag = result.etag if result.etag is not None else record.get("etag")
        page.last_modified = result.last_modified if result.last_modified is not None else record.get("last_modified")
        error = record.get("error")
        if isinstance(error, dict) and error.get("kind") == "parse":  # the same body parses the same way
            page.error = PageError("parse", str(error.get("message", "")))
        await self._record(item, page, self._follow(item, page.final_url or item.url, links))
        return True

    def _follow(self, item: Item, final_url: str, links: list[str]) -> list[Item]:
        """The links of a page not parsed this run that the crawl follows: what the parse workers would pick."""
        if item.depth == 0 and item.referrer is None and is_sitemap_url(item.url):
            return [Item(url=link, depth=0, referrer=None, allow_private=None) for link in links]  # type: ignore[arg-type]
        if self.stopping or item.depth >= self.c.crawl.depth:
            return []
        page_host = _host(final_url)
        return [
            Item(url=link, depth=item.depth + 1, referrer=item.url, allow_private=item.allow_private)
            for link in links
            if self.link_filter.follows(link, _host(link), page_host)
        ]

    def _fetched(self, item: Item, result: FetchResult, **values: Any) -> Page:
        return self._page(
            item,
            final_url=result.final_url,
            status=result.status,
            ok=result.ok,
            fetched_at=result.fetched_at,
            elapsed_ms=result.elapsed_ms,
            attempts=result.attempts,
            content_type=result.media_type,
            bytes=result.size,
            etag=result.etag,
            last_modified=result.last_modified,
            content_hash=result.content_hash,
            error=result.error,
            **values,
        )

    async def _save_html(self, url: str, body: bytes) -> None:
        folder = Path(self.c.output.dir) / "html"
        name = sha256(url.encode("utf-8")).hexdigest() + ".html"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            async with aiofiles.open(folder / name, "wb") as f:
                await f.write(body)
        except OSError as e:
            raise OutputError(f"cannot write {folder / name}: {e.strerror or e}") from None

    # --- parsing -----------------------------------------------------------------------

    async def _batch(self) -> None:
        in_flight = asyncio.Semaphore(2 * self.workers)
        tasks: set[asyncio.Task[None]] = set()
        ended = False
        while not ended:
            first = await self.parse_q.get()
            if first is _END:
                break
            batch = [first]
            while len(batch) < self.c.parse.batch_size:
                try:
                    nxt = self.parse_q.get_nowait()
                except asyncio.QueueEmpty:
                    break
                if nxt is _END:
                    ended = True
                    break
                batch.append(nxt)
            await in_flight.acquire()
            task = asyncio.create_task(self._parse(batch))
            tasks.add(task)

            def done(t: asyncio.Task[None]) -> None:
                tasks.discard(t)
                in_flight.release()
                self._check_task(t)

            task.add_done_callback(done)
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _parse(self, batch: list[tuple[Item, FetchResult, bool]]) -> None:
        max_depth = self.c.crawl.depth
        jobs = [
            ParseJob(
                final_url=result.final_url or item.url,
                content_type=result.content_type or "",
                body=result.body or b"",
                follow=item.depth < max_depth,
                sitemap=sitemap,
                page=self._fetched(item, result) if self.page_to_parse else None,
                run=self._run_id,
            )
            for item, result, sitemap in batch
        ]
        await self._pool_ready
        outputs = await self.pool.parse(jobs)
        for (item, result, sitemap), out in zip(batch, outputs, strict=True):
            await self._finish_parsed(item, result, sitemap, out)

    async def _finish_parsed(self, item: Item, result: FetchResult, sitemap: bool, out: Parsed) -> None:
        """The one place a parse result becomes a record (and the links to follow)."""
        links = out.links
        page = self._fetched(
            item,
            result,
            title=out.title,
            description=out.description,
            links=links,
            fields=out.fields,
            text=out.text if self.c.parse.text else None,
            markdown=out.markdown if self.c.parse.markdown else None,
            rendered=isinstance(result, Rendered),
        )
        page.error = out.error if out.error is not None else result.error
        follow: list[Item] = []
        if out.seeds:  # a sitemap: its URLs are seeds
            follow = [Item(url=link, depth=0, referrer=None, allow_private=None) for link in links]  # type: ignore[arg-type]
        elif not self.stopping:
            # a link a worker gave back earlier in this run is not given again: it is in the frontier
            depth = item.depth + 1
            follow = [
                Item(url=links[i], depth=depth, referrer=item.url, allow_private=item.allow_private)
                for i in out.follow
            ]
        await self._record(item, page, follow)


def _host(url: str) -> str:
    """The host of a normalised URL (`scheme://[userinfo@]host[:port]/...`), lower-cased already.

    The 304 path filters its links here, in the event loop, where building a
    yarl URL per link (as the parse workers do) would cost ten times more.
    """
    netloc = url.split("/", 3)[2].rpartition("@")[2] if url.count("/") >= 2 else ""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.partition(":")[0]
