"""A hostile web: slow, huge, looping, lying and broken servers (SPEC sections 5 and 6).

Every test runs against real servers on 127.0.0.x and asserts what was
observed: the error kind, the attempts, the status, timings, and what the
servers saw.
"""

from __future__ import annotations

import asyncio
import gc
import gzip
import logging
import socket
import struct
import time
from email.utils import formatdate
from pathlib import Path
from typing import Any

import aiohttp.client_proto
import hostile_servers
import pytest
from aiohttp import web
from aiohttp.http_parser import HttpResponseParserPy
from conftest import LoopLag, config, page_handler, read_jsonl, write_config
from hostile_servers import (
    BOMB_SIZE,
    RawServer,
    chain,
    free_port,
    gzip_bomb_handler,
    read_head,
    redirect,
    run_cli_peak_rss,
    self_signed,
    server_tls,
    starts_of,
)

from scraper import Page, Scraper
from scraper.fetch import BlockedAddressError, Fetcher, PublicOnlyResolver, is_public_address
from scraper.limits import Limiter

raw_serve = hostile_servers.raw_serve  # fixtures
no_dns_for_invalid = hostile_servers.no_dns_for_invalid


async def crawl(cfg: Any, urls: list[str]) -> dict[str, Page]:
    async with Scraper(cfg) as s:
        return {p.url: p async for p in s.crawl(urls)}


# --- time ----------------------------------------------------------------------------


