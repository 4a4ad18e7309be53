"""SPEC statements checked from the outside, one test per gap they once had.

Each test states the sentence of SPEC.md it holds the product to.
"""

from __future__ import annotations

import json

import pytest

from scraper import ConfigError, load_config
from scraper.config import Config, FetchConfig
from scraper.parse import Parser
from scraper.pool import ParsePool
from scraper.urls import LinkFilter
from tests.conftest import config, html, page_handler, run_cli


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # an impossible value: a delay or backoff of inf seconds never elapses, the run never ends
        ("[fetch]\ndelay = inf", "fetch.delay"),
        ("[fetch]\ntimeout = inf", "fetch.timeout"),
        ("[fetch]\nconnect_timeout = inf", "fetch.connect_timeout"),
        ("[retry]\nbackoff = inf", "retry.backoff"),
        ("[retry]\nmax_backoff = inf", "retry.max_backoff"),
        ("[frontier]\nlease = inf", "frontier.lease"),
        ("[render]\ntimeout = inf", "render.timeout"),
        # a header that cannot be sent: not an HTTP token, or a value that would split the request
        ('[fetch]\nheaders = { "bad name" = "x" }', "fetch.headers"),
        ('[fetch]\nheaders = { "X-A" = "a\\nb" }', "fetch.headers"),
        ('[fetch]\nuser_agent = "bot\\r\\nX-Evil: 1"', "fetch.user_agent"),
        ('[frontier]\nurl = "localhost:6379"', "frontier.url"),
        ('[frontier]\nurl = ""', "frontier.url"),
    ],
)
def test_impossible_values_name_key_and_file(tmp_path, text, key):
    """SPEC 4: an impossible value stops the run with a message that names the key and the file."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert key in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_headers_that_can_be_sent_are_kept():
    c = Config(fetch=FetchConfig(headers={"X-Token": "a b;c=1", "Accept-Language": "fr"}))
    assert c.fetch.headers == {"X-Token": "a b;c=1", "Accept-Language": "fr"}


async def test_cli_bad_header_exits_2_before_any_request(tmp_path):
    """SPEC 3/4: bad config is exit 2 with one line, and nothing is fetched or written."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[fetch]\nheaders = { "X" = "a\\nb" }\n')
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "out"))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"scraper: error: {cfg}: fetch.headers has a bad value for header 'X': it holds a line break or NUL"
    ]
    assert not (tmp_path / "out").exists()


def test_pool_start_after_close_is_quiet():
    """A run with nothing to parse closes the pool while its start is still on the way: no error escapes.

    (It used to print a `RuntimeError: cannot schedule new futures after shutdown`
    traceback on stderr of a run whose urls.txt held only blank lines.)
    """
    pool = ParsePool(Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ())), 1)
    pool.close()
    pool.start()  # returns, starts nothing
    assert pool._executor is None


@pytest.mark.parametrize("url", ["http://exa mple.com/", "http://ex%20ample.com/", "https://a<b>.org/"])
def test_a_host_with_forbidden_characters_is_not_a_url(url):
    """SPEC 3: a line that is not an http(s) URL is not fetched (a host name holds no space, `<`, `%`)."""
    from scraper.urls import normalize

    assert normalize(url) is None


async def test_cli_host_with_a_space_is_invalid_url_with_its_line(tmp_path):
    """SPEC 3: such a line gets an `invalid_url` record saying `line N`, and is never looked up."""
    urls = tmp_path / "urls.txt"
    urls.write_text("# a comment\nhttp://exa mple.com/page\n")
    result = await run_cli(str(urls), "--output", "-", "-q", cwd=tmp_path)
    assert result.code == 0, result.stderr
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert record["url"] == "http://exa mple.com/page"
    assert record["error"]["kind"] == "invalid_url" and "line 2" in record["error"]["message"]
    assert (record["status"], record["attempts"], record["final_url"]) == (None, 0, None)


async def test_a_redirect_into_what_robots_txt_disallows_is_not_followed(serve, tmp_path):
    """SPEC 4/6 (obey_robots, RFC 9309): robots.txt holds for every URL the crawl requests, a redirect's too.

    The redirect's own response is the record's `status`; its target is never requested.
    """
    from aiohttp import web

    from scraper import Scraper

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /private\n")

    target = await serve({"/robots.txt": robots, "/private/page": page_handler(html("secret")),
                          "/public": page_handler(html("p"))})

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound(target.url("/private/page"))

    async def to_public(request: web.Request) -> web.Response:
        raise web.HTTPFound(target.url("/public"))

    origin = await serve({"/go": to_private, "/ok": to_public})
    c = config(tmp_path, fetch={"obey_robots": True})
    async with Scraper(c) as s:
        pages = {p.url: p async for p in s.crawl([origin.url("/go"), origin.url("/ok")])}
    refused = pages[origin.url("/go")]
    assert refused.error is not None and refused.error.kind == "robots"
    assert target.url("/robots.txt") in refused.error.message
    assert (refused.status, refused.final_url, refused.attempts, refused.ok) == (
        302, target.url("/private/page"), 1, False)
    assert target.requests("/private/page") == 0
    assert target.requests("/robots.txt") == 1
    followed = pages[origin.url("/ok")]
    assert followed.ok and followed.final_url == target.url("/public")


