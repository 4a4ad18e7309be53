"""A shared crawl on Redis (SPEC 8): many workers, one crawl, SPEC 6 kept together.

The CLI tests start real `python -m scraper` workers (SCRAPER_WORKER=w1, w2,
w3) on one output folder and one throwaway redis-server; a loopback site of
1,000 linked pages counts what it serves, and to whom (each worker has its own
user agent). The in-process tests drive `RedisFrontier` directly to put a
crash exactly into each window of the record -> shard path.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper.config import FrontierConfig, OutputConfig
from scraper.errors import UsageError
from scraper.frontier import Item, redis_shard
from scraper.frontier.redis import RedisFrontier
from tests.conftest import ROOT, Server, html, read_jsonl, write_config
from tests.redis_server import RedisServer, free_port, start_redis

PAGES = 1000


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    with start_redis() as server:
        yield server


def job() -> str:
    return "test-" + uuid.uuid4().hex[:12]


# --- the site and the workers ----------------------------------------------------------


class Site:
    """`/n/I` for I < pages: a tree (node I links to 3I+1..3I+3), each page also linking
    back to the root and to its parent. Counts page requests per worker (user agent)."""

    def __init__(self, pages: int = PAGES, delay: float = 0.01) -> None:
        self.pages = pages
        self.delay = delay
        self.by_worker: Counter[str] = Counter()
        self.by_path: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.most_workers_in_flight = 0  # distinct workers with a request in flight at one time
        self.server: Server | None = None
        self._served = asyncio.Event()

    async def until(self, predicate: Any) -> None:
        """Wait (30 s at most) until `predicate()` holds, checked at every request."""
        async with asyncio.timeout(30):
            while not predicate():
                self._served.clear()
                await self._served.wait()

    async def handler(self, request: web.Request) -> web.Response:
        worker = request.headers.get("User-Agent", "").split("/")[0]
        self.by_worker[worker] += 1
        self.by_path[request.path] += 1
        self._served.set()
        self.in_flight[worker] += 1
        self.most_workers_in_flight = max(self.most_workers_in_flight, sum(1 for n in self.in_flight.values() if n))
        try:
            await asyncio.sleep(self.delay)
        finally:
            self.in_flight[worker] -= 1
        i = int(request.match_info["tail"].rsplit("/", 1)[-1])
        links = [f"/n/{c}" for c in range(3 * i + 1, 3 * i + 4) if c < self.pages]
        links += ["/n/0", f"/n/{(i - 1) // 3 if i else 0}"]
        return web.Response(text=html(f"node {i}", links), content_type="text/html")

    @property
    def total(self) -> int:
        return sum(self.by_worker.values())

    def urls(self) -> set[str]:
        assert self.server is not None
        return {self.server.url(f"/n/{i}") for i in range(self.pages)}


async def start_site(serve: Any, site: Site) -> Site:
    site.server = await serve(site.handler)
    return site


def worker_files(
    tmp_path: Path, redis_url: str, job_name: str, name: str, seeds: list[str], depth: int = 20, **fetch: Any
) -> tuple[Path, Path]:
    """(urls file, config file) of worker `name`: robots off, a 2 s lease."""
    urls = tmp_path / f"urls-{name}.txt"
    urls.write_text("".join(u + "\n" for u in seeds), encoding="utf-8")
    fetch_lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in fetch.items())
    cfg = write_config(
        tmp_path / f"config-{name}.toml",
        f'[fetch]\nobey_robots = false\nuser_agent = "scraper-{name}/1"\ntimeout = 10.0\n{fetch_lines}'
        "[retry]\nbackoff = 0.01\nmax_backoff = 0.1\n"
        f"[crawl]\ndepth = {depth}\n"
        "[parse]\nworkers = 1\n"
        f'[frontier]\nbackend = "redis"\nurl = "{redis_url}"\njob = "{job_name}"\nlease = 2.0\n',
    )
    return urls, cfg


async def start_worker(name: str, urls: Path, cfg: Path, out: Path, *extra: str) -> asyncio.subprocess.Process:
    """`python -m scraper` as worker `name`, in a session of its own (SIGKILL takes its parse workers too)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCRAPER_WORKER": name}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", str(urls), "--config", str(cfg), "--output", str(out), "-q", *extra,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 60) -> tuple[int, str]:
    _, err = await asyncio.wait_for(proc.communicate(), timeout)
    return proc.returncode if proc.returncode is not None else -1, err.decode()


