"""`read_pages(dir)`: a crawl's output folder back as Pages, streamed (JSONL, CSV, shards, a torn tail)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from scraper import Page, PageError, Scraper, read_pages
from tests.conftest import config, html, page_handler


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_read_pages_gives_back_what_the_crawl_wrote(serve, tmp_path, fmt):
    site = await serve({"/": page_handler(html("Root, \"quoted\"\r\nand two lines", ["/a", "/missing"],
                                               description="d")),
                        "/a": page_handler(html("A"))})
    cfg = config(tmp_path, crawl={"depth": 1}, output={"format": fmt}, parse={"text": True})
    async with Scraper(cfg) as s:
        await s.run([site.url("/"), "not a url"])
        crawled = {p.url: p.to_dict() async for p in s.crawl([site.url("/"), "not a url"])}

    pages = read_pages(tmp_path / "out")
    assert isinstance(pages, Iterator)
    read = {p.url: p for p in pages}
    assert set(read) == set(crawled) and len(read) == 4
    for url, page in read.items():
        record = page.to_dict()
        expected = crawled[url]
        for volatile in ("fetched_at", "elapsed_ms"):
            record.pop(volatile), expected.pop(volatile)
        if fmt == "csv" and expected["text"] is None:
            expected["text"] = ""  # a CSV cell cannot tell an empty text from none
        assert record == expected
    assert read[site.url("/missing")].error == PageError("http", "HTTP 404")
    assert read[site.url("/")].text is not None and read[site.url("/")].links[0] == site.url("/a")


def _record(url: str, **values) -> str:
    return json.dumps(Page(url=url, ok=True, status=200, **values).to_dict()) + "\n"


def test_every_shard_is_read_and_a_torn_last_line_skipped(tmp_path):
    (tmp_path / "pages-w1.jsonl").write_text(_record("http://h/1") + _record("http://h/2"))
    (tmp_path / "pages-w2.jsonl").write_text(_record("http://h/3") + _record("http://h/4")[:25])  # killed mid-line
    (tmp_path / "stats-w1.json").write_text("{}")
    (tmp_path / "pages-w3.jsonl").write_text("")
    assert [p.url for p in read_pages(tmp_path)] == ["http://h/1", "http://h/2", "http://h/3"]

    torn_csv = tmp_path / "csv"
    torn_csv.mkdir()
    (torn_csv / "pages.csv").write_text('url,status,ok,links,fields,error\nhttp://h/9,200,true,[],{},\n'
                                        'http://h/10,200,true,"[""http://h/1')
    [page] = read_pages(torn_csv)
    assert (page.url, page.status, page.ok, page.links) == ("http://h/9", 200, True, [])


def test_read_pages_streams(tmp_path):
    path = tmp_path / "pages.jsonl"
    path.write_text(_record("http://h/1"))
    pages = read_pages(tmp_path)
    assert next(pages).url == "http://h/1"
    with open(path, "a") as f:  # a record added after the first was read is still found: read as it goes
        f.write(_record("http://h/2", title="late"))
    assert [p.title for p in pages] == ["late"]


def test_a_folder_without_output_is_an_error_at_once(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_pages(tmp_path / "nowhere")
    (tmp_path / "stats.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"holds no pages\.jsonl or pages\.csv"):
        read_pages(tmp_path)
