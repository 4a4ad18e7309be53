"""reparse: a crawl parsed again from its archive, with the site down, on the real CLI and the library."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Scraper, UsageError, load_config
from scraper.config import FieldSpec
from scraper.page import record_keys
from scraper.sinks import read_back
from tests.conftest import config, html, read_jsonl, run_cli, write_config
from tests.test_warc import start_site

PARSED = ("title", "description", "links", "fields", "text", "markdown")


def product(name: str, price: str, links: list[str]) -> str:
    return html(name, links, description=f"All about {name}",
                body=f"<h1>{name}</h1><span class=price>{price}</span><img src=/{name}.png>"
                     f"<script>var hidden = 1;</script><p>Buy {name} now.</p>")


async def crawled_site(
    tmp_path: Path, fmt: str = "jsonl", markdown: bool = False
) -> tuple[Path, str, list[dict[str, Any]]]:
    """Crawl a small shop with `[parse.fields] heading = "h1"` and warc on, then take the site down."""
    pages = {
        "/": product("home", "0", ["/a", "/b", "/doc.json", "/missing", "/moved"]),
        "/a": product("apple", "3", ["/"]),
        "/b": product("banana", "5", ["/a"]),
        "/c": product("cherry", "7", []),
    }

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/doc.json":
            return web.json_response({"not": "html"})
        if request.path == "/moved":
            raise web.HTTPMovedPermanently("/c")
        if request.path in pages:
            return web.Response(text=pages[request.path], content_type="text/html", charset="utf-8")
        return web.Response(status=404, text="no such page")

    runner, base = await start_site(handler)
    src = tmp_path / "src"
    cfg = write_config(tmp_path / "crawl.toml", f"""
[fetch]
obey_robots = false
[crawl]
depth = 1
[parse]
workers = 1
markdown = {str(markdown).lower()}
[parse.fields]
heading = "h1"
[output]
warc = true
format = "{fmt}"
""")
    try:
        async with Scraper(load_config(cfg, output=str(src))) as s:
            await s.run([base + "/"])
    finally:
        await runner.cleanup()  # the site is down from here on: reparse must not need it
    records, _ = read_back(src / f"pages.{fmt}", fmt)
    return src, base, records


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, list[dict[str, Any]]]:
    """One crawl of the shop (JSONL, site down afterwards) for the tests that only read it."""
    import asyncio

    return asyncio.run(crawled_site(tmp_path_factory.mktemp("shop")))


async def test_reparse_with_new_fields_while_the_site_is_down(tmp_path, shop):
    src, base, before = shop
    assert len(before) == 6
    cfg = write_config(tmp_path / "new.toml", """