def shards(out: Path) -> dict[str, list[dict[str, Any]]]:
    return {p.name: read_jsonl(p) for p in sorted(out.glob("pages-*.jsonl"))}


def union(out: Path) -> list[str]:
    return [r["url"] for records in shards(out).values() for r in records]


def assert_exactly_once(out: Path, expected: set[str]) -> None:
    urls = union(out)
    twice = [u for u, n in Counter(urls).items() if n > 1]
    assert not twice, f"recorded twice: {twice[:5]}"
    assert set(urls) == expected, f"missing {len(expected - set(urls))}, extra {len(set(urls) - expected)}"


def assert_job_clean(redis_server: RedisServer, job_name: str) -> None:
    """Nothing left in flight: no lease, nothing outstanding or pending, every outbox written."""
    r: Any = redis_server.client()
    p = f"scraper:{{{job_name}}}:"
    assert int(r.get(p + "outstanding") or 0) == 0
    assert r.zcard(p + "pending") == 0
    assert r.hlen(p + "lease") == 0
    for key in r.scan_iter(p + "outbox:*"):
        assert r.llen(key) == 0, key
    for key in r.scan_iter(p + "flushing:*"):
        assert r.llen(key) == 0, key


# --- workers together ---------------------------------------------------------------


async def test_three_workers_record_every_page_exactly_once(serve: Any, redis_server: RedisServer, tmp_path: Path):
    site = await start_site(serve, Site(delay=0.02))
    name = job()
    out = tmp_path / "out"
    procs = []
    for w in ("w1", "w2", "w3"):
        urls, cfg = worker_files(tmp_path, redis_server.url, name, w, [site.server.url("/n/0")], per_host=16)
        procs.append(await start_worker(w, urls, cfg, out))
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [code for code, _ in results] == [0, 0, 0], results
    assert_exactly_once(out, site.urls())
    assert site.total == PAGES  # and each fetched once
    per_shard = {name: len(records) for name, records in shards(out).items()}
    assert set(per_shard) == {"pages-w1.jsonl", "pages-w2.jsonl", "pages-w3.jsonl"}
    assert sum(1 for n in per_shard.values() if n) >= 2, per_shard  # the work was shared
    assert all(r["ok"] for records in shards(out).values() for r in records)
    assert sorted(p.name for p in out.glob("stats-*.json")) == ["stats-w1.json", "stats-w2.json", "stats-w3.json"]
    assert_job_clean(redis_server, name)


async def test_a_killed_worker_s_pages_are_finished_by_the_others(
    serve: Any, redis_server: RedisServer, tmp_path: Path
):
    site = await start_site(serve, Site(delay=0.02))
    name = job()
    out = tmp_path / "out"
    procs = {}
    for w in ("w1", "w2", "w3"):
        urls, cfg = worker_files(tmp_path, redis_server.url, name, w, [site.server.url("/n/0")], per_host=16)
        procs[w] = await start_worker(w, urls, cfg, out)
    # the busiest worker, once it is well under way: pages leased, records on their way to its shard
    await site.until(lambda: site.total >= 200 and max(site.by_worker.values()) >= 60)
    assert site.total < PAGES * 0.8
    victim = site.by_worker.most_common(1)[0][0].removeprefix("scraper-")
    os.killpg(procs[victim].pid, signal.SIGKILL)
    code, _ = await finish(procs.pop(victim))
    assert code == -signal.SIGKILL
    results = await asyncio.gather(*(finish(p) for p in procs.values()))
    assert [code for code, _ in results] == [0, 0], results
    assert_exactly_once(out, site.urls())
    assert_job_clean(redis_server, name)


async def test_a_worker_restarted_with_resume_repairs_its_shard_and_finishes(
    serve: Any, redis_server: RedisServer, tmp_path: Path
):
    site = await start_site(serve, Site(pages=400, delay=0.02))
    name = job()
    out = tmp_path / "out"
    urls, cfg = worker_files(tmp_path, redis_server.url, name, "w1", [site.server.url("/n/0")], per_host=8)
    proc = await start_worker("w1", urls, cfg, out)
    await site.until(lambda: site.total >= 100)
    os.killpg(proc.pid, signal.SIGKILL)
    await finish(proc)
    again = await start_worker("w1", urls, cfg, out, "--resume")
    code, err = await finish(again)
    assert code == 0, err
    assert_exactly_once(out, site.urls())
    assert_job_clean(redis_server, name)


