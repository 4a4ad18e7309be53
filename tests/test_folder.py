"""The output folder's rules (scraper.folder), on real files in tmp_path: no server, no request."""

from __future__ import annotations

import pytest

from scraper.config import CrawlConfig, OutputConfig
from scraper.errors import OutputExistsError, UsageError
from scraper.folder import OutputFolder
from scraper.frontier import MemoryFrontier
from scraper.page import Page, PageError, record_keys
from scraper.sinks import RecordFormat
from scraper.stats import Tally


def folder(tmp_path, fmt: str = "jsonl", shard: str | None = None) -> OutputFolder:
    return OutputFolder(OutputConfig(dir=str(tmp_path / "out"), format=fmt), shard)


def test_a_shard_has_files_of_its_own(tmp_path):
    f = folder(tmp_path, "csv", shard="w1")
    assert (f.pages.name, f.other.name, f.stats.name) == ("pages-w1.csv", "pages-w1.jsonl", "stats-w1.json")
    assert f.warc.parent == tmp_path / "out" and "w1" in f.warc.name


def test_check_refuses_what_would_lose_or_mix_records(tmp_path):
    f = folder(tmp_path)
    f.check(resume=False, overwrite=False)  # nothing there yet
    with pytest.raises(UsageError, match="--resume and --overwrite exclude each other"):
        f.check(resume=True, overwrite=True)
    f.dir.mkdir()
    f.other.write_text("url\n")  # the same crawl, written as CSV
    with pytest.raises(OutputExistsError, match=r"pages\.csv already exists: use --resume"):
        f.check(resume=False, overwrite=False)
    with pytest.raises(UsageError, match=r"pages\.csv holds the crawl to resume: resume it with --format csv"):
        f.check(resume=True, overwrite=False)
    f.check(resume=False, overwrite=True)


def test_overwrite_removes_the_earlier_crawl_and_nothing_else(tmp_path):
    f = folder(tmp_path)
    f.dir.mkdir()
    (f.dir / "html").mkdir()
    (f.dir / "html" / "a.html").write_text("<p>")
    kept = f.dir / "notes.txt"
    for p in (f.pages, f.other, f.stats, f.warc, kept):
        p.write_text("x")
    f.prepare(overwrite=True)
    assert sorted(p.name for p in f.dir.iterdir()) == ["notes.txt"]
    f.prepare(overwrite=False)  # a folder that is there already is fine
    assert kept.read_text() == "x"


def _page(url: str, depth: int, links: list[str], error: PageError | None = None) -> Page:
    return Page(url=url, depth=depth, referrer=None, final_url=url, status=200, ok=error is None, links=links,
                error=error, content_hash="h")


async def test_read_back_rebuilds_the_crawl_and_cuts_a_torn_line(tmp_path):
    f = folder(tmp_path)
    f.dir.mkdir()
    records = RecordFormat("jsonl", record_keys())
    lines = [
        records.encode(_page("http://a.test/", 0, ["http://a.test/x", "http://a.test/y", "http://b.test/"])),
        records.encode(_page("http://a.test/x", 1, [])),
        records.encode(_page("bad", 0, [], PageError("invalid_url", "line 3: not an http(s) URL with a host"))),
    ]
    f.pages.write_text("".join(lines) + '{"url": "http://a.test/torn"')
    frontier, tally = MemoryFrontier(), Tally()
    used, links = await f.read_back(record_keys(), frontier, tally, CrawlConfig(depth=1))
    assert f.pages.read_text() == "".join(lines)  # the torn tail is gone
    assert used == 2  # an invalid_url record uses no fetch of max_pages
    assert tally.pages == 3
    assert [(i.url, i.depth, i.referrer) for i in links] == [("http://a.test/y", 1, "http://a.test/")]
    assert await frontier.is_seen("http://a.test/x")


async def test_read_back_without_records_is_a_new_crawl(tmp_path):
    assert await folder(tmp_path).read_back(record_keys(), MemoryFrontier(), Tally(), CrawlConfig()) == (0, [])


async def test_read_back_refuses_other_columns_and_old_records(tmp_path):
    f = folder(tmp_path, "csv")
    f.dir.mkdir()
    f.pages.write_text(RecordFormat("csv", record_keys(text=True)).header or "")
    with pytest.raises(UsageError, match=r"written with another \[parse\]\.text setting: resume it with the same one"):
        await f.read_back(record_keys(), MemoryFrontier(), Tally(), CrawlConfig())
    j = folder(tmp_path / "j")
    j.dir.mkdir(parents=True)
    j.pages.write_text('{"url": "http://a.test/", "depth": 0}\n')
    with pytest.raises(UsageError, match="written by an earlier version of scraper"):
        await j.read_back(record_keys(), MemoryFrontier(), Tally(), CrawlConfig())
