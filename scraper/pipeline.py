"""Scraper: the public face of a crawl (`crawl`, `run`, `reparse`, and `scrape`).

A `Scraper` holds what outlives one run: the config, the user's `extract`, the
parse processes (made on first use, kept until `close`) and the Chromium found
for `[render]`. Each run builds its frontier and an `engine.Engine`, hands the
engine every part it uses, and keeps it only so that `interrupt` can stop it:

* `crawl` yields the engine's Pages and writes no file;
* `run` applies the output folder's rules (`folder.OutputFolder`: overwrite,
  resume, the other format's file, stats.json, the report) around the engine,
  whose frontier is the one writer of the records' file;
* `--output -` (`run` with `[output] dir = "-"`) prints each record instead.

How the engine's parts meet (producer, dispatcher, batches, records) is told
in `scraper.engine`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from .archive import Archive
from .config import Config
from .engine import Engine, Progress
from .errors import OutputError, UsageError
from .folder import OutputFolder
from .frontier import Frontier, MemoryFrontier
from .page import Page, record_keys
from .parse import Extract, Parser
from .pool import ParsePool, check_sendable
from .render import find_browser
from .since import EarlierCrawl
from .sinks import RecordFormat
from .sources import numbered, open_source
from .stats import Stats, Tally
from .stdout import OutputClosed, StdoutSink
from .urls import LinkFilter

__all__ = ["GRACE_S", "Scraper", "scrape"]

#: seconds that requests in flight get to finish after SIGINT/SIGTERM
GRACE_S = 5.0

_END: Any = object()


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
        self._run: Engine | None = None
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

    def _engine(self, frontier: Frontier, **parts: Any) -> Engine:
        """An Engine for one run, with this Scraper's config, parse pool and sizes, and `parts`."""
        return Engine(self.config, frontier, self._parse_pool(), workers=self.workers, queue_size=self.queue_size,
                      page_to_parse=self.extract is not None, browser=self._browser, **parts)

    def _started(self, engine: Engine) -> None:
        """From here `interrupt` stops `engine`; a signal that came while the run was set up stops it now."""
        self._run = engine
        if self.interrupted_by is not None:
            engine.stop_early()

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
        run = self._engine(self._new_frontier(), emit=emit, since=since)
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
        Every check that can refuse the run comes before the first file is written
        (see `folder` for the folder's rules, in their order).
        """
        self.interrupted_by = None  # a Scraper may run again after an interrupted run
        self._require_extras()
        c = self.config
        if c.output.dir == "-":
            return await self._run_to_stdout(source, resume=resume, progress=progress)
        frontier = self._new_frontier()  # first: it names the shard (and Redis is checked before any file)
        folder = OutputFolder(c.output, frontier.shard)
        archive = folder.new_archive()
        seeds = open_source(source)  # fails early on a missing file
        await self._find_browser()
        folder.check(resume=resume, overwrite=overwrite)
        since = await self._read_since(folder.dir)  # before anything is written: its errors leave all as it was
        folder.prepare(overwrite=overwrite)
        tally = Tally()
        used, links = await folder.read_back(self.record_keys, frontier, tally, c.crawl) if resume else (0, [])
        resumed = tally.pages
        records = RecordFormat(c.output.format, self.record_keys)
        await folder.open(frontier, records.header, archive, append=resume)
        engine = self._engine(frontier, tally=tally, budget_used=used, records=records, progress=progress,
                              archive=archive, since=since)
        if links:
            await frontier.add_links(links)
        # from here to execute() nothing awaits: stop() finds the run started
        self._started(engine)  # a signal while the output was read back stops it
        stats = await self._execute_in(folder, engine, seeds, archive, resumed=resumed)
        if c.output.report:
            await folder.write_report()
        return stats

    async def _find_browser(self) -> None:
        """With `[render]`: the Chromium to use; no Playwright or no Chromium: exit 2 before any file or request."""
        if self.config.render.mode != "never":
            self._browser = await find_browser(self.config.render)

    async def _execute_in(
        self, folder: OutputFolder, engine: Engine, seeds: AsyncIterator[tuple[int, bytes | str]],
        archive: Archive | None, *, resumed: int,
    ) -> Stats:
        """Execute `engine`, with stats.json written before and after and the archive closed, whatever happens.

        `resumed`: the records the output held before this run.
        """
        error: BaseException | None = None
        try:
            # stats.json is there from the start: a killed run leaves one, and after a full disk
            # the last one is written in the room this one leaves
            folder.write_stats(engine.stats(interrupted=True))
            await engine.execute(seeds)
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
            if isinstance(error, OutputError) and (written := folder.count_records()) is not None:
                engine.count_written(written, resumed)  # a full disk: the records the file holds, not those lost
            failed = error is not None or archive_error is not None
            stats = engine.stats(interrupted=self.interrupted_by is not None or failed)
            try:
                folder.write_stats(stats)
            except OutputError:
                if error is None:
                    raise
        if archive_error is not None:
            raise archive_error
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
        run = self._engine(frontier, emit=sink.write, progress=progress)
        self._started(run)  # a signal while stdout was opened stops it
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


def scrape(
    urls: Iterable[str], config: Config | None = None, *, extract: Extract | None = None, **overrides: Any
) -> list[Page]:
    """Crawl `urls` and return every Page: a blocking convenience for scripts and notebooks.

    `extract` is as for `Scraper`; `overrides` take the CLI's flag names
    (`concurrency=64`, `depth=1`). Inside a running event loop (a notebook, an
    async web handler) the crawl runs on a thread of its own, with its own loop.
    """
    if isinstance(urls, str):  # list("https://...") would be one invalid URL per character
        raise TypeError("scrape() takes an iterable of URLs, not one string: wrap it in a list")
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

