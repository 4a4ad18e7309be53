"""Retries, Retry-After and error statuses, with HTTP mocked by aioresponses."""

from __future__ import annotations

import itertools
import time

import pytest

from scraper import Scraper
from tests.conftest import LoopLag, config

URL = "http://localhost:8000/page"  # mocked: no request leaves the process


@pytest.fixture
def mocked(mock_http):
    return mock_http


async def crawl_one(cfg, url=URL):
    async with Scraper(cfg) as s:
        return [p async for p in s.crawl([url])]


async def test_503_then_200_takes_two_attempts(mocked, tmp_path):
    mocked.get(URL, status=503)
    mocked.get(URL, status=200, body="<title>ok</title>", content_type="text/html")
    [page] = await crawl_one(config(tmp_path))
    assert page.ok is True
    assert page.status == 200
    assert page.attempts == 2
    assert page.error is None
    assert page.title == "ok"


async def test_404_is_final_after_one_attempt(mocked, tmp_path):
    mocked.get(URL, status=404)
    mocked.get(URL, status=200)  # would be taken by a wrong retry
    [page] = await crawl_one(config(tmp_path))
    assert page.attempts == 1
    assert page.status == 404
    assert page.ok is False
    assert page.error is not None and page.error.kind == "http"


async def test_retries_stop_at_attempts(mocked, tmp_path):
    for _ in range(5):
        mocked.get(URL, status=500)
    [page] = await crawl_one(config(tmp_path, retry={"attempts": 4}))
    assert page.attempts == 4
    assert page.status == 500
    assert page.error.kind == "http"


async def test_429_retry_after_is_honoured(mocked, tmp_path):
    mocked.get(URL, status=429, headers={"Retry-After": "1"})
    mocked.get(URL, status=200, body="<title>x</title>", content_type="text/html")
    started = time.monotonic()
    [page] = await crawl_one(config(tmp_path, retry={"backoff": 0.01, "max_backoff": 5.0}))
    waited = time.monotonic() - started
    assert page.ok and page.attempts == 2
    assert waited >= 1.0


async def test_retry_after_is_capped_by_max_backoff(mocked, tmp_path):
    times = []

    def stamp(url, **kwargs):  # in-process: the moment the scraper makes the request
        times.append(time.monotonic())

    mocked.get(URL, status=503, headers={"Retry-After": "3600"}, callback=stamp)
    mocked.get(URL, status=200, body="x", content_type="text/plain", callback=stamp)
    async with LoopLag() as lag:
        [page] = await crawl_one(config(tmp_path, retry={"backoff": 0.01, "max_backoff": 0.3}))
    assert page.ok and page.attempts == 2
    a, b = times
    assert 0.3 <= b - a < 3 + 2 * lag.worst(a, b), (b - a, lag.worst(a, b))


async def test_status_outside_retry_statuses_is_not_retried(mocked, tmp_path):
    mocked.get(URL, status=503)
    mocked.get(URL, status=200)
    [page] = await crawl_one(config(tmp_path, retry={"statuses": [500]}))
    assert page.attempts == 1 and page.status == 503


async def test_connection_error_is_retried(mocked, tmp_path):
    import aiohttp

    mocked.get(URL, exception=aiohttp.ClientOSError(104, "Connection reset by peer"))
    mocked.get(URL, status=200, body="<title>back</title>", content_type="text/html")
    [page] = await crawl_one(config(tmp_path))
    assert page.ok and page.attempts == 2 and page.title == "back"


async def test_timeout_is_retried_then_reported(mocked, tmp_path):

    for _ in range(3):
        mocked.get(URL, exception=TimeoutError())
    [page] = await crawl_one(config(tmp_path, retry={"attempts": 3}))
    assert page.attempts == 3
    assert page.status is None
    assert page.error.kind == "timeout"


async def test_backoff_doubles_with_jitter(mocked, tmp_path):
    times = []

    def stamp(url, **kwargs):  # in-process: the moment the scraper makes the request
        times.append(time.monotonic())

    for _ in range(3):
        mocked.get(URL, status=503, callback=stamp)
    mocked.get(URL, status=200, body="x", content_type="text/plain", callback=stamp)
    async with LoopLag() as lag:
        [page] = await crawl_one(config(tmp_path, retry={"attempts": 4, "backoff": 0.1, "max_backoff": 10.0}))
    assert page.ok and page.attempts == 4
    gaps = [b - a for a, b in itertools.pairwise(times)]
    # waits of backoff * 2**k plus up to `backoff` of jitter: [0.1, 0.2), [0.2, 0.3), [0.4, 0.5).
    # A sleep never ends early; it may end late by what the load took (measured), plus the
    # retry's own work between the wake and the next request.
    for (a, b), low in zip(itertools.pairwise(times), (0.1, 0.2, 0.4), strict=True):
        late = 0.03 + 2 * lag.worst(a, b)
        assert low <= b - a < low + 0.1 + late, (gaps, lag.worst(a, b))