async def test_max_pages_holds_over_all_workers(serve: Any, redis_server: RedisServer, tmp_path: Path):
    site = await start_site(serve, Site(delay=0.01))
    name = job()
    out = tmp_path / "out"
    procs = []
    for w in ("w1", "w2", "w3"):
        urls, cfg = worker_files(tmp_path, redis_server.url, name, w, [site.server.url("/n/0")], per_host=16)
        procs.append(await start_worker(w, urls, cfg, out, "--max-pages", "60"))
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [code for code, _ in results] == [0, 0, 0], results
    assert site.total == 60  # the server saw exactly N page fetches
    urls = union(out)
    fetched = {site.server.url(path) for path in site.by_path}
    assert len(urls) == len(set(urls)), "a page recorded twice"
    assert set(urls) == fetched, (fetched - set(urls), set(urls) - fetched, site.by_path.most_common(3), results)


def own_seeds(site: Site, k: int) -> list[str]:
    """The k-th of three equal slices of the site: each worker has its own URLs to fetch."""
    assert site.server is not None
    return [site.server.url(f"/n/{i}") for i in range(k, site.pages, 3)]


async def test_per_host_limit_holds_over_all_workers(serve: Any, redis_server: RedisServer, tmp_path: Path):
    site = await start_site(serve, Site(pages=180, delay=0.03))
    name = job()
    out = tmp_path / "out"
    procs = []
    for k, w in enumerate(("w1", "w2", "w3")):
        urls, cfg = worker_files(tmp_path, redis_server.url, name, w, own_seeds(site, k), depth=0, per_host=2)
        procs.append(await start_worker(w, urls, cfg, out))
    results = await asyncio.gather(*(finish(p) for p in procs))
    assert [code for code, _ in results] == [0, 0, 0], results
    assert_exactly_once(out, site.urls())
    assert sorted(site.by_worker.values()) == [60, 60, 60]
    assert site.server.max_in_flight == 2  # never more over the three workers
    assert site.most_workers_in_flight == 2  # while they competed for the host


class HostStarts:
    """The request starts the workers wrote to Redis, in Redis's own clock (read with MONITOR).

    A worker starting a request under a delay sets the host's next allowed start:
    `SET ...host:H:next <start ms + delay ms>`. These are the starts as the scraper
    made them; a server sees each one after a lag that a loaded machine stretches.
    """

    def __init__(self, redis_server: RedisServer, host: str) -> None:
        self.redis_server = redis_server
        self.key_end = f":host:{host}:next"
        self.next_ms: list[int] = []
        self._task: asyncio.Task[None] | None = None
        self._mark = "mark-" + uuid.uuid4().hex
        self._marked = asyncio.Event()

    async def __aenter__(self) -> HostStarts:
        import redis.asyncio

        client = redis.asyncio.Redis(host="127.0.0.1", port=self.redis_server.port)
        monitor = client.monitor()
        await monitor.__aenter__()  # MONITOR is on before any worker starts

        async def listen() -> None:
            try:
                async for command in monitor.listen():
                    words = command["command"].split()
                    if words[-1:] == [self._mark]:
                        self._marked.set()
                    elif len(words) >= 3 and words[0].upper() == "SET" and words[1].endswith(self.key_end):
                        self.next_ms.append(int(words[2]))
            finally:
                await monitor.__aexit__()
                await client.aclose()

        self._task = asyncio.create_task(listen())
        return self

    async def read_all(self) -> None:
        """Wait until MONITOR has shown every command sent so far: it shows them in order,
        so once it shows a mark sent now, the commands before it were read."""
        self.redis_server.client().echo(self._mark)  # type: ignore[attr-defined]
        async with asyncio.timeout(30):
            await self._marked.wait()

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])


