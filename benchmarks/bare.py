"""The baseline: a bare aiohttp fetch loop, nothing else.

One `ClientSession`, a semaphore of `concurrency`, every body read in full;
no parsing, no records, no retries. It is the fastest a Python asyncio
client on this machine can go, so "ours / bare" shows what the scraper's
pipeline costs on top of fetching.

URLs are read lazily and a task is created only when a slot is free, so a
huge URL file costs no memory here either. A small sampler measures the
event loop's lag (how late a 50 ms sleep wakes up), for comparison with the
scraper's `loop_lag_p99_ms`.

    python -m benchmarks.bare URLS_FILE --concurrency 64 [--limit N]

prints one JSON object: pages, ok, errors, bytes, elapsed_s, pages_per_s,
loop_lag_p99_ms.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import aiohttp

__all__ = ["BareResult", "fetch_all", "pages_per_second", "read_urls"]

LAG_INTERVAL = 0.05  # as the scraper samples its own loop


@dataclass(frozen=True)
class BareResult:
    pages: int  # requests finished, ok or not
    ok: int  # 2xx with the body read in full
    errors: int
    bytes: int
    elapsed_s: float  # first request to last body, inside the loop
    pages_per_s: float
    loop_lag_p99_ms: float | None


def read_urls(path: str | Path, limit: int | None = None) -> Iterator[str]:
    """The URLs of a urls.txt, lazily: blank lines and `#` comments skipped."""
    with open(path, encoding="utf-8", errors="replace") as f:
        urls = (s for line in f if (s := line.strip()) and not s.startswith("#"))
        yield from itertools.islice(urls, limit)


def p99(samples: list[float]) -> float | None:
    if not samples:
        return None
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]


async def _sample_lag(samples: list[float]) -> None:
    loop = asyncio.get_running_loop()
    while True:
        start = loop.time()
        await asyncio.sleep(LAG_INTERVAL)
        samples.append(max(0.0, loop.time() - start - LAG_INTERVAL) * 1000)


async def fetch_all(urls: Iterable[str], concurrency: int, timeout: float = 30.0) -> BareResult:
    """Fetch every URL with at most `concurrency` in flight and read the bodies."""
    sem = asyncio.Semaphore(concurrency)
    counts = {"pages": 0, "ok": 0, "errors": 0, "bytes": 0}
    lag: list[float] = []

    async def fetch(session: aiohttp.ClientSession, url: str) -> None:
        try:
            async with session.get(url) as response:
                body = await response.read()
                counts["bytes"] += len(body)
                counts["ok"] += 200 <= response.status < 300
        except (TimeoutError, aiohttp.ClientError):
            counts["errors"] += 1
        finally:
            counts["pages"] += 1
            sem.release()

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    sampler = asyncio.create_task(_sample_lag(lag))
    start = time.perf_counter()
    async with (
        aiohttp.ClientSession(connector=connector, timeout=client_timeout) as session,
        asyncio.TaskGroup() as tasks,
    ):
        for url in urls:
            await sem.acquire()  # released by fetch: a task exists only for a free slot
            tasks.create_task(fetch(session, url))
    elapsed = time.perf_counter() - start
    sampler.cancel()
    pages = counts["pages"]
    return BareResult(
        pages=pages,
        ok=counts["ok"],
        errors=counts["errors"],
        bytes=counts["bytes"],
        elapsed_s=elapsed,
        pages_per_s=pages / elapsed if elapsed > 0 else 0.0,
        loop_lag_p99_ms=p99(lag),
    )


def pages_per_second(urls: Iterable[str], concurrency: int) -> float:
    """Fetch the URLs (blocking) and return pages per second."""
    return asyncio.run(fetch_all(urls, concurrency)).pages_per_s


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Bare aiohttp fetch loop (baseline).")
    parser.add_argument("urls_file")
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--limit", type=int, help="fetch only the first N URLs")
    parser.add_argument("--timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    result = asyncio.run(fetch_all(read_urls(args.urls_file, args.limit), args.concurrency, args.timeout))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main()
