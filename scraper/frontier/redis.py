"""The Redis frontier: many workers, on one machine or many, share one crawl.

`[frontier] backend = "redis"` puts the crawl's state in Redis; every worker
(a `python -m scraper` process) started with the same `[frontier] url` and
`job` works on the same crawl, and writes its own shard of the output,
`DIR/pages-<worker>.jsonl` (or `.csv`). The union of the shards is the crawl:
every URL that the crawl decided to visit has exactly one record in exactly
one shard, also when workers are SIGKILLed.

Workers
    A worker's name is `SCRAPER_WORKER` when set (letters, digits, `.`, `_`,
    `-`), else `<hostname>-<pid>`. Two live workers cannot share a name: a
    worker started under the name of one that just died waits (at most
    `lease` seconds) for the dead one's heartbeat to run out. Every worker of
    a job writes the same format (checked at start). Each writes its own
    `DIR/stats-<worker>.json`, counting its own shard.

    Seeds: each worker reads its URLS_FILE, and a line seen anywhere in the
    crawl is skipped, so workers may share one file or have one each. A
    worker takes the seeds it adds itself; they are leased like any URL. The
    lines of a file that its worker died before reading are read when it is
    started again (or by any worker given the same file).

What Redis holds (every key starts with `scraper:{JOB}:`; the braces make
one Redis Cluster hash slot of a job)
    seen       a set of 8-byte URL fingerprints: every URL the crawl accepted
    pending    a sorted set of the URLs waiting, scored by depth, then arrival:
               every worker takes the shallowest first, so the crawl stays
               breadth-first
    lease      URL fingerprint -> fencing token, owner, and the URL itself;
    leases     ... and its deadline. A worker renews the deadlines of the URLs
               it holds with its heartbeat (every third of `lease`); a worker
               that dies stops renewing, and `lease` seconds later any worker
               looking for work puts its URLs back in `pending` (taking a URL
               anew gives it a new token)
    outstanding  URLs accepted and not yet recorded (pending or leased)
    seeding    the workers still reading their URLS_FILE
    claimed    page fetches started, for `max_pages` (one atomic
               check-and-increment, so the limit holds over all workers)
    outbox:W, flushing:W, size:W   worker W's records on their way to its
               shard (below)
    alive:W    W's heartbeat, expiring after `lease` seconds
    host:H:*   the per-host limiter (below)

The crawl ends, for every worker, when nothing is outstanding and no live
worker is still reading seeds. Every change is one Lua script, so it is atomic
however many workers run; Redis's own clock (TIME) times leases, so the
workers' clocks do not matter.

Exactly once, under SIGKILL
    A record and the release of its URL cannot be two steps that a crash can
    split, so they are one: the engine hands the record's line to `record`,
    one script that checks no worker has recorded the URL yet, releases its
    lease, counts the URL done and appends the line to the worker's outbox
    list, all or nothing. The first record wins: a worker whose lease ran out
    (it stalled, or Redis thought it dead) still records the URL when it comes
    first, taking it out of pending or from the worker that took it over (whose
    record is refused then); a later one is refused and dropped. So a page
    fetched under `max_pages` keeps its record though no fetch is left to take
    it again. A crash before `record` leaves the URL
    leased, and it is fetched again after the lease; after `record`, the
    record is in Redis and the URL is done.

    From the outbox to the shard file: the worker moves a batch of lines from
    `outbox:W` to `flushing:W` (one script), appends them to its shard, fsyncs,
    then records the shard's new size in `size:W` and empties `flushing:W`
    (one script). The shard is valid up to `size:W`: a crash between the
    append and that last step leaves lines (maybe torn) after `size:W` that
    are still in `flushing:W`. Whoever next holds the shard cuts it back to
    `size:W` and appends `flushing:W` again, so those lines land once:

    * the worker itself, started again under the same name (`--resume`; it
      also appends what was left in its outbox);
    * otherwise, at the end of the crawl, a live worker adopts a dead worker's
      lines (its heartbeat has run out): the outbox always (those lines were
      never written), and `flushing:W` when it can see and lock the dead
      worker's shard (the same DIR, or a shared file system). Each worker
      holds an exclusive `flock` on its shard from its first write until it
      exits, so a shard is cut only once its owner is gone. Adopted lines are
      appended to the adopter's shard. (A worker that stops early, by
      `max_pages` or a signal, adopts only from workers already found dead.)

    What remains: if a worker dies between moving a batch to `flushing:W` and
    its `size:W` step, and no live worker can see its shard, that batch (at
    most 500 records) stays in Redis, and is in the dead worker's shard
    wholly, partly or not at all: nothing is ever written twice, and those
    lines reach the output when the worker is started again with the same
    `SCRAPER_WORKER` and `--resume` wherever its shard is (it then finds the
    crawl done, writes them and exits). The worker that finds such a batch
    says so on stderr, with the dead worker's name. And what Redis itself
    must give: it must keep its data (a Redis restarted without persistence
    forgets the crawl).

    `max_pages` counts page fetches started: a fetch by a worker that died
    before recording it counts, and so does the fetch again by the worker
    that takes the URL over.

Per-host limits over all workers
    `per_host` and `delay` (and robots.txt's Crawl-delay, shared through Redis
    once any worker has read it) hold over all workers together: a request
    first takes one of `per_host` slots of its host in Redis (a sorted set of
    slot tokens, each expiring unless its worker's heartbeat renews it, so a
    dead worker's slots come back), and with a delay it also holds the host's
    gate until its request starts, then sets the host's next start time.
    `concurrency` stays a limit of each worker.

Losing Redis
    A worker that cannot reach Redis when it starts stops with a usage error
    (exit 2), before it writes anything. A connection lost while running is
    retried with backoff (for up to 5 minutes; then the worker stops with exit
    1); the worker keeps its leased URLs meanwhile, and Redis keeps the crawl.
    If the outage outlasted `lease`, other workers took those URLs over, and
    this worker's records of them are refused, never doubled.

`--resume` and `--overwrite`
    With Redis the crawl state is Redis: a worker started with `--resume`
    simply joins the crawl again (reading its URLS_FILE again, already seen
    lines are skipped; under the same `SCRAPER_WORKER` it first repairs its
    shard as above). Without `--resume`, a worker whose shard exists refuses
    to start, as with the in-process frontier. `--overwrite` replaces the
    worker's own shard only; the crawl itself stays in Redis: a new crawl
    takes a new `[frontier] job` name (or delete the old job's keys,
    `redis-cli --scan --pattern 'scraper:{JOB}:*' | xargs redis-cli del`).

The rooms
    `redis` (this module): the queue and the leases, the `Frontier` itself.
    `redis_hosts`: the per-host limiter. `redis_shard`: the shard writer.
    `redis_link`: the connection they share (the scripts, `lua/*.lua`, loaded
    once; the one retry policy; the heartbeat, which each room joins with
    what it renews). Background tasks stop by an event and are awaited with a
    bound, so `close()` cannot hang on one.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import socket
from collections import deque
from pathlib import Path
from typing import Any

from ..config import FrontierConfig, OutputConfig
from ..errors import UsageError
from ..urls import fingerprint
from .base import Frontier, Item
from .redis_hosts import RedisHostLimiter
from .redis_link import NoBackoff, RedisLink, redis, safe_url
from .redis_shard import ShardWriter

__all__ = ["RedisFrontier", "RedisHostLimiter", "worker_name"]

log = logging.getLogger(__name__)

#: URLs taken from Redis in one go
TAKE_BATCH = 8
#: seconds a per-host slot stays taken by a worker that stopped renewing it
SLOT_TTL_MAX = 10.0

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def worker_name() -> str:
    """`SCRAPER_WORKER` when set, else `<hostname>-<pid>`: stable and unique per worker process."""
    env = os.environ.get("SCRAPER_WORKER")
    if env is not None:
        if not _NAME.fullmatch(env):
            raise UsageError(
                f"SCRAPER_WORKER={env!r} is not a usable worker name: letters, digits, '.', '_' and '-', "
                "at most 100, starting with a letter or digit"
            )
        return env
    host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname()).lstrip(".-")[:80] or "worker"
    return f"{host}-{os.getpid()}"


def _member(item: Item) -> bytes:
    """A pending URL as Redis holds it: its 8-byte fingerprint, then the item as JSON."""
    payload = json.dumps(
        [item.url, item.depth, item.referrer, item.allow_private], ensure_ascii=False, separators=(",", ":")
    )
    return fingerprint(item.url).to_bytes(8, "big") + payload.encode("utf-8", "surrogatepass")


def _item(member: bytes) -> Item:
    url, depth, referrer, allow_private = json.loads(member[8:].decode("utf-8", "surrogatepass"))
    return Item(url=url, depth=depth, referrer=referrer, allow_private=allow_private)


def _fp(url: str) -> bytes:
    return fingerprint(url).to_bytes(8, "big")


class RedisFrontier(Frontier):
    """The crawl's state in Redis, shared by every worker of `[frontier].job` (see the module's doc).

    This class is the queue and the leases; it brings the per-host limiter
    (`redis_hosts`) and, with `output`, the shard writer (`redis_shard`), and
    all three talk to Redis through one `RedisLink` (`redis_link`: connection,
    scripts, retries, heartbeat). `output` says where this worker's shard goes
    (`DIR/pages-<worker>.<format>`); without it the frontier writes no files
    (`Scraper.crawl`). `worker` overrides the worker's name (by default `worker_name()`).
    """

    def __init__(
        self, config: FrontierConfig, *, output: OutputConfig | None = None, worker: str | None = None
    ) -> None:
        self.shard = worker if worker is not None else worker_name()
        self.lease = config.lease
        #: this worker's presence in the job: its connection, scripts and heartbeat
        self.link = RedisLink(config.url, config.job, self.shard, config.lease, min(config.lease, SLOT_TTL_MAX) / 3)
        #: the shard writer; None without `output`
        self.writer: ShardWriter | None = ShardWriter(self.link, output) if output is not None else None
        self._output = output
        self._connect_lock = asyncio.Lock()
        self._started = False
        # url -> (fingerprint, token, member) of what this worker holds
        self._leases: dict[str, tuple[bytes, int, bytes]] = {}
        self._taken: deque[Item] = deque()  # taken from Redis, not yet handed to the engine
        self._wake = asyncio.Event()
        self._seeds_closed = False
        self._seeds_pushed = False
        self._stopped = False
        self._ended = False
        self._closed = False
        self._outstanding = 0
        self._claimed = 0
        self.link.on_beat(self._renew)
        self._check_server()

    # --- connection --------------------------------------------------------------------

    def _check_server(self) -> None:
        """Reach Redis now, synchronously: a worker that cannot reach it stops before writing anything."""
        link = self.link
        try:
            client = redis.Redis.from_url(
                link.url, socket_connect_timeout=5, socket_timeout=5, retry=redis.retry.Retry(NoBackoff(), 0)
            )
            try:
                client.ping()
                self._claimed = int(client.get(link.prefix + "claimed") or 0)
                self._outstanding = int(client.get(link.prefix + "outstanding") or 0)
                if self._output is not None:
                    client.set(link.prefix + "format", self._output.format, nx=True)
                    fmt = (client.get(link.prefix + "format") or b"").decode()
                    if fmt != self._output.format:
                        raise UsageError(
                            f"job {link.job!r} writes {fmt}: every worker of a job writes the same format "
                            f"(--format {fmt})"
                        )
            finally:
                client.close()
        except UsageError:
            raise
        except (redis.exceptions.RedisError, OSError, ValueError) as e:
            message = " ".join(str(e).split()) or type(e).__name__
            raise UsageError(f"cannot reach Redis at {safe_url(link.url)}: {message}") from None

    async def _call(self, name: str, *args: Any) -> Any:
        await self._ensure()
        return await self.link.call(name, *args)

    async def _ensure(self) -> None:
        """Connect (registering this worker), then start flushing the shard."""
        if self._started:
            return
        await self.link.ensure()
        if not self._started:
            self._started = True
            if self.writer is not None:
                self.writer.start()

    async def _renew(self) -> None:
        """The heartbeat's part of the queue: this worker alive, its leases renewed, seeding said done."""
        args: list[Any] = [self.shard, self.link.instance, self.link.lease_ms]
        for fp, token, _ in list(self._leases.values()):
            args += (fp, token)
        if await self.link.call("renew", *args) == -1:
            log.warning("worker %s: another live worker took this name over", self.shard)
        await self._push_seeds_closed()

    # --- adding and taking ------------------------------------------------------------------

    async def add_seed(self, item: Item) -> bool:
        member = _member(item)
        token, self._outstanding = await self._call("add_seed", self.shard, self.link.lease_ms, member)
        if not token:
            return False
        self._leases[item.url] = (member[:8], int(token), member)
        return True

    async def add_links(self, items: list[Item]) -> int:
        if not items:
            return 0
        args: list[Any] = []
        for item in items:
            args += (item.depth, _member(item))
        added, self._outstanding = await self._call("add_links", *args)
        if added:
            self._wake.set()
        return int(added)

    async def mark_seen(self, url: str) -> None:
        await self._ensure()
        await self.link.command("sadd", self.link.prefix + "seen", _fp(url))

    async def is_seen(self, url: str) -> bool:
        await self._ensure()
        return bool(await self.link.command("sismember", self.link.prefix + "seen", _fp(url)))

    async def next(self) -> Item | None:
        await self._ensure()
        await self._push_seeds_closed()
        pause = 0.005
        while True:
            if self._stopped:
                return None
            if self._taken:
                return self._taken.popleft()
            reply = await self._call("take", self.shard, TAKE_BATCH, self.link.lease_ms)
            ended, self._outstanding = int(reply[0]), int(reply[1])
            for i in range(3, len(reply), 2):
                item = _item(reply[i + 1])
                self._leases[item.url] = (reply[i + 1][:8], int(reply[i]), reply[i + 1])
                self._taken.append(item)
            if self._taken:
                pause = 0.005
                continue
            if ended:
                self._ended = True
                return None
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), pause)
            pause = min(pause * 2, 0.1)

    def close_seeds(self) -> None:
        self._seeds_closed = True

    async def _push_seeds_closed(self) -> None:
        if self._seeds_closed and not self._seeds_pushed and self.link.connected:
            await self.link.command("srem", self.link.prefix + "seeding", self.shard)
            self._seeds_pushed = True

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    # --- recording ---------------------------------------------------------------------------

    async def open_output(self, path: Path, header: str | None) -> None:
        """Open and lock this worker's shard (named when built: `path` is the same), with `header` when empty."""
        assert self.writer is not None and path == self.writer.path, (path, self.writer)
        await self._ensure()
        await self.writer.open(header)

    async def record(self, item: Item, line: str | None) -> bool:
        """Record `item` (its output line; None: no file) and release it, in one atomic step.

        A lease that ran out (a worker slowed down by a loaded machine) still counts
        when no other worker has recorded the URL yet: the URL, back in pending or
        taken again, is this worker's record, and the other worker's is refused.
        So a page that was fetched gets its record even when `max_pages` leaves no
        fetch for it to be taken again. False: another worker recorded it first.
        """
        held = self._leases.get(item.url)
        fp, token, member = held if held is not None else (_fp(item.url), 0, b"")
        ok = await self._commit(fp, token, line, member)
        if held is not None and self._leases.get(item.url) == held:
            del self._leases[item.url]
        return ok

    async def record_unaccepted(self, item: Item, line: str | None) -> bool:
        """The record of a URL never leased: kept by the first worker to mark it seen."""
        return await self._commit(_fp(item.url), 0, line)

    async def _commit(self, fp: bytes, token: int, line: str | None, member: bytes = b"") -> bool:
        data = line.encode("utf-8", "replace") if line is not None else b""
        ok = await self._call("commit", self.shard, fp, token, data, 1 if line is not None else 0, member)
        if ok and line is not None and self.writer is not None:
            self.writer.mark_dirty()
        return bool(ok)

    async def release(self, item: Item) -> None:
        """`item` was dropped (the run is stopping, or `max_pages` is spent): it goes back to pending.

        Recorded items go through `record`; so an interrupted worker loses nothing.
        """
        held = self._leases.pop(item.url, None)
        if held is not None:
            await self._call("give_back", *held[:2])

    async def flush(self) -> None:
        if self.writer is not None and self._started:
            await self.writer.flush()

    # --- counts and limits ----------------------------------------------------------------

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def claimed(self) -> int:
        return self._claimed

    async def claim(self, limit: int) -> bool:
        ok, self._claimed = await self._call("claim", limit)
        return bool(ok)

    def count_claimed(self, n: int) -> None:
        """Nothing to do: Redis counted those fetches when they were claimed."""

    def limiter(self, concurrency: int, per_host: int, delay: float) -> RedisHostLimiter:
        """A `Limiter` whose `per_host` and `delay` hold over all workers of the job."""
        return RedisHostLimiter(self.link, concurrency, per_host, delay, slot_ttl=min(self.lease, SLOT_TTL_MAX))

    # --- the end -------------------------------------------------------------------------

    async def close(self) -> None:
        """Give back what this worker holds, write its last records, adopt dead workers' records."""
        if self._closed or not self.link.connected:
            self._closed = True
            return
        self._closed = True
        self._seeds_closed = True
        try:
            if self.writer is not None:
                await self.writer.stop()  # no flush in the background from here: the last ones are ours
            await self._push_seeds_closed()
            held = [x for fp, token, _ in self._leases.values() for x in (fp, token)]
            self._leases.clear()
            self._taken.clear()
            for i in range(0, len(held), 512):
                await self.link.call("give_back", *held[i : i + 512])
            if self.writer is not None:
                await self.writer.flush()
                await self.writer.adopt(wait=self._ended)
            await self.link.call("unregister", self.shard, self.link.instance)
        finally:
            if self.writer is not None:
                self.writer.close_file()  # and its lock
            await self.link.close()