async def test_resume_counts_a_redirect_refused_by_robots_against_max_pages(serve, tmp_path):
    """SPEC 3: `max_pages` counts the records already in the output; such a record was a page fetch."""
    from aiohttp import web

    async def robots(request: web.Request) -> web.Response:
        return web.Response(text="User-agent: *\nDisallow: /private\n")

    async def to_private(request: web.Request) -> web.Response:
        raise web.HTTPFound("/private/x")

    site = await serve({"/robots.txt": robots, "/go": to_private, "/a": page_handler(html("a")),
                        "/b": page_handler(html("b"))})
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('/go')}\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text("[crawl]\nmax_pages = 1\n")
    out = tmp_path / "out"
    first = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), "-q")
    assert first.code == 0, first.stderr
    urls.write_text(f"{site.url('/go')}\n{site.url('/a')}\n{site.url('/b')}\n")
    again = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), "-q", "--resume")
    assert again.code == 0, again.stderr
    records = [json.loads(line) for line in (out / "pages.jsonl").read_text().splitlines()]
    assert [r["url"] for r in records] == [site.url("/go")]
    assert records[0]["error"]["kind"] == "robots" and records[0]["attempts"] == 1
    assert site.requests("/a") == site.requests("/b") == site.requests("/private/x") == 0


async def test_cli_empty_output_names_the_flag(tmp_path):
    """SPEC 3: a bad flag value is exit 2 with one line naming the flag."""
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(urls), "--output", "", cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == ["scraper: error: argument --output: must not be empty (see --help)"]


async def test_reparse_empty_output_names_the_flag(tmp_path):
    result = await run_cli("reparse", str(tmp_path), "--output", "", cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == ["scraper: error: argument --output: must not be empty (see --help)"]


@pytest.mark.parametrize("via_stdin", [False, True])
async def test_urls_file_with_a_byte_order_mark(serve, tmp_path, via_stdin):
    """SPEC 3: one URL a line. A UTF-8 BOM (a file saved by Notepad) is not part of the first URL."""
    site = await serve({"/a": page_handler(html("A"))})
    data = b"\xef\xbb\xbf" + f"{site.url('/a')}\r\nftp://x/\r\n".encode()
    urls = tmp_path / "urls.txt"
    urls.write_bytes(data)
    args = ("-", "--output", "-", "-q") if via_stdin else (str(urls), "--output", "-", "-q")
    result = await run_cli(*args, cwd=tmp_path, stdin=data if via_stdin else None)
    assert result.code == 0, result.stderr
    records = {r["url"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert records[site.url("/a")]["title"] == "A"
    assert records["ftp://x/"]["error"]["message"].startswith("line 2:")
    assert len(records) == 2


async def test_numbered_lines_bom_split_across_chunks():
    from scraper.sources import _numbered_lines

    async def chunks(*parts: bytes):
        for part in parts:
            yield part

    got = [x async for x in _numbered_lines(chunks(b"\xef", b"\xbb", b"\xbfhttp://a/\nhttp://b/"))]
    assert got == [(1, b"http://a/"), (2, b"http://b/")]
    got = [x async for x in _numbered_lines(chunks(b"\xef\xbb"))]  # not a whole BOM: kept, as bytes to judge
    assert got == [(1, b"\xef\xbb")]
    got = [x async for x in _numbered_lines(chunks(b"h", b"ttp://a/\n"))]
    assert got == [(1, b"http://a/")]


async def test_overwrite_replaces_the_whole_output(serve, tmp_path):
    """SPEC 3: `--overwrite` starts over, replacing DIR's output: no file of the earlier crawl is left."""
    site = await serve({"/a": page_handler(html("A")), "/b": page_handler(html("B"))})
    urls = tmp_path / "urls.txt"
    urls.write_text(f"{site.url('/a')}\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text("[fetch]\nobey_robots = false\n[output]\nreport = true\nsave_html = true\nwarc = true\n")
    out = tmp_path / "out"
    first = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), "-q")
    assert first.code == 0, first.stderr
    assert {p.name for p in out.iterdir()} == {"pages.jsonl", "stats.json", "report.html", "html", "pages.warc.gz"}
    urls.write_text(f"{site.url('/b')}\n")
    plain = tmp_path / "plain.toml"
    plain.write_text("[fetch]\nobey_robots = false\n")
    again = await run_cli(str(urls), "--config", str(plain), "--output", str(out), "-q", "--overwrite")
    assert again.code == 0, again.stderr
    assert {p.name for p in out.iterdir()} == {"pages.jsonl", "stats.json"}
    assert [json.loads(line)["url"] for line in (out / "pages.jsonl").read_text().splitlines()] == [site.url("/b")]


def test_scrape_refuses_one_string_as_crawl_does():
    """SPEC 7: `scrape(urls, ...)` takes URLs; one string is a slip, not one URL per character."""
    import scraper

    with pytest.raises(TypeError, match="wrap it in a list"):
        scraper.scrape("http://127.0.0.1:9/")
