"""Re-extraction: a finished crawl's records parsed again from its archive, without the network.

`Scraper.reparse(src, dst)` (and `python -m scraper reparse`) reads SRC's records
(every shard, JSONL or CSV) as a stream, and writes one record per record to
DST in the configured format, with the crawl's own sink, stats and progress:

* One streaming pass over SRC's archives (`archive.index_archives`) maps each
  target URI (a 64-bit hash) to the offsets of its 2xx responses, and of the
  DOMs the browser built (`[render]`). Nothing else of the archive is kept in
  memory.
* An ok HTML record whose response is archived has its body read back (in a
  thread, a batch at a time, by offset), checked against the record's
  `content_hash` (the archive may hold older copies: retries, a page fetched
  again after a kill), and parsed in the crawl's own parse processes, with the
  crawl's own `Parser` and `ParseJob`. A rendered record is parsed from its
  archived DOM, as the crawl parsed it. So the crawl's config reproduces the
  crawl's parsed keys exactly.
* Title, description, links, fields, text and markdown come from the new
  parse; every other key is SRC's. A record that is not ok, not HTML, or whose
  body is not in the archive (a 304 of a recrawl) is copied; a key the new
  config adds is null in it.

Batches go to the pool in a window of twice the workers (reading the next
batch's bodies overlaps parsing the last ones), and their records are written
in SRC's order. `--resume` skips the URLs already in DST.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .archive import ArchiveIndex, archive_paths, find_body, index_archives, require_warcio
from .errors import OutputError, UsageError
from .folder import OutputFolder
from .page import Page, now_iso
from .parse import Parsed, ParseJob, is_html
from .sinks import Sink, columns, csv_header, iter_records, output_files, read_back, truncate_torn
from .stats import Stats, Tally
from .urls import is_sitemap_url

if TYPE_CHECKING:
    from .engine import Progress
    from .pipeline import Scraper
    from .pool import ParsePool

__all__ = ["reextract"]

_HTML_TYPES = ("text/html", "application/xhtml+xml")
#: what the parse overwrites; every other key is copied from SRC's record
_PARSED_KEYS = ("title", "description", "links", "fields", "text", "markdown")


@dataclass(frozen=True, slots=True)
class _Job:
    """One record to parse again: where its response may be, and how to check it is the one."""

    candidates: tuple[tuple[int, int], ...]  # (archive number, offset), oldest first
    content_hash: str | None
    final_url: str
    sitemap: bool
    page: Page | None  # only when an `extract` function wants it


def _read_jobs(archives: list[Path], jobs: list[_Job]) -> list[ParseJob | None]:
    """Each job's archived response as the crawl's ParseJob; None: not found, or not HTML (copy the record)."""
    out: list[ParseJob | None] = []
    for job in jobs:
        archived = find_body(archives, job.candidates, job.content_hash)
        media = archived.content_type.split(";", 1)[0].strip().lower() or None if archived else None
        if archived is None or not archived.body or not (job.sitemap or is_html(media, archived.body)):
            out.append(None)
            continue
        out.append(ParseJob(final_url=job.final_url, content_type=archived.content_type, body=archived.body,
                            follow=False, sitemap=job.sitemap, page=job.page))
    return out


async def _parse_archived(pool: ParsePool, archives: list[Path], jobs: list[_Job]) -> list[Parsed | None]:
    """Read the jobs' bodies (in a thread), parse them in the pool; None for a record to copy."""
    ready = await asyncio.to_thread(_read_jobs, archives, jobs)
    parsed = iter(await pool.parse([job for job in ready if job is not None]))
    return [None if job is None else next(parsed) for job in ready]


