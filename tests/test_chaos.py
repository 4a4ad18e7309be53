"""Many misbehaving URLs at once: every URL gets exactly one record of the right kind, and the run ends."""

from __future__ import annotations

import asyncio
import time

from aiohttp import web

from scraper import Scraper
from tests.conftest import config, html

_FLAKY_SEEN: set[str] = set()
KINDS = ("ok", "missing", "flaky", "limited", "hang", "reset", "drip", "loop", "huge", "pdf")


async def chaos(request: web.Request) -> web.StreamResponse:
    kind, n = request.path.strip("/").split("/")
    if kind == "ok":
        return web.Response(text=html(f"ok {n}", [f"/ok/{n}"]), content_type="text/html")
    if kind == "missing":
        return web.Response(status=404, text="gone")
    if kind == "flaky":  # 503 on the first try of each URL, then fine
        if n not in _FLAKY_SEEN:
            _FLAKY_SEEN.add(n)
            return web.Response(status=503)
        return web.Response(text=html(f"flaky {n}"), content_type="text/html")
    if kind == "limited":
        return web.Response(status=429, headers={"Retry-After": "0"})
    if kind == "hang":  # never answers: cancelled when the client gives up
        await asyncio.Event().wait()
    if kind == "reset":
        request.transport.close()  # type: ignore[union-attr]
        await asyncio.sleep(1)
    if kind == "drip":
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        while True:  # a byte now and then, for as long as the client listens
            await resp.write(b"<p>")
            await asyncio.sleep(0.1)
    if kind == "loop":
        raise web.HTTPFound(f"/loop/{n}")
    if kind == "huge":
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        await resp.prepare(request)
        for _ in range(64):  # 1 MB, far past max_bytes, in pieces: cut off while it streams
            await resp.write(b"x" * 16384)
        return resp
    return web.Response(body=b"%PDF-1.4", content_type="application/pdf")


EXPECTED = {
    "ok": None, "missing": "http", "flaky": None, "limited": "http", "hang": "timeout", "reset": "connect",
    "drip": "timeout", "loop": "too_many_redirects", "huge": "too_large", "pdf": None,
}


async def timeout_for_this_machine(site, tmp_path) -> float:
    """The fetch timeout: what "hang" and "drip" must meet, and what every other kind must never
    come near. So it is set from this machine as it is now: four times the slowest attempt of
    a crawl of the kinds that answer (the same crawl as the test's, with no timeout to meet),
    between 1.5 s and 20 s. A loaded machine gets a longer test, not a failing one."""
    kinds = ("ok", "missing", "reset", "loop", "huge", "pdf")
    urls = [site.url(f"/{kinds[i % len(kinds)]}/calibrate-{i}") for i in range(140)]
    cfg = config(
        tmp_path,
        fetch={"timeout": 60.0, "connect_timeout": 60.0, "max_bytes": 200_000, "max_redirects": 3,
               "concurrency": 64, "per_host": 64},
        retry={"attempts": 1},
    )
    async with Scraper(cfg) as s:
        slowest = max([p.elapsed_ms async for p in s.crawl(urls)]) / 1000
    return min(max(1.5, 4 * slowest), 20.0)


async def test_every_url_gets_one_record_of_the_right_kind(serve, tmp_path):
    _FLAKY_SEEN.clear()
    site = await serve(chaos)
    urls = [site.url(f"/{KINDS[i % len(KINDS)]}/{i}") for i in range(200)]
    timeout = await timeout_for_this_machine(site, tmp_path)
    cfg = config(
        tmp_path,
        fetch={"timeout": timeout, "connect_timeout": timeout, "max_bytes": 200_000, "max_redirects": 3,
               "concurrency": 64, "per_host": 64},
        retry={"attempts": 2, "backoff": 0.01, "max_backoff": 0.05},
    )
    started = time.monotonic()
    async with Scraper(cfg) as s:
        pages = [p async for p in s.crawl(urls)]
    elapsed = time.monotonic() - started
    print(f"timeout {timeout:.2f} s, run {elapsed:.2f} s")
    assert sorted(p.url for p in pages) == sorted(urls)
    for page in pages:
        kind = page.url.split("/")[3]
        got = page.error.kind if page.error else None
        assert got == EXPECTED[kind], (page.url, page.error)
        assert page.ok == (got is None)
        if kind == "flaky":
            assert page.attempts == 2
        if kind in ("hang", "drip", "reset", "limited"):
            assert page.attempts == 2  # retried once, then given up
        if kind in ("missing", "loop", "huge"):
            assert page.attempts == 1
    # not a speed claim: a server that never answers must not hold the run past its caps
    # (the slowest URLs cost two attempts of `timeout` each, all in parallel)
    assert elapsed < 10 * timeout, (elapsed, timeout)
