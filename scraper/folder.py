"""The output folder's rules: which files a run writes, when it may, and how `--resume` reads them back.

`Scraper.run` asks `OutputFolder` in a fixed order, so that a run that cannot
go ahead says so before it writes anything, and before any request:

1. `new_archive` (`[output] warc`: warcio must be there), then, after the
   seeds are opened and the browser found, `check`: `--resume` and
   `--overwrite` exclude each other; without either, an existing output (in
   either format) is not written over; a resume in the other format is refused.
2. `prepare`: the folder is made; `--overwrite` removes the earlier crawl's
   records, stats, archive, report.html and html/.
3. `read_back` (`--resume`): the records must carry this configuration's
   columns and the recrawl keys; a torn last line is cut off; the crawl's
   seen set, counts and pending links are rebuilt from the records alone
   (`rebuild`).
4. `open`: the archive, then the records' file, whose one writer is the
   frontier.
5. `write_stats` before and after the run (on a full disk, in the room the
   previous stats.json leaves), `count_records` when the disk filled up, and
   `write_report` (`[output] report`).

A worker of a shared (Redis) crawl has a shard of its own: pages-SHARD.*,
stats-SHARD.json and its own archive.
"""

from __future__ import annotations

import asyncio
import errno
import shutil
from pathlib import Path
from typing import Any

from .archive import Archive, require_warcio, warc_path
from .config import CrawlConfig, OutputConfig
from .errors import OutputError, OutputExistsError, UsageError
from .frontier import Frontier, Item
from .sinks import columns, csv_header, iter_records, read_back, sink_path, truncate_torn
from .stats import Stats, Tally
from .urls import LinkFilter, host_key, is_sitemap_url

__all__ = ["OutputFolder", "rebuild"]

#: keys every record has since recrawls exist: an output without them cannot be resumed
_RECRAWL_KEYS = frozenset(("etag", "last_modified", "content_hash", "changed"))


class OutputFolder:
    """One run's files in `[output] dir`: the records (in `[output] format`), stats.json, the archive."""

    def __init__(self, output: OutputConfig, shard: str | None) -> None:
        self.output = output
        self.dir = Path(output.dir)
        self.format = output.format
        self.other_format = "csv" if output.format == "jsonl" else "jsonl"
        self.pages = sink_path(self.dir, self.format, shard)
        self.other = sink_path(self.dir, self.other_format, shard)  # the same crawl in the other format
        self.stats = self.dir / ("stats.json" if shard is None else f"stats-{shard}.json")
        self.warc = warc_path(self.dir, shard)

    def new_archive(self) -> Archive | None:
        """The run's archive with `[output] warc` (UsageError when warcio is missing), else None."""
        if not self.output.warc:
            return None
        archive = Archive(self.warc)
        require_warcio()
        return archive

    def check(self, *, resume: bool, overwrite: bool, job: str = "crawl") -> None:
        """Refuse a run that would lose or mix up an earlier `job`'s records, before anything is written."""
        if resume and overwrite:
            raise UsageError("--resume and --overwrite exclude each other")
        if not resume and not overwrite:
            for p in (self.pages, self.other):
                if p.exists():
                    raise OutputExistsError(
                        f"{p} already exists: use --resume to continue that {job}, or --overwrite to start over"
                    )
        if resume and self.other.exists() and not self.pages.exists():
            raise UsageError(f"{self.other} holds the {job} to resume: resume it with --format {self.other_format}")

    def prepare(self, *, overwrite: bool) -> None:
        """Make the folder; with `overwrite`, remove the earlier crawl's files (this shard's)."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            if overwrite:
                # report.html too: left behind, it would describe the crawl just replaced
                for p in (self.pages, self.other, self.stats, self.warc, self.dir / "report.html"):
                    p.unlink(missing_ok=True)
                shutil.rmtree(self.dir / "html", ignore_errors=True)
        except OSError as e:
            raise OutputError(f"cannot prepare {self.dir}: {e.strerror or e}") from None

    async def read_back(
        self, keys: tuple[str, ...], frontier: Frontier, tally: Tally, crawl: CrawlConfig
    ) -> tuple[int, list[Item]]:
        """`--resume`: the crawl so far, into `frontier` and `tally`; (fetches used, links to add).

        UsageError when the records cannot be continued with these `keys` (the
        record keys, in output order). Nothing to resume: (0, []).
        """
        if not self.pages.exists():
            return 0, []
        expected = columns(keys)
        if self.format == "csv" and (header := csv_header(self.pages)) not in (None, expected):
            raise UsageError(_columns_differ(self.pages, header, expected))
        records, good_end = read_back(self.pages, self.format)
        if any(not _RECRAWL_KEYS.issubset(record) for record in records):
            raise UsageError(f"{self.pages} was written by an earlier version of scraper (its records have no "
                             "content_hash): finish it with that version, or start over with --overwrite")
        truncate_torn(self.pages, good_end)
        return await rebuild(records, frontier, tally, crawl)

    async def open(self, frontier: Frontier, header: str | None, archive: Archive | None, *, append: bool) -> None:
        """Open the archive (appending on a resume), then the records' file through its one writer, the frontier."""
        if archive is not None:
            archive.open(append=append)  # a torn last member is cut off before anything is appended
        try:
            await frontier.open_output(self.pages, header)
        except OutputError:
            if archive is not None:
                await archive.close()
            raise

    def write_stats(self, stats: Stats) -> None:
        """Write stats.json; on a full disk, into the room its previous version leaves."""
        path = self.stats
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

    def count_records(self) -> Tally | None:
        """The counts of the records the file holds (after a full disk: not those that were lost); None: no file."""
        if not self.pages.exists():
            return None
        tally = Tally()
        for record in iter_records(self.pages):
            tally.add_record(record)
        return tally

    async def write_report(self) -> None:
        """`[output] report`: DIR/report.html, also after an interrupt.

        On a thread, so the event loop still hears a second Ctrl-C (which quits at once).
        An output without records gets no report.
        """
        from .report import write_report

        try:
            await asyncio.to_thread(write_report, self.dir)
        except UsageError:
            pass


async def rebuild(
    records: list[dict[str, Any]], frontier: Frontier, tally: Tally, crawl: CrawlConfig
) -> tuple[int, list[Item]]:
    """Rebuild a crawl's state from its records: seen set, counts, and the pending links.

    Returns the page fetches the records used (those of `max_pages`: every
    record but invalid_url and robots ones) and the links still to crawl.
    """
    used = 0
    for record in records:
        await frontier.mark_seen(record["url"])
        tally.add_record(record)
        error = record.get("error")
        # a robots record with attempts was a fetch whose redirect robots.txt refused: it used one
        unrequested = isinstance(error, dict) and error.get("kind") in ("invalid_url", "robots")
        if not (unrequested and not record.get("attempts")):
            used += 1
    link_filter = LinkFilter(crawl.same_host, crawl.allow, crawl.deny)
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
        if depth >= crawl.depth:
            continue
        page_host = host_key(record.get("final_url") or url)
        for link in links:
            if link_filter.follows(link, host_key(link), page_host) and not await frontier.is_seen(link):
                pending.append(Item(url=link, depth=depth + 1, referrer=url, allow_private=None))  # type: ignore[arg-type]
    return used, pending


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
