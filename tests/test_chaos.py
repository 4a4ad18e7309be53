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
        for _ in range(100):
            await resp.write(b"<p>")
            await asyncio.sleep(0.1)
        return resp
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


async def test_every_url_gets_one_record_of_the_right_kind(serve, tmp_path):
    _FLAKY_SEEN.clear()
    site = await serve(chaos)
    urls = [site.url(f"/{KINDS[i % len(KINDS)]}/{i}") for i in range(200)]
    # the timeout is what "hang" and "drip" meet; every other kind answers in far less, even on a
    # loaded machine (one that stalls the loop for longer would turn their first try into a retry)
    cfg = config(
        tmp_path,
        fetch={"timeout": 1.5, "connect_timeout": 1.5, "max_bytes": 200_000, "max_redirects": 3,
               "concurrency": 64, "per_host": 64},
        retry={"attempts": 2, "backoff": 0.01, "max_backoff": 0.05},
    )
    started = time.monotonic()
    async with Scraper(cfg) as s:
        pages = [p async for p in s.crawl(urls)]
    elapsed = time.monotonic() - started
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
    # (the slowest URLs cost two 1.5 s attempts each, all in parallel)
    assert elapsed < 30
