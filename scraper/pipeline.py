"""Scraper: producer -> bounded queue -> fetchers -> batches -> parse -> sink.

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
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import threading
import time
from collections import defaultdict, deque
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Iterable
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

import aiofiles
from yarl import URL

from .archive import Archive, require_warcio, warc_path
from .config import Config
from .errors import OutputError, OutputExistsError, UsageError
from .fetch import Fetcher, FetchResult
from .frontier import Frontier, Item, MemoryFrontier
from .limits import LimiterClosed
from .page import Page, PageError, now_iso, record_keys
from .parse import Extract, Parsed, ParseJob, Parser, is_html
from .pool import ParsePool, check_sendable
from .render import Rendered, Renderer, find_browser
from .robots import RobotsCache
from .since import Earlier, EarlierCrawl
from .sinks import RecordFormat, columns, csv_header, iter_records, read_back, sink_path, truncate_torn
from .sources import numbered, open_source
from .stats import Stats, Tally
from .stdout import OutputClosed, StdoutSink
from .urls import LinkFilter, host_key, is_sitemap_url, normalize

__all__ = ["GRACE_S", "Scraper", "scrape"]

#: seconds that requests in flight get to finish after SIGINT/SIGTERM
GRACE_S = 5.0
#: URLs parked per run at most (waiting for a busy host) before the dispatcher waits
PARK_CAP = 10_000

_END: Any = object()
#: keys every record has since recrawls exist: an output without them cannot be resumed
_RECRAWL_KEYS = frozenset(("etag", "last_modified", "content_hash", "changed"))


class Progress(Protocol):
    """What `Scraper.run` reports to (the CLI's progress bar and log)."""

    def start(self, counts: Callable[[], tuple[int, int, int, int]]) -> None: ...
    def page(self, page: Page) -> None: ...
    def stop(self) -> None: ...


class Scraper:
    """The crawler. Use as `async with Scraper(config) as s:`; see `crawl` and `run`.

    `extract(soup, page) -> dict` runs in the parse processes; any callable that
    cloudpickle can copy works (see `pool`); its result is merged into
    `page.fields`. `queue_size` bounds the queue between the producer and the
    fetchers (default: twice `concurrency`); any size works, 1 included.
    """

    def __init__(
        self,
        config: Config | None = None,
        *,
        extract: Extract | None = None,
        queue_size: int | None = None,
        frontier: Frontier | None = None,
    ) -> None:
        self.config = config if config is not None else Config()
        if extract is not None:
            check_sendable(extract)
        self.extract = extract
        self.queue_size = 2 * self.config.fetch.concurrency if queue_size is None else queue_size
        if self.queue_size < 1:
            raise ValueError("queue_size must be at least 1")
        self._frontier = frontier
        self._pool: ParsePool | None = None
        self._run: _Run | None = None
        self._browser: str | None = None  # the Chromium that renders pages, once found
        self.interrupted_by: int | None = None
        self._reading_since = threading.Event()  # set: stop reading the --since folder (an interrupt)

    @property
    def record_keys(self) -> tuple[str, ...]:
        """The keys of this configuration's records (and CSV columns), in output order."""
        c = self.config
        return record_keys(text=c.parse.text, markdown=c.parse.markdown, rendered=c.render.mode != "never")

    @property
    def workers(self) -> int:
        return self.config.parse.workers or os.cpu_count() or 1

    async def __aenter__(self) -> Scraper:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the parse processes and wait for them: none is left when this returns."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await asyncio.get_running_loop().run_in_executor(None, pool.close)

    def kill(self) -> None:
        """End the parse processes now, without waiting for their batches (a second Ctrl-C)."""
        if self._pool is not None:
            self._pool.kill()

    def _require_extras(self) -> None:
        """UsageError naming the extra to install, before any file or request, when one is missing."""
        if self.config.parse.markdown:
            from .markdown import require

            require()
        if self.config.output.report and self.config.output.dir != "-":  # `--output -` writes no report
            from .report import require_extra

            require_extra()

    def _new_frontier(self) -> Frontier:
        """The frontier given to the constructor, else the one `[frontier].backend` names."""
        if self._frontier is not None:
            return self._frontier
        if self.config.frontier.backend == "redis":
            from .frontier.redis import RedisFrontier

            return RedisFrontier(self.config.frontier, output=self.config.output)
        return MemoryFrontier()

    def _parser(self) -> Parser:
        c = self.config
        return Parser(
            fields=c.parse.fields,
            text=c.parse.text,
            extract=self.extract,
            link_filter=LinkFilter(c.crawl.same_host, c.crawl.allow, c.crawl.deny),
            markdown=c.parse.markdown,
        )

    def _parse_pool(self) -> ParsePool:
        """The parse processes, made on first use and kept until `close`."""
        if self._pool is None:
            self._pool = ParsePool(self._parser(), self.workers)
        return self._pool

    def interrupt(self, signum: int = 2) -> None:
        """Stop taking new URLs, let requests in flight finish (up to GRACE_S), then end the run."""
        self.interrupted_by = signum
        self._reading_since.set()
        if self._run is not None:
            # SCRAPER_GRACE_S overrides GRACE_S: the tests interrupt runs without waiting 5 s
            grace = os.environ.get("SCRAPER_GRACE_S")
            self._run.stop(grace=float(grace) if grace else GRACE_S)

    # --- the library's two entry points ---------------------------------------

    async def crawl(self, urls: Iterable[str] | AsyncIterable[str]) -> AsyncIterator[Page]:
        """Crawl `urls` (and the links they lead to, per `[crawl]`), yielding each Page.

        Writes no files. Breaking out of the loop stops the crawl.
        """
        self._require_extras()
        out: asyncio.Queue[Page | object] = asyncio.Queue(maxsize=256)

        async def emit(page: Page) -> None:
            await out.put(page)

        since = await self._read_since()
        run = _Run(self, emit, self._new_frontier(), self._parse_pool(), since=since)
        self._run = run

        async def execute() -> None:
            try:
                await run.execute(numbered(urls))
            finally:
                await out.put(_END)

        task = asyncio.create_task(execute())
        try:
            while True:
                page = await out.get()
                if page is _END:
                    break
                yield page  # type: ignore[misc]
            await task  # raises what the run raised
        finally:
            if not task.done():
                run.stop(grace=0)
                task.cancel()
                try:
                    await task
                except (asyncio.CancelledError, Exception):
                    pass
            self._run = None

    async def run(
        self,
        source: str | os.PathLike[str] | Iterable[str] | AsyncIterable[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Stats:
        """Run the whole job as the CLI does: read `source`, write DIR/pages.*, DIR/stats.json.

        `source` is a path to a urls file, "-" for standard input, or an iterable of URLs.
        """
        self.interrupted_by = None  # a Scraper may run again after an interrupted run
        self._require_extras()
        c = self.config
        if c.output.dir == "-":
            return await self._run_to_stdout(source, resume=resume, progress=progress)
        out_dir = Path(c.output.dir)
        report = c.output.report
        fmt = c.output.format
        other_fmt = "csv" if fmt == "jsonl" else "jsonl"
        frontier = self._new_frontier()  # first: it names the shard (and Redis is checked before any file)
        path, other = sink_path(out_dir, fmt, frontier.shard), sink_path(out_dir, other_fmt, frontier.shard)
        stats_path = out_dir / ("stats.json" if frontier.shard is None else f"stats-{frontier.shard}.json")
        archive = Archive(warc_path(out_dir, frontier.shard)) if c.output.warc else None
        if archive is not None:
            require_warcio()

        seeds = open_source(source)  # fails early on a missing file
        if c.render.mode != "never":  # no Playwright or no Chromium: exit 2 before any file or request
            self._browser = await find_browser(c.render)
        if resume and overwrite:
            raise UsageError("--resume and --overwrite exclude each other")
        if not resume and not overwrite:
            for p in (path, other):
                if p.exists():
                    raise OutputExistsError(
                        f"{p} already exists: use --resume to continue that crawl, or --overwrite to start over"
                    )
        if resume and other.exists() and not path.exists():
            raise UsageError(f"{other} holds the crawl to resume: resume it with --format {other_fmt}")
        since = await self._read_since(out_dir)  # before anything is written: its errors leave all as it was

        try:
            out_dir.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any request
            if overwrite:
                for p in (path, other, stats_path, warc_path(out_dir, frontier.shard)):
                    p.unlink(missing_ok=True)
                shutil.rmtree(out_dir / "html", ignore_errors=True)
        except OSError as e:
            raise OutputError(f"cannot prepare {out_dir}: {e.strerror or e}") from None

        tally = Tally()
        used = 0
        resumed_links: list[Item] = []
        if resume and path.exists():
            if fmt == "csv" and (header := csv_header(path)) not in (None, columns(self.record_keys)):
                raise UsageError(_columns_differ(path, header, columns(self.record_keys)))
            records, good_end = read_back(path, fmt)
            if any(not _RECRAWL_KEYS.issubset(record) for record in records):
                raise UsageError(f"{path} was written by an earlier version of scraper (its records have no "
                                 "content_hash): finish it with that version, or start over with --overwrite")
            truncate_torn(path, good_end)
            used, resumed_links = await _rebuild(records, frontier, tally, c)

        if archive is not None:
            archive.open(append=resume)  # a torn last member is cut off before anything is appended
        resumed = tally.pages
        records = RecordFormat(fmt, self.record_keys)
        try:
            await frontier.open_output(path, records.header)  # the frontier is the file's one writer
        except OutputError:
            if archive is not None:
                await archive.close()
            raise
        run = _Run(self, None, frontier, self._parse_pool(), tally=tally, budget_used=used, records=records,
                   progress=progress, archive=archive, since=since)
        if resumed_links:
            await frontier.add_links(resumed_links)
        # from here to execute() nothing awaits: stop() finds the run started
        self._run = run
        if self.interrupted_by is not None:  # a signal while the output was read back
            run.stopping = True
            frontier.stop()
        error: BaseException | None = None
        try:
            # stats.json is there from the start: a killed run leaves one, and after a full disk
            # the last one is written in the room this one leaves
            _write_stats(run.stats(interrupted=True), stats_path)
            await run.execute(seeds)
        except BaseException as e:
            error = e
            raise
        finally:
            self._run = None  # the frontier has written the output's last records (its close ends execute)
            archive_error: OutputError | None = None
            try:
                if archive is not None:
                    await archive.close()
            except OutputError as e:
                archive_error = e
            if isinstance(error, OutputError) and path.exists():
                # a full disk: count the records the file holds, not those that were lost
                run.tally = Tally()
                for record in iter_records(path):
                    run.tally.add_record(record)
                run.run_pages = max(0, run.tally.pages - resumed)
            failed = error is not None or archive_error is not None
            stats = run.stats(interrupted=self.interrupted_by is not None or failed)
            try:
                _write_stats(stats, stats_path)
            except OutputError:
                if error is None:
                    raise
        if archive_error is not None:
            raise archive_error
        if report:
            await _write_report(out_dir)
        return stats

    async def reparse(
        self,
        src: str | os.PathLike[str],
        dst: str | os.PathLike[str],
        *,
        resume: bool = False,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> Stats:
        """Parse a finished crawl again from its archive (`[output] warc`), sending no request.

        For every record of the output folder `src` (every shard, JSONL or CSV),
        write one record to `dst` (in `[output].format`, with stats.json), its
        title, description, links, fields, text and markdown parsed again with
        this Scraper's `[parse]` settings and `extract`; see `scraper.reextract`.
        """
        from .reextract import reextract

        self.interrupted_by = None
        self._require_extras()
        return await reextract(
            self, self._parse_pool(), src, dst, resume=resume, overwrite=overwrite, progress=progress
        )

    async def _read_since(self, output_dir: Path | None = None) -> EarlierCrawl | None:
        """The index of `[crawl] since`'s earlier crawl, read off the event loop; None without one."""
        if not self.config.crawl.since:
            return None
        self._reading_since.clear()
        if self.interrupted_by is not None:
            self._reading_since.set()
        return await asyncio.to_thread(
            EarlierCrawl.read, self.config.crawl.since, output_dir=output_dir, stop=self._reading_since
        )

    async def _run_to_stdout(
        self, source: str | os.PathLike[str] | Iterable[str] | AsyncIterable[str], *, resume: bool,
        progress: Progress | None,
    ) -> Stats:
        """`run` with `--output -`: the records go to stdout, and no file is written.

        A reader that goes away (`| head -1`) ends the run as an interrupt would, but
        quietly: the stats say `interrupted`, nothing is raised.
        """
        c = self.config
        if resume:
            raise UsageError("--resume needs an output folder: with --output - there is nothing to resume")
        if c.crawl.since:
            raise UsageError("--since needs an output folder: it cannot be used with --output -")
        if c.frontier.backend != "memory":
            raise UsageError(f'--output - needs [frontier] backend = "memory": with "{c.frontier.backend}" '
                             "each worker writes its own shard to a folder")
        seeds = open_source(source)
        sink = StdoutSink(c.output.format, self.record_keys)
        await sink.open()
        # no `sink` for the run: like crawl(), it writes no file (no html/, no archive)
        frontier = self._new_frontier()
        run = _Run(self, sink.write, frontier, self._parse_pool(), progress=progress)
        self._run = run
        if self.interrupted_by is not None:  # a signal while stdout was opened
            run.stopping = True
            frontier.stop()
        closed = False
        try:
            await run.execute(seeds)
        except OutputClosed:
            closed = True
        finally:
            self._run = None
            try:
                await sink.close()
            except OutputClosed:
                closed = True
        return run.stats(interrupted=closed or self.interrupted_by is not None)


def _write_stats(stats: Stats, path: Path) -> None:
    """Write stats.json; on a full disk, into the room its previous version leaves."""
    try:
        try:
            stats.write(path)
        except OSError as e:
            if e.errno != errno.ENOSPC or not path.exists():
                raise
            path.with_name(path.name + ".tmp").unlink(missing_ok=True)
            path.unlink()
            stats.write(path)
    except OSError as e:
        raise OutputError(f"cannot write {path}: {e.strerror or e}") from None


async def _write_report(out_dir: Path) -> None:
    """`[output] report`: DIR/report.html, also after an interrupt.

    On a thread, so the event loop still hears a second Ctrl-C (which quits at once).
    An output without records gets no report.
    """
    from .report import write_report

    try:
        await asyncio.to_thread(write_report, out_dir)
    except UsageError:
        pass


class _Run:
    """One execution of the pipeline."""

    def __init__(
        self,
        scraper: Scraper,
        emit: Callable[[Page], Awaitable[None]] | None,
        frontier: Frontier,
        pool: ParsePool,
        *,
        tally: Tally | None = None,
        budget_used: int = 0,
        records: RecordFormat | None = None,
        progress: Progress | None = None,
        archive: Archive | None = None,
        since: EarlierCrawl | None = None,
    ) -> None:
        self.s = scraper
        self.archive = archive
        self.c = scraper.config
        self._emit_to = emit
        self.frontier = frontier
        self.pool = pool
        self.tally = tally or Tally()
        self.run_pages = 0
        self._budget_spent = False
        frontier.count_claimed(budget_used)
        self.records = records  # the output's lines; None: `crawl()`, which writes no files
        self.limiter = frontier.limiter(self.c.fetch.concurrency, self.c.fetch.per_host, self.c.fetch.delay)
        self._seeding: asyncio.Task[None] | None = None  # see _produce
        self.progress = progress
        self.since = since
        self.link_filter = LinkFilter(self.c.crawl.same_host, self.c.crawl.allow, self.c.crawl.deny)

        self.stopping = False
        self._fatal: BaseException | None = None
        self._lags: deque[float] = deque(maxlen=50_000)
        self._started = time.monotonic()
        self._started_at = now_iso()
        self._capacity = asyncio.Event()  # the dispatcher may take more URLs
        self._fetch_tasks: set[asyncio.Task[None]] = set()
        self._busy: set[asyncio.Task[None]] = set()  # fetch tasks with a request under way
        self.renderer: Renderer | None = None  # [render] mode other than "never"

    # --- lifecycle ---------------------------------------------------------------

    async def execute(self, seeds: AsyncIterator[tuple[int, bytes | str]]) -> None:
        c = self.c
        self.queue: asyncio.Queue[Item] = asyncio.Queue(maxsize=self.s.queue_size)
        workers = self.s.workers
        self.parse_q: asyncio.Queue[Any] = asyncio.Queue(maxsize=c.parse.batch_size * (2 * workers + 1))
        self._live = 0
        self._host_live: dict[str, int] = defaultdict(int)
        self._parked: dict[str, deque[Item]] = defaultdict(deque)
        self._parked_total = 0
        self._max_live = max(64, 4 * c.fetch.concurrency)
        self._host_cap = 2 * c.fetch.per_host
        limit = c.crawl.max_pages
        if limit > 0 and self.frontier.claimed >= limit:
            self._budget_spent = True
            self.stopping = True
            self.frontier.stop()
        browser = None
        if c.render.mode != "never":
            browser = self.s._browser or await find_browser(c.render)
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
        u = URL(item.url)
        if item.allow_private is None:
            origin = URL(item.referrer).host if item.referrer else u.host
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
        headers = earlier.headers() if earlier is not None else None
        if not headers:
            return await self.fetcher.fetch(item.url, allow_private=item.allow_private)
        at = item.url
        if earlier is not None and earlier.redirected:  # the validators are those of the URL it redirected to
            record = await asyncio.to_thread(self.since.record, earlier)  # type: ignore[union-attr]
            at = record.get("final_url") if record is not None else None
        if not at:
            return await self.fetcher.fetch(item.url, allow_private=item.allow_private)
        return await self.fetcher.fetch(item.url, allow_private=item.allow_private, headers=headers, headers_at=at)

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
        workers = self.s.workers
        in_flight = asyncio.Semaphore(2 * workers)
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
        want_page = self.s.extract is not None
        jobs = [
            ParseJob(
                final_url=result.final_url or item.url,
                content_type=result.content_type or "",
                body=result.body or b"",
                follow=item.depth < max_depth,
                sitemap=sitemap,
                page=self._fetched(item, result) if want_page else None,
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
            depth = item.depth + 1
            follow = [
                Item(url=links[i], depth=depth, referrer=item.url, allow_private=item.allow_private)
                for i in out.follow
            ]
        await self._record(item, page, follow)


# --- resume ----------------------------------------------------------------------------


async def _rebuild(
    records: list[dict[str, Any]], frontier: Frontier, tally: Tally, c: Config
) -> tuple[int, list[Item]]:
    """Rebuild a crawl's state from its records: seen set, counts, and the pending links."""
    used = 0
    for record in records:
        await frontier.mark_seen(record["url"])
        tally.add_record(record)
        error = record.get("error")
        if not (isinstance(error, dict) and error.get("kind") in ("invalid_url", "robots")):
            used += 1
    link_filter = LinkFilter(c.crawl.same_host, c.crawl.allow, c.crawl.deny)
    pending: list[Item] = []
    for record in records:
        links = record.get("links") or []
        if not links:
            continue
        depth = record.get("depth") or 0
        url = record["url"]
        if depth == 0 and record.get("referrer") is None and is_sitemap_url(url):
            pending.extend(Item(url=link, depth=0, referrer=None, allow_private=None) for link in links)  # type: ignore[arg-type]
            continue
        if depth >= c.crawl.depth:
            continue
        page_host = host_key(record.get("final_url") or url)
        for link in links:
            if link_filter.follows(link, host_key(link), page_host) and not await frontier.is_seen(link):
                pending.append(Item(url=link, depth=depth + 1, referrer=url, allow_private=None))  # type: ignore[arg-type]
    return used, pending


# --- helpers ------------------------------------------------------------------------------


def _columns_differ(path: Path, header: list[str], expected: list[str]) -> str:
    """Why a CSV output cannot be resumed with this configuration's columns."""
    missing = [k for k in expected if k not in header]
    extra = [k for k in header if k not in expected]
    settings = {"text": "[parse].text", "markdown": "[parse].markdown", "rendered": "[render].mode"}
    for key in missing + extra:
        if key in settings:
            return f"{path} was written with another {settings[key]} setting: resume it with the same one"
    return (f"{path} has other columns than this version writes ({', '.join(missing + extra) or 'their order'}): "
            "finish it with the version that wrote it, or start over with --overwrite")


def _host(url: str) -> str:
    """The host of a normalised URL (`scheme://[userinfo@]host[:port]/...`), lower-cased already.

    The 304 path filters its links here, in the event loop, where building a
    yarl URL per link (as the parse workers do) would cost ten times more.
    """
    netloc = url.split("/", 3)[2].rpartition("@")[2] if url.count("/") >= 2 else ""
    if netloc.startswith("["):
        return netloc[1 : netloc.find("]")]
    return netloc.partition(":")[0]


def scrape(
    urls: Iterable[str], config: Config | None = None, *, extract: Extract | None = None, **overrides: Any
) -> list[Page]:
    """Crawl `urls` and return every Page: a blocking convenience for scripts and notebooks.

    `extract` is as for `Scraper`; `overrides` take the CLI's flag names
    (`concurrency=64`, `depth=1`). Inside a running event loop (a notebook, an
    async web handler) the crawl runs on a thread of its own, with its own loop.
    """
    config = (config or Config()).replace(**overrides) if overrides else (config or Config())
    urls = list(urls)
    if extract is not None:
        check_sendable(extract)  # here, in the caller's thread, not from inside the crawl

    async def collect() -> list[Page]:
        async with Scraper(config, extract=extract) as s:
            return [page async for page in s.crawl(urls)]

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(collect())
    # inside a running loop (a notebook): run the crawl on a thread of its own
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["pages"] = asyncio.run(collect())
        except BaseException as e:  # handed to the caller below
            box["error"] = e

    thread = threading.Thread(target=target, name="scraper.scrape")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["pages"]

