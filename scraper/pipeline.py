"""Scraper: the public face of a crawl (`crawl`, `run`, `reparse`, and `scrape`).

A `Scraper` holds what outlives one run: the config, the user's `extract`, the
parse processes (made on first use, kept until `close`) and the Chromium found
for `[render]`. Each run builds its frontier and an `engine.Engine`, hands the
engine every part it uses, and keeps it only so that `interrupt` can stop it:

* `crawl` yields the engine's Pages and writes no file;
* `run` applies the output folder's rules (overwrite, resume, the other
  format's file, stats.json, the report) around the engine, whose frontier is
  the one writer of the records' file;
* `--output -` (`run` with `[output] dir = "-"`) prints each record instead.

How the engine's parts meet (producer, dispatcher, batches, records) is told
in `scraper.engine`.
"""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from pathlib import Path
from typing import Any

from .archive import Archive, require_warcio, warc_path
from .config import Config
from .engine import Engine, Progress
from .errors import OutputError, OutputExistsError, UsageError
from .frontier import Frontier, Item, MemoryFrontier
from .page import Page, record_keys
from .parse import Extract, Parser
from .pool import ParsePool, check_sendable
from .render import find_browser
from .since import EarlierCrawl
from .sinks import RecordFormat, columns, csv_header, iter_records, read_back, sink_path, truncate_torn
from .sources import numbered, open_source
from .stats import Stats, Tally
from .stdout import OutputClosed, StdoutSink
from .urls import LinkFilter, host_key, is_sitemap_url

__all__ = ["GRACE_S", "Scraper", "scrape"]

#: seconds that requests in flight get to finish after SIGINT/SIGTERM
GRACE_S = 5.0
_END: Any = object()
#: keys every record has since recrawls exist: an output without them cannot be resumed
_RECRAWL_KEYS = frozenset(("etag", "last_modified", "content_hash", "changed"))


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
        """`engine` is the run that `interrupt` stops; one that came already stops it before it starts."""
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
        run = self._engine(frontier, tally=tally, budget_used=used, records=records, progress=progress,
                           archive=archive, since=since)
        if resumed_links:
            await frontier.add_links(resumed_links)
        # from here to execute() nothing awaits: stop() finds the run started
        self._started(run)  # a signal while the output was read back stops it
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
                written = Tally()
                for record in iter_records(path):
                    written.add_record(record)
                run.count_written(written, resumed)
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

