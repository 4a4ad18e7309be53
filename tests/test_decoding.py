"""Bad input: charsets (WHATWG order), malformed HTML and bodies that are not HTML (SPEC section 5)."""

from __future__ import annotations

import asyncio
import codecs
from typing import Any

import hostile_servers
import pytest
from aiohttp import web
from conftest import config
from hostile_servers import read_head

from scraper import Page, Scraper
from scraper.parse import decode, is_html

raw_serve = hostile_servers.raw_serve  # a fixture


def raw(body: bytes, content_type: str | None) -> Any:
    """A handler that sends `body` as is, with exactly this Content-Type (or none)."""

    async def handler(request: web.Request) -> web.Response:
        resp = web.Response(body=body)
        if content_type is None:
            resp.headers.popall("Content-Type", None)
        else:
            resp.headers["Content-Type"] = content_type
        return resp

    return handler


def doc(title: str, head: str = "") -> str:
    return f"<!doctype html><html><head>{head}<title>{title}</title></head><body><p>x</p></body></html>"


CASES: dict[str, tuple[bytes, str | None, str]] = {
    # path: (body, Content-Type, the title a browser shows)
    "/cp1252-declared-latin1": (
        doc("\x93Quoted\x94 caf\xe9 \x96 \x80 5").encode("latin-1"),
        "text/html; charset=iso-8859-1",
        "\u201cQuoted\u201d caf\u00e9 \u2013 \u20ac 5",
    ),
    "/shift-jis-meta": (
        doc("日本語のページ", head='<meta charset="Shift_JIS">').encode("shift_jis"),
        "text/html",
        "日本語のページ",
    ),
    "/shift-jis-nec": (  # NEC extensions, as Windows writes them: browsers decode them
        doc("会議室①㈱サンプル", head='<meta http-equiv="Content-Type" content="text/html; charset=shift_jis">')
        .encode("cp932"),
        "text/html",
        "会議室①㈱サンプル",
    ),
    "/bom-beats-header": (
        codecs.BOM_UTF8 + doc("café ✓ 😀").encode("utf-8"),
        "text/html; charset=iso-8859-1",
        "café ✓ 😀",
    ),
    "/bom-utf16": (
        codecs.BOM_UTF16_LE + doc("UTF-16 ünïcode").encode("utf-16-le"),
        "text/html; charset=utf-8",
        "UTF-16 ünïcode",
    ),
    "/no-charset-utf8": (doc("naïve — ok ✓").encode("utf-8"), "text/html", "naïve — ok ✓"),
    "/no-charset-not-utf8": (doc("\x93smart\x94 na\xefve").encode("latin-1"), "text/html", "“smart” naïve"),
    "/meta-http-equiv-1251": (
        doc("Привет, мир", head='<meta http-equiv="Content-Type" content="text/html; charset=windows-1251">')
        .encode("cp1251"),
        "text/html",
        "Привет, мир",
    ),
    "/header-beats-meta": (
        doc("Größe", head='<meta charset="windows-1252">').encode("utf-8"),
        "text/html; charset=UTF-8",
        "Größe",
    ),
    "/unknown-header-charset-then-meta": (
        doc("Größe", head='<meta charset="utf-8">').encode("utf-8"),
        "text/html; charset=x-no-such-charset",
        "Größe",
    ),
}


async def crawl(urls: list[str]) -> dict[str, Page]:
    async with Scraper(config()) as s:
        return {p.url: p async for p in s.crawl(urls)}


async def test_titles_decode_as_a_browser_would(serve: Any) -> None:
    srv = await serve({path: raw(body, ct) for path, (body, ct, _) in CASES.items()})
    pages = await crawl([srv.url(path) for path in CASES])
    got = {path: pages[srv.url(path)].title for path in CASES}
    assert got == {path: title for path, (_, _, title) in CASES.items()}
    for path in CASES:
        page = pages[srv.url(path)]
        assert page.ok and page.error is None, (path, page.error)
        assert "\ufffd" not in (page.title or "")


MALFORMED = b"""<html><head><title>Broken <b>but</b> readable</title>
<meta name=description content=unquoted-description>
<body><div><p>unclosed paragraph <div>nested
</div></div></div></span>
<a href=/one>one</a>
<a href='/two' class=x>two<a href="three?x=1&amp;y=2">three</a>
<table><tr><td><a href=four>four</td></tr>
<a href=javascript:void(0)>js</a><a href="mailto:x@y">m</a><a href="//[bad">bad</a><a href=/one#again>1</a>
</body></html>
"""