async def test_delay_holds_over_all_workers(serve: Any, redis_server: RedisServer, tmp_path: Path):
    site = await start_site(serve, Site(pages=24, delay=0.0))
    name = job()
    out = tmp_path / "out"
    procs = []
    async with HostStarts(redis_server, site.server.host) as starts:
        for k, w in enumerate(("w1", "w2", "w3")):
            urls, cfg = worker_files(tmp_path, redis_server.url, name, w, own_seeds(site, k), depth=0, delay=0.05)
            procs.append(await start_worker(w, urls, cfg, out))
        results = await asyncio.gather(*(finish(p) for p in procs))
        await starts.read_all()
    assert [code for code, _ in results] == [0, 0, 0], results
    assert_exactly_once(out, site.urls())
    assert sorted(site.by_worker.values()) == [8, 8, 8]
    # 50 ms between request starts over the three workers, in Redis's clock (whole ms): without
    # a shared delay the three workers would start together, a few ms apart
    assert len(starts.next_ms) == 24, starts.next_ms
    gaps = [b - a for a, b in itertools.pairwise(starts.next_ms)]
    assert min(gaps) >= 50, gaps


async def test_unreachable_redis_is_a_usage_error(tmp_path: Path):
    port = free_port()  # nothing listens there
    urls, cfg = worker_files(tmp_path, f"redis://127.0.0.1:{port}/0", job(), "w1", ["http://127.0.0.1:9/"])
    out = tmp_path / "out"
    proc = await start_worker("w1", urls, cfg, out)
    code, err = await finish(proc)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"scraper: error: cannot reach Redis at redis://127.0.0.1:{port}/0: "), err
    assert not out.exists()  # nothing written


# --- the crash windows, one by one ----------------------------------------------------


def frontier(redis_server: RedisServer, job_name: str, out: Path, worker: str, lease: float = 0.5) -> RedisFrontier:
    cfg = FrontierConfig(backend="redis", url=redis_server.url, job=job_name, lease=lease)
    return RedisFrontier(cfg, output=OutputConfig(dir=str(out)), worker=worker)


async def crash(f: RedisFrontier) -> None:
    """What SIGKILL leaves: no goodbye to Redis (leases and name run out); the shard's lock goes with the process."""
    assert f.writer is not None
    await f.writer.stop()
    f.writer.close_file()
    await f.link.close()


def line(url: str) -> str:
    return json.dumps({"url": url}) + "\n"


async def seeded(f: RedisFrontier, n: int) -> list[Item]:
    items = [Item(url=f"http://site.test/{i}") for i in range(n)]
    for item in items:
        assert await f.add_seed(item)
    return items


async def test_a_worker_whose_lease_ran_out_cannot_record(redis_server: RedisServer, tmp_path: Path):
    name = job()
    a = frontier(redis_server, name, tmp_path, "a", lease=0.3)
    [item] = await seeded(a, 1)
    a.close_seeds()
    await a.link.close()  # a loses Redis: no heartbeat, its lease runs out
    b = frontier(redis_server, name, tmp_path, "b", lease=0.3)
    b.close_seeds()
    taken = await asyncio.wait_for(b.next(), 5)
    assert taken is not None and taken.url == item.url
    assert await b.record(taken, line("from b"))
    assert not await a.record(item, line("from a"))  # back, and fenced: its token is stale
    await a.close()
    assert await b.next() is None  # the crawl is over
    await b.close()
    assert [r["url"] for rs in shards(tmp_path).values() for r in rs] == ["from b"]


async def test_a_late_record_counts_when_it_comes_first(redis_server: RedisServer, tmp_path: Path):
    """A stalled worker's lease ran out: its record still counts while nobody has recorded the URL."""
    name = job()
    a = frontier(redis_server, name, tmp_path, "a", lease=0.3)
    first, second = await seeded(a, 2)
    a.close_seeds()
    await a.link.close()  # a stalls: no heartbeat, both leases run out
    b = frontier(redis_server, name, tmp_path, "b", lease=0.3)
    b.close_seeds()
    taken = [await asyncio.wait_for(b.next(), 5) for _ in range(2)]  # both back in pending, and b takes them
    assert {t.url for t in taken if t is not None} == {first.url, second.url}
    assert await a.record(first, line(first.url + "#a"))  # a comes first: b holds it, but a's record counts
    assert await b.record(taken[1] if taken[1].url == second.url else taken[0], line(second.url + "#b"))
    assert not await a.record(second, line(second.url + "#a"))  # b came first
    assert not await b.record(next(t for t in taken if t.url == first.url), line(first.url + "#b"))
    await a.close()
    assert await b.next() is None  # nothing outstanding: each URL recorded once
    await b.close()
    assert sorted(union(tmp_path)) == sorted([first.url + "#a", second.url + "#b"])
    assert_job_clean(redis_server, name)