[parse]
workers = 2
text = true
[parse.fields]
price = ".price"
images = { selector = "img", attr = "src", all = true }
""")
    dst = tmp_path / "dst"
    result = await run_cli("reparse", str(src), "--output", str(dst), "--config", str(cfg))
    assert result.code == 0, result.stderr
    assert "done: 6 pages (5 ok, 1 failed)" in result.stderr  # the crawl's summary
    after = {r["url"]: r for r in read_jsonl(dst / "pages.jsonl")}
    assert len(after) == len(before)
    for old in before:
        new = after[old["url"]]
        assert list(new) == list(record_keys(text=True))
        for key in old:  # every key but the parsed ones is the crawl's
            if key not in PARSED:
                assert new[key] == old[key], (old["url"], key)
        html_page = old["ok"] and old["content_type"] == "text/html"
        if html_page:
            name = old["title"]
            assert new["title"] == old["title"] and new["links"] == old["links"]
            assert new["description"] == old["description"] == f"All about {name}"
            assert new["fields"] == {"price": {"home": "0", "apple": "3", "banana": "5", "cherry": "7"}[name],
                                     "images": [f"/{name}.png"]}
            assert new["text"].startswith(name) and f"Buy {name} now." in new["text"]
            assert "hidden" not in new["text"]
        else:  # not ok, or not HTML: copied as it is, the new key null
            assert {k: v for k, v in new.items() if k != "text"} == old and new["text"] is None
    moved = after[base + "/moved"]
    assert moved["final_url"] == base + "/c" and moved["fields"]["price"] == "7"  # parsed from the redirect's target
    stats = json.loads((dst / "stats.json").read_text())
    assert stats["pages"] == 6 and stats["ok"] == 5 and stats["by_status"] == {"200": 5, "404": 1}
    assert stats["interrupted"] is False and stats["run_pages"] == 6


async def test_reparse_with_the_crawls_own_config_reproduces_it_exactly(tmp_path):
    src, _, before = await crawled_site(tmp_path, fmt="csv", markdown=True)
    assert all(r["markdown"] for r in before if r["content_type"] == "text/html" and r["ok"])
    crawl_cfg = tmp_path / "crawl.toml"
    # JSONL from a CSV crawl, and CSV again: the same records, key for key
    dst = tmp_path / "dst"
    result = await run_cli("reparse", str(src), "--output", str(dst), "--config", str(crawl_cfg), "--format", "jsonl")
    assert result.code == 0, result.stderr
    assert read_jsonl(dst / "pages.jsonl") == before
    async with Scraper(load_config(crawl_cfg)) as s:
        await s.reparse(src, tmp_path / "csv")
    assert (tmp_path / "csv" / "pages.csv").read_bytes() == (src / "pages.csv").read_bytes()


def extract_price(soup: Any, page: Any) -> dict[str, Any]:
    """A module-level extract function: it runs in the parse processes, as in a crawl."""
    tag = soup.select_one(".price")
    return {"cents": int(tag.get_text()) * 100 if tag else None, "seen_url": page.url, "seen_title": page.title}


async def test_library_reparse_takes_extract_and_resumes(tmp_path, shop):
    src, base, _ = shop
    cfg = config(tmp_path, parse={"fields": {"heading": FieldSpec(selector="h1")}})
    dst = tmp_path / "dst"
    async with Scraper(cfg, extract=extract_price) as s:
        stats = await s.reparse(src, dst)
    assert stats.pages == 6 and stats.run_pages == 6
    after = {r["url"]: r for r in read_jsonl(dst / "pages.jsonl")}
    apple = after[base + "/a"]
    assert apple["fields"] == {"heading": "apple", "cents": 300, "seen_url": base + "/a", "seen_title": "apple"}

    # a torn last line (a killed reparse) is cut off and that record written again; the rest are kept
    data = (dst / "pages.jsonl").read_bytes()
    kept = data[: data.rindex(b"\n", 0, len(data) - 1) + 1]
    (dst / "pages.jsonl").write_bytes(kept + data[len(kept):][:20])
    async with Scraper(cfg, extract=extract_price) as s:
        stats = await s.reparse(src, dst, resume=True)
    assert stats.run_pages == 1 and stats.pages == 6
    assert (dst / "pages.jsonl").read_bytes() == data


async def test_reparse_bad_inputs(tmp_path, shop):
    src, _, _ = shop
    dst = tmp_path / "dst"

    async def cli(*args: str) -> tuple[int, str]:
        result = await run_cli("reparse", *args)
        assert result.stdout == ""
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
        return result.code, result.stderr

    async def library(src: Path, dst: Path, **flags: bool) -> str:
        async with Scraper(config(tmp_path)) as s:
            with pytest.raises(UsageError) as e:
                await s.reparse(src, dst, **flags)
        return str(e.value)

    no_archive = tmp_path / "plain"
    no_archive.mkdir()
    (no_archive / "pages.jsonl").write_bytes((src / "pages.jsonl").read_bytes())
    code, err = await cli(str(no_archive), "--output", str(dst))
    assert code == 2 and "[output] warc" in err
    code, err = await cli(str(src))
    assert code == 2 and "--output" in err
    bad = write_config(tmp_path / "bad.toml", "[parse.fields]\nprice = 5\n")
    code, err = await cli(str(src), "--output", str(dst), "--config", str(bad))
    assert code == 2 and "bad.toml" in err and "price" in err
    assert "no such folder" in await library(tmp_path / "nowhere", dst)
    assert "pages.jsonl" in await library(tmp_path, dst)  # a folder without records
    assert "SRC_DIR" in await library(src, src)
    assert not dst.exists()  # nothing written by any of them

    async with Scraper(config(tmp_path)) as s:
        await s.reparse(src, dst)
    first = (dst / "pages.jsonl").read_bytes()
    code, err = await cli(str(src), "--output", str(dst))
    assert code == 2 and "--resume" in err and "--overwrite" in err
    assert "exclude" in await library(src, dst, resume=True, overwrite=True)
    assert (dst / "pages.jsonl").read_bytes() == first
    async with Scraper(config(tmp_path)) as s:
        await s.reparse(src, dst, overwrite=True)
    assert (dst / "pages.jsonl").read_bytes() == first


def test_the_index_finds_the_response_the_record_describes(tmp_path):
    """A URL archived twice (a retry, a page fetched again after a kill): its content_hash picks the copy."""
    import hashlib

    from scraper.archive import Exchange, exchange_members, find_body, index_archives, warcinfo_member

    def exchange(url: str, status: int, body: bytes) -> Exchange:
        return Exchange(url=url, date="2026-01-01T00:00:00.000000Z", request_line="GET / HTTP/1.1",
                        request_headers=(("Host", "h"),), status_line=f"{status} X", protocol="HTTP/1.1",
                        response_headers=(("Content-Type", "text/html"),), body=body, truncated=None)

    archive = tmp_path / "pages.warc.gz"
    archive.write_bytes(warcinfo_member(archive.name) + b"".join(exchange_members(ex) for ex in (
        exchange("http://h/a", 200, b"<p>first</p>"), exchange("http://h/b", 404, b"gone"),
        exchange("http://h/a", 200, b"<p>second</p>"), exchange("http://h/c", 200, b"<p>c</p>"))))
    index = index_archives([archive]).responses
    assert len(index) == 2 and index.get("http://h/b") == () and len(index.get("http://h/a")) == 2
    first = "sha256:" + hashlib.sha256(b"<p>first</p>").hexdigest()
    assert find_body([archive], index.get("http://h/a"), first).body == b"<p>first</p>"  # type: ignore[union-attr]
    assert find_body([archive], index.get("http://h/a"), None).body == b"<p>second</p>"  # type: ignore[union-attr]
    assert find_body([archive], index.get("http://h/a"), "sha256:00") is None
    assert find_body([archive], index.get("http://h/c"), None).content_type == "text/html"  # type: ignore[union-attr]


async def test_an_interrupted_reparse_resumes_to_the_same_output(tmp_path, shop):
    import asyncio
    import os

    src, _, before = shop
    cfg = config(tmp_path, parse={"batch_size": 1, "fields": {"heading": FieldSpec(selector="h1")}})  # the crawl's

    gate, waiting, once = tmp_path / "gate", tmp_path / "waiting", tmp_path / "once"
    os.mkfifo(gate)
    os.mkfifo(waiting)

    def held_once(soup: Any, page: Any) -> dict[str, Any]:
        """The first page parsed says so, then waits at the gate (FIFOs the test opens) while the test interrupts."""
        if not once.exists():
            once.touch()
            waiting.write_text("at the gate")
            gate.read_text()
        return {}

    dst = tmp_path / "dst"
    async with Scraper(cfg, extract=held_once) as s:
        task = asyncio.create_task(s.reparse(src, dst))
        assert await asyncio.to_thread(waiting.read_text) == "at the gate"
        s.interrupt(2)
        await asyncio.to_thread(gate.write_text, "go")
        stats = await task
    assert stats.interrupted and 0 < stats.run_pages < 6
    assert json.loads((dst / "stats.json").read_text())["interrupted"] is True
    async with Scraper(cfg) as s:
        stats = await s.reparse(src, dst, resume=True)
    assert not stats.interrupted and stats.pages == 6
    after = read_jsonl(dst / "pages.jsonl")
    assert sorted(after, key=lambda r: r["url"]) == sorted(before, key=lambda r: r["url"])  # as if never stopped