async def test_malformed_html_gives_title_and_links_best_effort(serve: Any) -> None:
    srv = await serve({"/dir/page": raw(MALFORMED, "text/html")})
    page = (await crawl([srv.url("/dir/page")]))[srv.url("/dir/page")]
    assert page.ok and page.error is None
    assert page.title == "Broken <b>but</b> readable"  # <title> is raw text
    assert page.description == "unquoted-description"
    assert page.links == [
        srv.url("/one"),
        srv.url("/two"),
        srv.url("/dir/three?x=1&y=2"),
        srv.url("/dir/four"),
    ]


async def test_html_without_content_type_is_sniffed(raw_serve: Any) -> None:
    body = b"<!-- made by hand -->\n" + doc("sniffed", head="<meta charset=windows-1252>").encode() + b"\x93"

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        await writer.drain()

    srv = await raw_serve(answer)
    page = (await crawl([srv.url("/")]))[srv.url("/")]
    assert page.ok and page.error is None
    assert page.content_type is None
    assert page.title == "sniffed"


async def test_pdf_is_recorded_ok_without_links_or_fields(serve: Any) -> None:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\n<a href='/not-a-link'>\ntrailer\n%%EOF\n"
    srv = await serve({
        "/doc.pdf": raw(pdf, "application/pdf"),
        "/data.json": raw(b'{"html": "<a href=/x>x</a>"}', "application/json; charset=utf-8"),
        "/img": raw(b"\x89PNG\r\n\x1a\n" + bytes(100), "image/png"),
    })
    pages = await crawl([srv.url("/doc.pdf"), srv.url("/data.json"), srv.url("/img")])
    for path, media in (("/doc.pdf", "application/pdf"), ("/data.json", "application/json"), ("/img", "image/png")):
        page = pages[srv.url(path)]
        assert page.ok and page.error is None and page.status == 200, (path, page.error)
        assert page.content_type == media
        assert page.links == [] and page.fields == {}
        assert page.title is None and page.description is None
    assert pages[srv.url("/doc.pdf")].bytes == len(pdf)


# --- decode() and is_html() on their own ---------------------------------------------------------


@pytest.mark.parametrize(
    "body, content_type, text",
    [
        (b"\x93x\x94", "text/html; charset=ISO-8859-1", "“x”"),
        (b"\x93x\x94", "text/html; charset=latin1", "“x”"),
        (b"\x93x\x94", "text/html; charset=us-ascii", "“x”"),
        (b"\x93x\x94", "text/html; charset=\"windows-1252\"", "“x”"),
        (codecs.BOM_UTF8 + "é".encode(), "text/html; charset=windows-1252", "é"),
        (codecs.BOM_UTF16_BE + "é".encode("utf-16-be"), None, "é"),
        ('<meta charset="utf-16"><p>é'.encode(), "text/html", '<meta charset="utf-16"><p>é'),  # read as UTF-8
        ("<meta charset='euc-kr'>똠".encode("cp949"), None, "<meta charset='euc-kr'>똠"),
        ("é".encode(), None, "é"),
        (b"caf\xe9", None, "café"),
        (b"caf\xe9", "text/html; charset=bogus", "café"),
        (b"", "text/html", ""),
    ],
)
def test_decode(body: bytes, content_type: str | None, text: str) -> None:
    assert decode(body, content_type) == text


def test_meta_prescan_reads_only_the_first_1024_bytes() -> None:
    late = b"<p>" + b" " * 1100 + b'<meta charset="windows-1251">' + "Привет".encode("cp1251")
    assert "Привет" not in decode(late, "text/html")
    early = b'<meta charset="windows-1251">' + "Привет".encode("cp1251")
    assert decode(early, "text/html").endswith("Привет")


@pytest.mark.parametrize(
    "media_type, body, html",
    [
        ("text/html", b"%PDF", True),
        ("application/xhtml+xml", b"<html/>", True),
        ("application/pdf", b"<html>", False),
        ("text/plain", b"<html>", False),
        (None, b"  <!DOCTYPE html>", True),
        (None, b"<HTML lang=en>", True),
        (None, b"<!-- a comment -->", True),
        (None, b"<p>hi", True),
        (None, b"<a href=x>", True),
        (None, b"<abbr>", False),
        (None, b"%PDF-1.7", False),
        (None, b"{\"a\": 1}", False),
        (None, b"", False),
    ],
)
def test_is_html(media_type: str | None, body: bytes, html: bool) -> None:
    assert is_html(media_type, body) is html