async def test_a_late_record_takes_its_url_out_of_pending(redis_server: RedisServer, tmp_path: Path):
    """Nobody took the URL again (max_pages spent, say): the late record is kept, and the crawl can end."""
    name = job()
    a = frontier(redis_server, name, tmp_path, "a", lease=0.3)
    [item] = await seeded(a, 1)
    a.close_seeds()
    await a.link.close()  # a stalls: no heartbeat, its lease runs out
    b = frontier(redis_server, name, tmp_path, "b", lease=0.3)
    b.close_seeds()
    taken = await asyncio.wait_for(b.next(), 5)
    assert taken is not None and taken.url == item.url
    await b.release(taken)  # b has no fetch left for it (max_pages spent): back to pending
    r: Any = redis_server.client()
    assert r.zcard(f"scraper:{{{name}}}:pending") == 1
    assert await a.record(item, line(item.url))  # a's fetch keeps its record
    assert r.zcard(f"scraper:{{{name}}}:pending") == 0
    await a.close()
    assert await asyncio.wait_for(b.next(), 5) is None  # nothing outstanding: the crawl is over
    await b.close()
    assert union(tmp_path) == [item.url]
    assert_job_clean(redis_server, name)


async def test_a_crash_between_shard_append_and_its_confirmation_is_repaired_by_an_adopter(
    redis_server: RedisServer, tmp_path: Path
):
    name = job()
    a = frontier(redis_server, name, tmp_path, "a")
    items = await seeded(a, 5)
    assert a.writer is not None
    await a.writer.stop()  # the flushes are the test's own from here, so none races the one it stages
    for item in items[:3]:
        assert await a.record(item, line(item.url))
    # a's flush: the batch moves to flushing:a and is appended (the last line torn)...
    assert a.writer is not None
    batch = await a.writer.take_batch(500)
    fd = await a.writer.open()
    os.write(fd, b"".join(batch)[:-10])
    for item in items[3:]:  # ...more records committed, still in the outbox...
        assert await a.record(item, line(item.url))
    a.close_seeds()
    await crash(a)  # ...and a dies before confirming the append
    b = frontier(redis_server, name, tmp_path, "b")
    b.close_seeds()
    assert await b.next() is None
    await b.close()  # adopts a's records once its heartbeat is gone, cutting a's shard back first
    assert (tmp_path / "pages-a.jsonl").read_bytes() == b""
    assert_exactly_once(tmp_path, {i.url for i in items})
    assert_job_clean(redis_server, name)


async def test_a_crash_between_shard_append_and_its_confirmation_is_repaired_on_restart(
    redis_server: RedisServer, tmp_path: Path
):
    name = job()
    a = frontier(redis_server, name, tmp_path, "a")
    items = await seeded(a, 4)
    assert a.writer is not None
    await a.writer.stop()  # the flushes are the test's own from here, so none races the one it stages
    for item in items[:2]:
        assert await a.record(item, line(item.url))
    await a.flush()  # two records safely in the shard
    for item in items[2:]:
        assert await a.record(item, line(item.url))
    assert a.writer is not None
    batch = await a.writer.take_batch(500)
    os.write(await a.writer.open(), b"".join(batch))  # appended whole, not confirmed
    a.close_seeds()
    await crash(a)
    again = frontier(redis_server, name, tmp_path, "a")  # waits out the dead one's heartbeat
    again.close_seeds()
    assert await again.next() is None
    await again.close()
    assert list(shards(tmp_path)) == ["pages-a.jsonl"]
    assert_exactly_once(tmp_path, {i.url for i in items})
    assert_job_clean(redis_server, name)