async def reextract(
    scraper: Scraper,
    pool: ParsePool,
    src: str | Path,
    dst: str | Path,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> Stats:
    """Write DST's records from SRC's records and archive; see the module docstring."""
    started = time.monotonic(), now_iso()  # the run's time includes indexing the archive
    c = scraper.config
    src, dst = Path(src), Path(dst)
    if not src.is_dir():
        raise UsageError(f"{src}: no such folder (SRC_DIR must be a crawl's output folder)")
    inputs = output_files(src)
    if not inputs:
        raise UsageError(f"{src} holds no crawl output (pages.jsonl or pages.csv)")
    archives = archive_paths(src)
    if not archives:
        raise UsageError(f"{src} has no archive (pages.warc.gz): reparse needs a crawl run with [output] warc = true")
    require_warcio()
    if dst.resolve() == src.resolve():
        raise UsageError(f"the output folder {dst} is SRC_DIR: reparse writes to another folder")
    folder = OutputFolder(dataclasses.replace(c.output, dir=str(dst)), None)
    folder.check(resume=resume, overwrite=overwrite, job="reparse")
    folder.prepare(overwrite=overwrite)
    fmt, path, keys = folder.format, folder.pages, scraper.record_keys

    tally = Tally()
    done: set[str] = set()
    if resume and path.exists():
        if fmt == "csv" and csv_header(path) not in (None, columns(keys)):
            raise UsageError(f"{path} was written with other [parse] settings (its columns differ): "
                             "resume it with the same config, or start over with --overwrite")
        records, good_end = await asyncio.to_thread(read_back, path, fmt)
        truncate_torn(path, good_end)
        for record in records:
            done.add(record["url"])
            tally.add_record(record)
        del records

    loop = asyncio.get_running_loop()
    index, total = await asyncio.to_thread(_prepare, archives, inputs)
    warm = loop.run_in_executor(None, pool.start)
    sink = Sink(path, fmt, keys)
    await sink.open()
    run = _Reparse(scraper, pool, sink, tally, index, archives, progress, started)
    run.known = max(total, tally.pages)
    error: BaseException | None = None
    try:
        await warm
        await run.execute(r for f in inputs for r in iter_records(f) if r["url"] not in done)
    except BaseException as e:
        error = e
        raise
    finally:
        try:
            await sink.close()
        except OutputError:
            if error is None:
                raise
        stats = run.stats(interrupted=scraper.interrupted_by is not None or error is not None)
        try:
            folder.write_stats(stats)
        except OutputError:
            if error is None:
                raise
    return stats


def _prepare(archives: list[Path], inputs: list[Path]) -> tuple[ArchiveIndex, int]:
    """The archive's index, and the number of SRC's records (for the progress display)."""
    index = index_archives(archives)
    return index, sum(_count(f) for f in inputs)


def _count(path: Path) -> int:
    """About how many records a file holds: its lines for JSONL (no decoding), its rows for CSV."""
    if path.suffix != ".jsonl":
        return sum(1 for _ in iter_records(path))
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


#: SRC's records of one batch, the positions of those sent to the pool, and the pool's answer
_Batch = tuple[list[dict[str, Any]], list[int], "asyncio.Future[Any] | None"]


class _Reparse:
    """One re-extraction: batches out to the pool, records back in SRC's order."""

    def __init__(
        self,
        scraper: Scraper,
        pool: ParsePool,
        sink: Sink,
        tally: Tally,
        index: ArchiveIndex,
        archives: list[Path],
        progress: Progress | None,
        started: tuple[float, str],
    ) -> None:
        self.s = scraper
        self.pool = pool
        self.c = scraper.config
        self.sink = sink
        self.tally = tally
        self.index = index
        self.archives = archives
        self.progress = progress
        self.known = 0
        self.run_pages = 0
        self.errors = 0
        self._started, self._started_at = started

    async def execute(self, records: Any) -> None:
        window: deque[_Batch] = deque()
        limit = 2 * self.s.workers
        batch_size = self.c.parse.batch_size
        if self.progress is not None:
            self.progress.start(self.counts)
        try:
            batch: list[dict[str, Any]] = []
            for record in records:
                if self.s.interrupted_by is not None:
                    break
                batch.append(record)
                if len(batch) >= batch_size:
                    window.append(self._submit(batch))
                    batch = []
                    while len(window) >= limit:
                        await self._finish(*window.popleft())
                    await asyncio.sleep(0)  # let the progress display and signal handlers run
            if batch and self.s.interrupted_by is None:
                window.append(self._submit(batch))
            while window:
                await self._finish(*window.popleft())
        finally:
            for _, _, future in window:
                if future is not None:
                    future.cancel()
            if self.progress is not None:
                self.progress.stop()

    def _submit(self, batch: list[dict[str, Any]]) -> _Batch:
        jobs: list[_Job] = []
        where: list[int] = []
        want_page = self.s.extract is not None
        for i, record in enumerate(batch):
            if not record.get("ok") or not record.get("bytes"):
                continue
            media = record.get("content_type")
            if media is not None and media not in _HTML_TYPES:
                continue  # not HTML: copied as it is
            final_url = record.get("final_url") or record["url"]
            rendered = bool(record.get("rendered"))  # the crawl parsed the DOM the browser built
            index = self.index.renditions if rendered else self.index.responses
            candidates = index.get(final_url)
            if not candidates:
                continue
            jobs.append(_Job(
                candidates=candidates,
                content_hash=None if rendered else record.get("content_hash"),
                final_url=record.get("final_url") or record["url"],
                sitemap=_is_sitemap(record),
                page=_unparsed(record) if want_page else None,
            ))
            where.append(i)
        future = asyncio.ensure_future(_parse_archived(self.pool, self.archives, jobs)) if jobs else None
        return batch, where, future

    async def _finish(
        self, batch: list[dict[str, Any]], where: list[int], future: asyncio.Future[Any] | None
    ) -> None:
        outputs: dict[int, dict[str, Any] | None] = {}
        if future is not None:
            outputs = dict(zip(where, await future, strict=True))
        for i, record in enumerate(batch):
            out = outputs.get(i)
            page = self._copied(record) if out is None else self._reparsed(record, out)
            await self.sink.write(page)
            self.run_pages += 1
            kind = page.error.kind if page.error else None
            if kind is not None:
                self.errors += 1
            self.tally.add(page.status, page.ok, page.bytes, kind)
            if self.progress is not None:
                self.progress.page(page)

    def _copied(self, record: dict[str, Any]) -> Page:
        page = Page.from_dict(record)
        page.with_text, page.with_markdown = self.c.parse.text, self.c.parse.markdown
        return page

    def _reparsed(self, record: dict[str, Any], out: Parsed) -> Page:
        page = self._copied(record)
        page.title, page.description = out.title, out.description
        page.links, page.fields = out.links, out.fields
        page.text = out.text if self.c.parse.text else None
        page.markdown = out.markdown if self.c.parse.markdown else None
        if out.error is not None:
            page.error = out.error
        elif page.error is not None and page.error.kind == "parse":
            page.error = None  # the new parse succeeded
        return page

    def counts(self) -> tuple[int, int, int]:
        return self.tally.pages, max(self.known, self.tally.pages), self.errors

    def stats(self, interrupted: bool) -> Stats:
        elapsed = time.monotonic() - self._started
        return self.tally.stats(
            elapsed=elapsed,
            run_pages=self.run_pages,
            started_at=self._started_at,
            finished_at=now_iso(),
            interrupted=interrupted,
        )


def _is_sitemap(record: dict[str, Any]) -> bool:
    return record.get("depth") == 0 and record.get("referrer") is None and is_sitemap_url(record["url"])


def _unparsed(record: dict[str, Any]) -> Page:
    """The Page an `extract` function sees in a crawl: the record before its parse."""
    page = Page.from_dict(record)
    page.title = page.description = page.text = page.markdown = None
    page.links, page.fields = [], {}
    return page