async def test_slow_drip_and_silent_server_time_out_within_the_timeout(serve: Any) -> None:
    # 2 s: each attempt must reach the server (a loaded machine's connect may take a second)
    timeout, attempts = 2.0, 2

    async def drip(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Length": "1000"})
        await resp.prepare(request)
        for _ in range(1000):  # one byte per 0.2 s: 200 s for the whole body
            await resp.write(b"x")
            await asyncio.sleep(0.2)
        return resp

    async def silent(request: web.Request) -> web.Response:
        await asyncio.sleep(3600)
        raise AssertionError("unreachable")

    srv = await serve({"/drip": drip, "/silent": silent})
    cfg = config(fetch={"timeout": timeout, "connect_timeout": timeout}, retry={"attempts": attempts})
    t0 = time.monotonic()
    async with LoopLag() as lag:
        pages = await crawl(cfg, [srv.url("/drip"), srv.url("/silent")])
    wall = time.monotonic() - t0
    late = 2 * lag.worst()  # what the load ate: on a quiet machine, a few ms

    for path in ("/drip", "/silent"):
        page = pages[srv.url(path)]
        assert page.error is not None and page.error.kind == "timeout", page.error
        assert page.attempts == attempts
        assert srv.requests(path) == attempts
        assert page.ok is False and page.bytes == 0
        # the final attempt ended at the timeout, not at the end of the body
        assert timeout * 1000 - 50 <= page.elapsed_ms <= (timeout + 0.7 + late) * 1000, (page.elapsed_ms, late)
    assert pages[srv.url("/drip")].status == 200  # headers came, the body never finished
    assert pages[srv.url("/silent")].status is None
    # both ran side by side (the time that takes is a figure for benchmarks/, not a test)
    assert srv.max_in_flight == 2
    print(f"timeouts: final attempts {pages[srv.url('/drip')].elapsed_ms} / {pages[srv.url('/silent')].elapsed_ms} ms,"
          f" {attempts} attempts in {wall:.2f} s")


# --- size ------------------------------------------------------------------------------


def _cli_config(tmp_path: Path, max_bytes: int) -> Path:
    return write_config(
        tmp_path / "config.toml",
        f"""
[fetch]
max_bytes = {max_bytes}
obey_robots = false
timeout = 20.0
[retry]
attempts = 3
backoff = 0.01
[parse]
workers = 1
""",
    )


@pytest.mark.parametrize("declared", [False, True], ids=["streamed", "content-length"])
async def test_huge_body_is_too_large_not_retried_and_memory_stays_flat(
    serve: Any, tmp_path: Path, declared: bool
) -> None:
    size = 50 * 1024 * 1024
    sent = {"bytes": 0}

    async def huge(request: web.Request) -> web.StreamResponse:
        headers = {"Content-Type": "text/html"}
        if declared:
            headers["Content-Length"] = str(size)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        block = b"<p>" + b"x" * (64 * 1024 - 3)
        try:
            for _ in range(size // len(block)):
                await resp.write(block)
                sent["bytes"] += len(block)
        except (ConnectionError, RuntimeError):
            pass
        return resp

    srv = await serve({"/huge": huge})
    urls = tmp_path / "urls.txt"
    urls.write_text(srv.url("/huge") + "\n")
    out = tmp_path / "out"
    result, peak = await run_cli_peak_rss(str(urls), "--config", str(_cli_config(tmp_path, 1_000_000)),
                                          "--output", str(out), "-q")
    assert result.code == 0, result.stderr
    (record,) = read_jsonl(out / "pages.jsonl")
    assert record["error"]["kind"] == "too_large", record["error"]
    assert record["attempts"] == 1 and srv.requests("/huge") == 1
    assert record["bytes"] == 0 and record["status"] == 200 and record["ok"] is False
    assert peak < 300 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MB"
    assert sent["bytes"] < size  # the client hung up: the server never got to send it all
    print(f"50 MB body ({'declared' if declared else 'streamed'}): peak RSS {peak / 2**20:.0f} MB, "
          f"server sent {sent['bytes'] / 2**20:.1f} MB")


async def test_gzip_bomb_is_too_large_and_memory_stays_flat(serve: Any, tmp_path: Path) -> None:
    sent: dict[str, int] = {}
    srv = await serve({"/bomb": gzip_bomb_handler(sent)})
    urls = tmp_path / "urls.txt"
    urls.write_text(srv.url("/bomb") + "\n")
    out = tmp_path / "out"
    result, peak = await run_cli_peak_rss(str(urls), "--config", str(_cli_config(tmp_path, 1_000_000)),
                                          "--output", str(out), "-q")
    assert result.code == 0, result.stderr
    (record,) = read_jsonl(out / "pages.jsonl")
    assert record["error"]["kind"] == "too_large", record["error"]
    assert record["attempts"] == 1 and srv.requests("/bomb") == 1
    assert record["bytes"] == 0 and record["status"] == 200
    assert peak < 300 * 1024 * 1024, f"peak RSS {peak / 2**20:.0f} MB"
    # it was a bomb: what was sent would have expanded to far more than max_bytes
    assert sent["bytes"] * 500 > 1_000_000
    print(f"gzip bomb ({BOMB_SIZE >> 20} MB): peak RSS {peak / 2**20:.0f} MB, "
          f"server sent {sent['bytes'] / 1024:.0f} KB compressed")


async def test_gzip_bomb_library_level(serve: Any) -> None:
    sent: dict[str, int] = {}
    srv = await serve({"/bomb": gzip_bomb_handler(sent)})
    pages = await crawl(config(fetch={"max_bytes": 2_000_000}), [srv.url("/bomb")])
    page = pages[srv.url("/bomb")]
    assert page.error is not None and page.error.kind == "too_large"
    assert page.attempts == 1 and page.bytes == 0


async def test_gzip_body_within_max_bytes_is_decoded(serve: Any) -> None:
    body = b"<html><head><title>zipped</title></head><body>" + b"y" * 100_000 + b"</body></html>"

    async def zipped(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(body), headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})

    srv = await serve({"/z": zipped})
    page = (await crawl(config(fetch={"max_bytes": 200_000}), [srv.url("/z")]))[srv.url("/z")]
    assert page.error is None and page.ok
    assert page.bytes == len(body)  # after content decoding
    assert page.title == "zipped"


# --- redirects ---------------------------------------------------------------------------


async def test_redirect_loop_is_too_many_redirects_not_retried(serve: Any) -> None:
    srv = await serve({"/a": redirect("/b"), "/b": redirect("/a")})
    page = (await crawl(config(fetch={"max_redirects": 10}), [srv.url("/a")]))[srv.url("/a")]
    assert page.error is not None and page.error.kind == "too_many_redirects"
    assert page.attempts == 1
    assert page.status == 302
    # 1 request + 10 redirects followed, then the 11th refused
    assert srv.requests("/a") + srv.requests("/b") == 11


@pytest.mark.parametrize("n", [0, 1, 3])
async def test_max_redirects_n_follows_exactly_n(serve: Any, n: int) -> None:
    routes: dict[str, Any] = {"/final": page_handler("<title>end</title>")}
    ok = await serve({**chain(n, prefix="/ok"), **routes})
    too_many = await serve({**chain(n + 1, prefix="/no"), **routes})
    start_ok = ok.url("/ok0") if n else ok.url("/final")
    cfg = config(fetch={"max_redirects": n})
    pages = await crawl(cfg, [start_ok, too_many.url("/no0")])

    good = pages[start_ok]
    assert good.error is None and good.ok and good.status == 200, good.error
    assert good.final_url == ok.url("/final") and good.title == "end"
    assert sum(ok.hits.values()) == n + 1

    bad = pages[too_many.url("/no0")]
    assert bad.error is not None and bad.error.kind == "too_many_redirects"
    assert bad.status == 302 and bad.attempts == 1
    assert too_many.requests("/final") == 0
    assert sum(too_many.hits.values()) == n + 1


async def test_redirect_to_file_or_other_scheme_is_blocked_and_never_requested(
    serve: Any, raw_serve: Any
) -> None:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()

    other: RawServer = await raw_serve(answer)
    srv = await serve({
        "/file": redirect("file:///etc/passwd"),
        "/ftp": redirect(f"ftp://127.0.0.1:{other.port}/x"),
        "/js": redirect("javascript:alert(1)", status=301),
    })
    pages = await crawl(config(), [srv.url("/file"), srv.url("/ftp"), srv.url("/js")])
    for path in ("/file", "/ftp", "/js"):
        page = pages[srv.url(path)]
        assert page.error is not None and page.error.kind == "blocked", (path, page.error)
        assert page.attempts == 1 and srv.requests(path) == 1
        assert page.final_url == srv.url(path)
    assert other.connections == 0


# --- retries ------------------------------------------------------------------------------


def _flaky(first: web.Response) -> Any:
    """First request gets `first`, later ones 200."""
    count = {"n": 0}

    async def handler(request: web.Request) -> web.Response:
        count["n"] += 1
        if count["n"] == 1:
            return first
        return web.Response(text="<title>fine</title>", content_type="text/html")

    return handler


async def crawl_one_timed(cfg: Any, srv: Any, path: str) -> tuple[Any, float, float]:
    """The page, the gap between its two requests' arrivals, and the slack the gap may need
    on top of its bound: twice the worst loop lag measured over it (a few ms when quiet)."""
    async with LoopLag() as lag:
        page = (await crawl(cfg, [srv.url(path)]))[srv.url(path)]
    a, b = starts_of(srv, path)  # loop.time() is time.monotonic(): LoopLag's clock
    return page, b - a, 2 * lag.worst(a, b)


async def test_429_retry_after_seconds_is_honoured(serve: Any) -> None:
    srv = await serve({"/x": _flaky(web.Response(status=429, headers={"Retry-After": "1"}))})
    page, gap, late = await crawl_one_timed(config(retry={"max_backoff": 10.0}), srv, "/x")
    assert page.ok and page.status == 200 and page.attempts == 2
    assert 1.0 <= gap < 1.6 + late, (gap, late)
    print(f"429_retry_after_seconds_is_honoured: gap {gap:.3f} s")


async def test_retry_after_http_date_is_honoured(serve: Any) -> None:
    # an HTTP date has whole seconds: 2 s ahead means a wait of between 1 and 2 s
    when = formatdate(time.time() + 2, usegmt=True)
    srv = await serve({"/x": _flaky(web.Response(status=503, headers={"Retry-After": when}))})
    page, gap, late = await crawl_one_timed(config(retry={"max_backoff": 10.0}), srv, "/x")
    assert page.ok and page.attempts == 2
    assert 0.9 <= gap < 2.6 + late, (gap, late)
    print(f"retry_after_http_date_is_honoured: gap {gap:.3f} s")


async def test_retry_after_is_capped_at_max_backoff(serve: Any) -> None:
    srv = await serve({"/x": _flaky(web.Response(status=429, headers={"Retry-After": "3600"}))})
    page, gap, late = await crawl_one_timed(config(retry={"max_backoff": 0.3}), srv, "/x")
    assert page.ok and page.attempts == 2
    assert 0.3 <= gap < 0.9 + late, (gap, late)
    print(f"retry_after_is_capped_at_max_backoff: gap {gap:.3f} s")


async def test_503_then_200_is_ok_after_two_attempts_and_404_is_final(serve: Any) -> None:
    srv = await serve({
        "/flaky": _flaky(web.Response(status=503, text="busy")),
        "/gone": page_handler("nope", status=404),
        "/down": page_handler("down", status=500),
    })
    pages = await crawl(config(retry={"attempts": 3}), [srv.url("/flaky"), srv.url("/gone"), srv.url("/down")])
    flaky = pages[srv.url("/flaky")]
    assert flaky.ok and flaky.error is None and flaky.status == 200 and flaky.attempts == 2
    assert flaky.title == "fine" and srv.requests("/flaky") == 2
    gone = pages[srv.url("/gone")]
    assert gone.error is not None and gone.error.kind == "http" and gone.status == 404
    assert gone.attempts == 1 and srv.requests("/gone") == 1
    down = pages[srv.url("/down")]
    assert down.error is not None and down.error.kind == "http" and down.status == 500
    assert down.attempts == 3 and srv.requests("/down") == 3


# --- error kinds told apart ------------------------------------------------------------------


async def _garbage_head(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nthis is not a header\r\n\x00\x01 also: bad\r\n\r\nbody")
    await writer.drain()


async def _garbage_status(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
    await writer.drain()


async def _endless_headers(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n")
    for i in range(100_000):
        writer.write(b"".join(b"X-Pad-%d-%d: %s\r\n" % (i, j, b"v" * 40) for j in range(100)))
        await writer.drain()
        await asyncio.sleep(0)  # drain() does not yield until the buffers are full: let the client run


async def _endless_header_line(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nX-Long: ")
    for _ in range(100_000):
        writer.write(b"a" * 4096)
        await writer.drain()
        await asyncio.sleep(0)


async def _broken_chunks(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"5\r\nhello\r\n")
    await writer.drain()
    await asyncio.sleep(0.1)  # the head has arrived; now the chunking breaks
    writer.write(b"not-a-size\r\nxxxx\r\n")
    await writer.drain()
    await asyncio.sleep(0.2)


async def _not_gzip(request: web.Request) -> web.Response:
    return web.Response(body=b"<html>this is not gzip</html>" * 10,
                        headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})


async def _silent(request: web.Request) -> web.Response:
    await asyncio.sleep(3600)
    raise AssertionError("unreachable")


async def _tls_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await read_head(reader)
    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: 20\r\n\r\n<title>tls</title>  ")
    await writer.drain()


async def test_error_kinds_are_told_apart(serve: Any, raw_serve: Any, tmp_path: Path) -> None:
    attempts = 2
    web_srv = await serve({
        "/silent": _silent,
        "/not-gzip": _not_gzip,
        "/to-file": redirect("file:///etc/passwd"),
        "/plain": page_handler("<title>plain</title>"),
    })
    raws = {name: await raw_serve(handler) for name, handler in {
        "garbage-head": _garbage_head,
        "garbage-status": _garbage_status,
        "endless-headers": _endless_headers,
        "endless-line": _endless_header_line,
        "broken-chunks": _broken_chunks,
    }.items()}
    cert, key = self_signed(tmp_path)
    tls_srv = await raw_serve(_tls_answer, tls=server_tls(cert, key))

    expected = {
        f"http://127.0.0.1:{free_port()}/": ("connect", None, attempts),
        web_srv.url("/silent"): ("timeout", None, attempts),
        web_srv.url("/not-gzip"): ("protocol", 200, attempts),
        web_srv.url("/to-file"): ("blocked", 302, 1),
        f"https://127.0.0.1:{web_srv.port}/plain": ("tls", None, 1),  # https to a plain-HTTP port
        tls_srv.url("/", scheme="https"): ("tls", None, 1),  # self-signed certificate
        "http://no-such-host.invalid/": ("dns", None, attempts),
        raws["garbage-head"].url("/"): ("protocol", None, attempts),
        raws["garbage-status"].url("/"): ("protocol", None, attempts),
        raws["endless-headers"].url("/"): ("protocol", None, attempts),
        raws["endless-line"].url("/"): ("protocol", None, attempts),
        raws["broken-chunks"].url("/"): ("protocol", 200, attempts),
    }
    cfg = config(fetch={"timeout": 1.0, "connect_timeout": 1.0}, retry={"attempts": attempts})
    async with LoopLag() as lag:
        pages = await crawl(cfg, list(expected))
    got = {url: (p.error.kind if p.error else None, p.status, p.attempts) for url, p in pages.items()}
    assert got == expected, {u: (g, pages[u].error) for u, g in got.items() if g != expected[u]}
    for url, page in pages.items():
        assert page.ok is False and page.bytes == 0 and page.error is not None
        assert page.error.message and "\n" not in page.error.message, url
    for name, server in raws.items():
        assert server.connections == attempts, name
    assert "certificate" in pages[tls_srv.url("/", scheme="https")].error.message  # type: ignore[union-attr]
    assert "no-such-host.invalid" in pages["http://no-such-host.invalid/"].error.message  # type: ignore[union-attr]
    assert web_srv.requests("/plain") == 0  # the TLS hello never made an HTTP request
    # none held the run past its timeout (plus what the load ate, measured)
    late = 2 * lag.worst()
    assert max(p.elapsed_ms for p in pages.values()) <= (1.0 + 0.7 + late) * 1000, (pages, late)


async def test_self_signed_tls_is_fetched_when_verify_tls_is_off(raw_serve: Any, tmp_path: Path) -> None:
    cert, key = self_signed(tmp_path)
    tls_srv = await raw_serve(_tls_answer, tls=server_tls(cert, key))
    url = tls_srv.url("/", scheme="https")
    page = (await crawl(config(fetch={"verify_tls": False}), [url]))[url]
    assert page.error is None and page.ok and page.title == "tls"


# --- the private-address rule -------------------------------------------------------------------


@pytest.mark.parametrize(
    "address, public",
    [
        ("127.0.0.1", False),
        ("127.8.9.10", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),  # cloud metadata
        ("100.64.0.1", False),  # carrier-grade NAT
        ("0.0.0.0", False),
        ("::1", False),
        ("::", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("fe80::1%eth0", False),
        ("fc00::1", False),
        ("224.0.0.1", False),
        ("not an address", False),
        ("8.8.8.8", True),
        ("93.184.216.34", True),
        ("2606:4700:4700::1111", True),
        ("::ffff:8.8.8.8", True),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


class _FakeResolver:
    """Answers from a table: no query leaves the process."""

    def __init__(self, answers: list[str]) -> None:
        self.answers = answers

    async def resolve(self, host: str, port: int = 0, family: int = socket.AF_INET) -> list[dict[str, Any]]:
        return [{"hostname": host, "host": a, "port": port, "family": socket.AF_INET6 if ":" in a else socket.AF_INET,
                 "proto": 0, "flags": 0} for a in self.answers]

    async def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "answers, kept",
    [
        (["127.0.0.1"], None),
        (["169.254.169.254"], None),
        (["10.0.0.5", "::1"], None),
        (["::ffff:127.0.0.1"], None),
        (["8.8.8.8"], ["8.8.8.8"]),
        (["127.0.0.1", "8.8.8.8", "10.0.0.1"], ["8.8.8.8"]),  # a rebinding answer: only the public one is dialled
    ],
)
async def test_public_only_resolver_drops_private_answers(answers: list[str], kept: list[str] | None) -> None:
    resolver = PublicOnlyResolver(_FakeResolver(answers))  # type: ignore[arg-type]
    if kept is None:
        with pytest.raises(BlockedAddressError):
            await resolver.resolve("evil.example", 80)
    else:
        assert [r["host"] for r in await resolver.resolve("evil.example", 80)] == kept


async def test_private_addresses_are_blocked_unless_allowed(serve: Any) -> None:
    srv = await serve(page_handler("<title>inside</title>"))
    cfg = config()
    async with Fetcher(cfg, Limiter(4, 4, 0.0)) as fetcher:
        literal = await fetcher.fetch(srv.url("/literal"), allow_private=False)
        named = await fetcher.fetch(f"http://localhost:{srv.port}/named", allow_private=False)
        allowed = await fetcher.fetch(srv.url("/allowed"), allow_private=True)
    for result in (literal, named):
        assert result.error is not None and result.error.kind == "blocked", result.error
        assert "127.0.0.1" in result.error.message
        # never requested (SPEC 5): attempts 0, final_url and status null, elapsed 0
        assert (result.attempts, result.final_url, result.status, result.elapsed_ms) == (0, None, None, 0)
        assert result.body is None and result.size == 0
    assert srv.requests("/literal") == 0 and srv.requests("/named") == 0
    assert allowed.ok and allowed.error is None and srv.requests("/allowed") == 1


async def test_redirect_from_public_host_to_private_address_is_blocked(serve: Any) -> None:
    inside = await serve(page_handler("<title>inside</title>"), host="127.0.0.1")
    outside = await serve({
        "/literal": redirect(inside.url("/secret")),
        "/named": redirect(f"http://localhost:{inside.port}/secret"),  # DNS points the name inside
        "/page": page_handler("<title>outside</title>"),
    }, host="127.0.0.3")
    # 127.0.0.3 plays a public host: only the fetcher's idea of "public" differs
    async with Fetcher(config(), Limiter(4, 4, 0.0), is_public=lambda a: a == "127.0.0.3" or is_public_address(a)) as f:
        allow_private = await f.is_private_host("127.0.0.3")  # as the crawl asks of a seed
        assert allow_private is False
        pages = {url: await f.fetch(url, allow_private=allow_private)
                 for url in (outside.url("/literal"), outside.url("/named"), outside.url("/page"))}
    assert pages[outside.url("/page")].ok  # the "public" seed itself is fetched
    for path in ("/literal", "/named"):
        page = pages[outside.url(path)]
        assert page.error is not None and page.error.kind == "blocked", (path, page.error)
        assert page.attempts == 1 and outside.requests(path) == 1
        assert page.status == 302  # the last response that came
        assert page.final_url == (inside.url("/secret") if path == "/literal" else f"http://localhost:{inside.port}/secret")
    assert inside.requests("/secret") == 0  # refused before connecting


async def test_a_proxy_on_localhost_serves_public_pages(serve: Any) -> None:
    async def proxy(request: web.Request) -> web.Response:
        return web.Response(text=f"<title>via proxy: {request.url}</title>", content_type="text/html")

    srv = await serve(proxy)
    cfg = config(fetch={"proxy": f"http://localhost:{srv.port}"})
    async with Fetcher(cfg, Limiter(4, 4, 0.0)) as fetcher:
        # the proxy resolves the page's host, not us: a name under .invalid shows no lookup happened here
        public = await fetcher.fetch("http://public-site.invalid/page", allow_private=False)
        private = await fetcher.fetch("http://10.0.0.1/admin", allow_private=False)
    assert public.ok and public.error is None, public.error
    assert srv.requests("/page") == 1
    # a literal private address is still refused, proxy or not
    assert private.error is not None and private.error.kind == "blocked"
    assert srv.requests("/admin") == 0


async def test_kept_alive_connection_reset_by_the_server_is_quiet(
    raw_serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async def reset_when_idle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)  # the head first: the body is read from a live connection
        writer.write(b"ok")
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()  # RST while the connection idles in the client's pool

    srv = await raw_serve(reset_when_idle)
    async with Fetcher(config(), Limiter(4, 4, 0.0)) as fetcher:
        first = await fetcher.fetch(srv.url("/"), allow_private=True)
        await asyncio.sleep(0.3)
        second = await fetcher.fetch(srv.url("/"), allow_private=True)
        gc.collect()
        await asyncio.sleep(0.05)
    assert first.ok and second.ok and first.body == second.body == b"ok"
    assert srv.connections == 2
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


@pytest.mark.parametrize("parser", ["c", "python"])
async def test_protocol_errors_with_either_of_aiohttps_parsers(
    serve: Any, raw_serve: Any, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    if parser == "python":  # what runs where aiohttp has no C extension (AIOHTTP_NO_EXTENSIONS, PyPy)
        monkeypatch.setattr(aiohttp.client_proto, "HttpResponseParser", HttpResponseParserPy)
    web_srv = await serve({"/not-gzip": _not_gzip})
    urls = {
        "broken-chunks": (await raw_serve(_broken_chunks)).url("/"),
        "garbage-head": (await raw_serve(_garbage_head)).url("/"),
        "endless-headers": (await raw_serve(_endless_headers)).url("/"),
        "not-gzip": web_srv.url("/not-gzip"),
    }
    cfg = config(fetch={"timeout": 2.0}, retry={"attempts": 1})
    async with Fetcher(cfg, Limiter(8, 8, 0.0)) as fetcher:
        results = await asyncio.gather(*(fetcher.fetch(url, allow_private=True) for url in urls.values()))
    kinds = {name: (r.error.kind if r.error else None, r.elapsed_ms < 1500)
             for name, r in zip(urls, results, strict=True)}
    assert kinds == {name: ("protocol", True) for name in urls}, [r.error for r in results]