async def test_a_confirmation_cut_short_is_not_taken_for_an_unconfirmed_append(
    redis_server: RedisServer, tmp_path: Path
):
    """A flush cancelled while Redis confirmed it: the next flush asks Redis before cutting the shard."""
    name = job()
    a = frontier(redis_server, name, tmp_path, "a")
    items = await seeded(a, 3)
    assert a.writer is not None
    await a.writer.stop()  # the flushes are the test's own from here
    assert await a.record(items[0], line(items[0].url))
    await a.flush()
    assert await a.record(items[1], line(items[1].url))
    # a flush of items[1] whose confirmation ran in Redis, but whose caller was cancelled before it heard
    batch = await a.writer.take_batch()
    fd = await a.writer.open()
    os.write(fd, b"".join(batch))
    await a.link.call("flush_end", "a", os.fstat(fd).st_size)
    assert await a.record(items[2], line(items[2].url))
    await a.flush()  # must not cut items[1] off as if it were unconfirmed
    a.close_seeds()
    assert await a.next() is None
    await a.close()
    assert [r["url"] for r in read_jsonl(tmp_path / "pages-a.jsonl")] == [i.url for i in items]
    assert_job_clean(redis_server, name)


async def test_a_flush_after_a_cancelled_one_waits_for_its_append(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The run's periodic flush cancelled mid-append, then the background one: the batch is written once."""
    started, release = threading.Event(), threading.Event()
    real_append = redis_shard._append

    def held_append(fd: int, data: bytes) -> None:
        if not started.is_set():  # the first append waits until the test lets it go
            started.set()
            release.wait(30)
        real_append(fd, data)

    monkeypatch.setattr(redis_shard, "_append", held_append)
    name = job()
    a = frontier(redis_server, name, tmp_path, "a")
    items = await seeded(a, 2)
    assert a.writer is not None
    await a.writer.stop()  # the flushes are the test's own from here
    for item in items:
        assert await a.record(item, line(item.url))
    first = asyncio.ensure_future(a.flush())
    assert await asyncio.to_thread(started.wait, 30)
    first.cancel()  # as the end of a run cancels its periodic flush
    with pytest.raises(asyncio.CancelledError):
        await first
    second = asyncio.ensure_future(a.flush())
    await asyncio.sleep(0.2)  # the second flush runs meanwhile: without waiting, it appends the batch again
    release.set()
    await second
    a.close_seeds()
    assert await a.next() is None
    await a.close()
    assert [r["url"] for r in read_jsonl(tmp_path / "pages-a.jsonl")] == [i.url for i in items]
    assert_job_clean(redis_server, name)


async def test_a_flush_cut_short_by_a_stop_lands_before_the_shard_is_given_up(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """An append slower than the flusher's stop (a loaded disk) ends before the shard is closed, not after a repair."""
    started, landed = threading.Event(), threading.Event()

    def slow_append(fd: int, data: bytes) -> None:
        started.set()
        time.sleep(1.5)  # longer than stop() waits before cutting the flush short (1 s)
        real_append(fd, data)
        landed.set()

    real_append = redis_shard._append
    monkeypatch.setattr(redis_shard, "_append", slow_append)
    name = job()
    a = frontier(redis_server, name, tmp_path, "a", lease=0.2)
    items = await seeded(a, 3)
    for item in items:
        assert await a.record(item, line(item.url))
    assert await asyncio.to_thread(started.wait, 30)  # the background flush is appending
    await crash(a)  # cuts that flush short: its lines are not confirmed in Redis
    # the append ended before the shard was closed: a later one could land in whatever file took its descriptor
    assert landed.is_set()
    monkeypatch.setattr(redis_shard, "_append", real_append)
    again = frontier(redis_server, name, tmp_path, "a", lease=0.2)  # cuts the shard back and writes them again
    again.close_seeds()
    assert await again.next() is None
    await again.close()
    assert_exactly_once(tmp_path, {i.url for i in items})
    assert_job_clean(redis_server, name)


async def test_an_unfinished_batch_in_a_shard_nobody_can_see_stays_in_redis(
    redis_server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    """The one window left: never written twice; the batch waits in Redis for its worker."""
    name = job()
    a = frontier(redis_server, name, tmp_path / "machine-a", "a")
    items = await seeded(a, 4)
    assert a.writer is not None
    await a.writer.stop()  # the flushes are the test's own from here, so none races the one it stages
    for item in items:
        assert await a.record(item, line(item.url))
    assert a.writer is not None
    batch = await a.writer.take_batch(2)  # two in flight to a's shard, two in the outbox
    os.write(await a.writer.open(), b"".join(batch))
    a.close_seeds()
    await crash(a)
    b = frontier(redis_server, name, tmp_path / "machine-b", "b")
    b.close_seeds()
    assert await b.next() is None
    await b.close()
    assert [r["url"] for r in read_jsonl(tmp_path / "machine-b" / "pages-b.jsonl")] == [i.url for i in items[2:]]
    assert [r["url"] for r in read_jsonl(tmp_path / "machine-a" / "pages-a.jsonl")] == [i.url for i in items[:2]]
    r: Any = redis_server.client()
    assert r.llen(f"scraper:{{{name}}}:flushing:a") == 2
    assert "died while writing 2 records" in caplog.text


async def test_a_lost_connection_is_retried_and_the_lease_kept(redis_server: RedisServer, tmp_path: Path):
    name = job()
    a = frontier(redis_server, name, tmp_path, "a", lease=1.0)
    items = await seeded(a, 3)
    r: Any = redis_server.client()
    r.client_kill_filter(_type="normal", skipme=True)  # every connection of the worker drops
    assert await a.record(items[0], line(items[0].url))
    with redis_server.paused():  # an outage shorter than the lease
        pending = asyncio.ensure_future(a.record(items[1], line(items[1].url)))
        await asyncio.sleep(0.4)
        assert not pending.done()
    assert await pending
    r.client_kill_filter(_type="normal", skipme=True)
    assert await a.record(items[2], line(items[2].url))
    a.close_seeds()
    assert await a.next() is None
    await a.close()
    assert_exactly_once(tmp_path, {i.url for i in items})


async def test_two_live_workers_cannot_share_a_name(redis_server: RedisServer, tmp_path: Path):
    # a 2 s lease: the first worker renews it every 0.67 s, which a loaded machine cannot delay by a whole lease
    name = job()
    a = frontier(redis_server, name, tmp_path, "same", lease=2.0)
    await a.link.ensure()
    b = frontier(redis_server, name, tmp_path, "same", lease=2.0)
    with pytest.raises(UsageError, match="in use by a live worker"):
        await b.link.ensure()
    await a.close()


async def test_close_ends_the_heartbeat_and_never_hangs(redis_server: RedisServer, tmp_path: Path):
    """A worker refused a name it shares, then the first closed: 15 times, each close bounded."""
    refused = 0
    for _ in range(15):
        name = job()
        a = frontier(redis_server, name, tmp_path, "same", lease=0.2)
        await a.link.ensure()
        b = frontier(redis_server, name, tmp_path, "same", lease=0.2)
        try:
            await b.link.ensure()
        except UsageError as e:
            assert "in use by a live worker" in str(e)
            refused += 1
        else:  # a's heartbeat was late by more than a lease (a loaded machine): b has the name now
            await asyncio.wait_for(b.close(), 10)
        await asyncio.wait_for(a.close(), 10)
        assert not a.link.connected
        assert not [t for t in asyncio.all_tasks() if "heartbeat" in t.get_name() or "flushing" in t.get_name()]
    assert refused > 0


async def test_the_frontier_is_the_one_writer_of_its_csv_shard(redis_server: RedisServer, tmp_path: Path):
    name = job()
    cfg = FrontierConfig(backend="redis", url=redis_server.url, job=name, lease=0.5)
    path = tmp_path / "pages-a.csv"
    a = RedisFrontier(cfg, output=OutputConfig(dir=str(tmp_path), format="csv"), worker="a")
    await a.open_output(path, "url\n")
    [item] = await seeded(a, 1)
    assert await a.record(item, item.url + "\n")
    a.close_seeds()
    assert await a.next() is None
    await a.close()
    again = RedisFrontier(cfg, output=OutputConfig(dir=str(tmp_path), format="csv"), worker="a")
    await again.open_output(path, "url\n")  # resumed: the header is there already
    again.close_seeds()
    assert await again.next() is None
    await again.close()
    assert path.read_text() == f"url\n{item.url}\n"
    assert_job_clean(redis_server, name)
