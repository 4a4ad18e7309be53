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
    split, so they are one: the pipeline hands the record's line to `record`,
    one script that checks the lease still carries this worker's token,
    releases it, counts the URL done and appends the line to the worker's
    outbox list, all or nothing. A worker whose lease ran out (it stalled, or
    Redis thought it dead) is refused: its record is dropped, and the worker
    that took the URL over records it. A crash before `record` leaves the URL
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
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import re
import socket
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from ..config import FrontierConfig, OutputConfig
from ..errors import OutputError, UsageError
from ..limits import Limiter, LimiterClosed
from ..sinks import sink_path
from ..urls import fingerprint
from .base import Frontier, Item

try:
    import redis
    import redis.asyncio as aioredis
    import redis.asyncio.retry
    import redis.retry
    from redis.backoff import NoBackoff
except ImportError:  # pragma: no cover - the extra is not installed
    redis = None  # type: ignore[assignment]

__all__ = ["RedisFrontier", "RedisHostLimiter", "worker_name"]

log = logging.getLogger(__name__)

#: records moved from the outbox to the shard in one append
FLUSH_BATCH = 500
#: seconds between two flushes of the outbox to the shard
FLUSH_EVERY = 0.2
#: URLs taken from Redis in one go
TAKE_BATCH = 8
#: seconds a lost connection to Redis is retried before the worker gives up
RETRY_FOR = 300.0
#: seconds a per-host slot stays taken by a worker that stopped renewing it
SLOT_TTL_MAX = 10.0

_T = TypeVar("_T")
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


def _safe_url(url: str) -> str:
    """The Redis URL without its password, for messages."""
    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


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


# --- Lua -----------------------------------------------------------------------------
# KEYS[1] is the job's prefix; every script builds its key names from it.

_LIB = r"""
local P = KEYS[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function lease_of(fp)
  local raw = redis.call('HGET', P .. 'lease', fp)
  if not raw then return nil end
  local tok, owner, score, member = string.match(raw, '^(%d+)|([^|]*)|([^|]*)|(.*)$')
  return {tok = tok, owner = owner, score = score, member = member}
end
local function grant(worker, score, member, deadline)
  local fp = string.sub(member, 1, 8)
  local tok = redis.call('INCR', P .. 'token')
  redis.call('HSET', P .. 'lease', fp, tok .. '|' .. worker .. '|' .. score .. '|' .. member)
  redis.call('ZADD', P .. 'leases', deadline, fp)
  return tok
end
local function release(fp)
  redis.call('HDEL', P .. 'lease', fp)
  redis.call('ZREM', P .. 'leases', fp)
end
local function outstanding()
  return tonumber(redis.call('GET', P .. 'outstanding') or '0')
end
"""

_SCRIPTS = {
    # ARGV: worker, instance, lease_ms -> {1} or {0, ms left on the live worker's heartbeat}
    "register": r"""
local alive = P .. 'alive:' .. ARGV[1]
local cur = redis.call('GET', alive)
if cur and cur ~= ARGV[2] then return {0, redis.call('PTTL', alive)} end
redis.call('SET', alive, ARGV[2], 'PX', ARGV[3])
redis.call('SADD', P .. 'workers', ARGV[1])
redis.call('SADD', P .. 'seeding', ARGV[1])
return {1, 0}
""",
    # ARGV: worker, instance, lease_ms, (fp, token)... -> leases renewed, -1 when the name was taken over
    "renew": r"""
local alive = P .. 'alive:' .. ARGV[1]
local cur = redis.call('GET', alive)
if cur and cur ~= ARGV[2] then return -1 end
local lease_ms = tonumber(ARGV[3])
redis.call('SET', alive, ARGV[2], 'PX', lease_ms)
local deadline = now_ms() + lease_ms
local n = 0
for i = 4, #ARGV, 2 do
  local l = lease_of(ARGV[i])
  if l and l.tok == ARGV[i + 1] then
    redis.call('ZADD', P .. 'leases', 'XX', deadline, ARGV[i])
    n = n + 1
  end
end
return n
""",
    # ARGV: worker, instance -> 1 when the worker left nothing behind and is gone
    "unregister": r"""
local W = ARGV[1]
redis.call('SREM', P .. 'seeding', W)
if redis.call('LLEN', P .. 'outbox:' .. W) > 0 or redis.call('LLEN', P .. 'flushing:' .. W) > 0 then return 0 end
if redis.call('GET', P .. 'alive:' .. W) == ARGV[2] then redis.call('DEL', P .. 'alive:' .. W) end
redis.call('SREM', P .. 'workers', W)
return 1
""",
    # ARGV: worker, lease_ms, member -> {token, outstanding}; token 0: seen before
    "add_seed": r"""
local member = ARGV[3]
if redis.call('SADD', P .. 'seen', string.sub(member, 1, 8)) == 0 then return {0, outstanding()} end
local seq = redis.call('INCR', P .. 'seq')
local tok = grant(ARGV[1], string.format('%.0f', seq), member, now_ms() + tonumber(ARGV[2]))
return {tok, redis.call('INCR', P .. 'outstanding')}
""",
    # ARGV: (depth, member)... -> {added, outstanding}
    "add_links": r"""
local added = 0
for i = 1, #ARGV, 2 do
  local member = ARGV[i + 1]
  if redis.call('SADD', P .. 'seen', string.sub(member, 1, 8)) == 1 then
    local seq = redis.call('INCR', P .. 'seq')
    redis.call('ZADD', P .. 'pending', string.format('%.0f', tonumber(ARGV[i]) * 4294967296 + seq), member)
    added = added + 1
  end
end
if added > 0 then return {added, redis.call('INCRBY', P .. 'outstanding', added)} end
return {0, outstanding()}
""",
    # ARGV: worker, n, lease_ms -> {ended, outstanding, reclaimed, (token, member)...}
    # Puts expired leases back first (a dead worker's URLs), then takes the shallowest pending URLs.
    "take": r"""
local worker, n, lease_ms = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', P .. 'leases', '-inf', now, 'LIMIT', 0, 256)
for _, fp in ipairs(expired) do
  local l = lease_of(fp)
  if l then redis.call('ZADD', P .. 'pending', l.score, l.member) end
  release(fp)
end
local reply = {0, 0, #expired}
if n > 0 then
  local popped = redis.call('ZPOPMIN', P .. 'pending', n)
  for i = 1, #popped, 2 do
    table.insert(reply, grant(worker, popped[i + 1], popped[i], now + lease_ms))
    table.insert(reply, popped[i])
  end
end
local left = outstanding()
reply[2] = left
if #reply == 3 and left <= 0 then
  for _, w in ipairs(redis.call('SMEMBERS', P .. 'seeding')) do
    if redis.call('EXISTS', P .. 'alive:' .. w) == 0 then redis.call('SREM', P .. 'seeding', w) end
  end
  if redis.call('SCARD', P .. 'seeding') == 0 then reply[1] = 1 end
end
return reply
""",
    # ARGV: worker, fp, token, line, has_line -> 1 recorded, 0 refused
    # The record and the release of the lease in one step. No lease at all (an invalid_url
    # line): recorded by the first worker to mark it seen.
    "commit": r"""
local fp = ARGV[2]
local l = lease_of(fp)
if l then
  if l.tok ~= ARGV[3] then return 0 end
  release(fp)
  redis.call('DECR', P .. 'outstanding')
elseif redis.call('SADD', P .. 'seen', fp) == 0 then
  return 0
end
if ARGV[5] == '1' then redis.call('RPUSH', P .. 'outbox:' .. ARGV[1], ARGV[4]) end
return 1
""",
    # ARGV: (fp, token)... -> URLs put back in pending (still outstanding)
    "give_back": r"""
local n = 0
for i = 1, #ARGV, 2 do
  local l = lease_of(ARGV[i])
  if l and l.tok == ARGV[i + 1] then
    redis.call('ZADD', P .. 'pending', l.score, l.member)
    release(ARGV[i])
    n = n + 1
  end
end
return n
""",
    # ARGV: limit -> {1 taken / 0 none left, claimed}
    "claim": r"""
local c = tonumber(redis.call('GET', P .. 'claimed') or '0')
if c >= tonumber(ARGV[1]) then return {0, c} end
return {1, redis.call('INCR', P .. 'claimed')}
""",
    # ARGV: worker, n -> the lines of flushing:W (a batch moved there from the outbox when it was empty)
    "flush_begin": r"""
local fl, ob = P .. 'flushing:' .. ARGV[1], P .. 'outbox:' .. ARGV[1]
if redis.call('LLEN', fl) == 0 then
  local lines = redis.call('LRANGE', ob, 0, tonumber(ARGV[2]) - 1)
  for _, line in ipairs(lines) do redis.call('RPUSH', fl, line) end
  if #lines > 0 then redis.call('LTRIM', ob, #lines, -1) end
end
return redis.call('LRANGE', fl, 0, -1)
""",
    # ARGV: worker, size -> the shard holds flushing:W whole, up to `size` bytes
    "flush_end": r"""
redis.call('SET', P .. 'size:' .. ARGV[1], ARGV[2])
redis.call('DEL', P .. 'flushing:' .. ARGV[1])
return 1
""",
    # ARGV: adopter, dead, take_flushing -> lines moved to the adopter's outbox; -1: not dead
    "adopt": r"""
if redis.call('EXISTS', P .. 'alive:' .. ARGV[2]) == 1 then return -1 end
local mine = P .. 'outbox:' .. ARGV[1]
local moved = 0
local function drain(src)
  local lines = redis.call('LRANGE', src, 0, -1)
  for _, line in ipairs(lines) do redis.call('RPUSH', mine, line) end
  redis.call('DEL', src)
  moved = moved + #lines
end
if ARGV[3] == '1' then drain(P .. 'flushing:' .. ARGV[2]) end
drain(P .. 'outbox:' .. ARGV[2])
return moved
""",
    # ARGV: host, token, per_host, ttl_ms, delay_ms -> {1, gate delay ms (0: no gate)}
    # or {0, ms until the host's next start (0: busy, unknown)}
    "host_acquire": r"""
local H = P .. 'host:' .. ARGV[1] .. ':'
local now = now_ms()
redis.call('ZREMRANGEBYSCORE', H .. 'busy', '-inf', now)
if redis.call('ZCARD', H .. 'busy') >= tonumber(ARGV[3]) then return {0, 0} end
if redis.call('EXISTS', H .. 'gate') == 1 then return {0, 0} end
local nxt = tonumber(redis.call('GET', H .. 'next') or '0')
if now < nxt then return {0, nxt - now} end
local ttl = tonumber(ARGV[4])
redis.call('ZADD', H .. 'busy', now + ttl, ARGV[2])
local delay = math.max(tonumber(ARGV[5]), tonumber(redis.call('GET', H .. 'delay') or '0'))
if delay > 0 then
  redis.call('SET', H .. 'gate', ARGV[2], 'PX', ttl)
  return {1, delay}
end
return {1, 0}
""",
    # ARGV: host, token, delay_ms: the request starts now; the next may start `delay` later
    "host_start": r"""
local H = P .. 'host:' .. ARGV[1] .. ':'
if redis.call('GET', H .. 'gate') == ARGV[2] then
  local delay = tonumber(ARGV[3])
  redis.call('SET', H .. 'next', string.format('%.0f', now_ms() + delay), 'PX', delay + 1000)
  redis.call('DEL', H .. 'gate')
end
return 1
""",
    # ARGV: host, token
    "host_release": r"""
local H = P .. 'host:' .. ARGV[1] .. ':'
redis.call('ZREM', H .. 'busy', ARGV[2])
if redis.call('GET', H .. 'gate') == ARGV[2] then redis.call('DEL', H .. 'gate') end
return 1
""",
    # ARGV: ttl_ms, (host, token)...
    "host_renew": r"""
local deadline = now_ms() + tonumber(ARGV[1])
for i = 2, #ARGV, 2 do
  local H = P .. 'host:' .. ARGV[i] .. ':'
  redis.call('ZADD', H .. 'busy', 'XX', deadline, ARGV[i + 1])
  if redis.call('GET', H .. 'gate') == ARGV[i + 1] then redis.call('PEXPIRE', H .. 'gate', ARGV[1]) end
end
return 1
""",
    # ARGV: host, delay_ms: robots.txt's Crawl-delay, for every worker
    "host_delay": r"""
local key = P .. 'host:' .. ARGV[1] .. ':delay'
if tonumber(redis.call('GET', key) or '0') < tonumber(ARGV[2]) then redis.call('SET', key, ARGV[2]) end
return 1
""",
}


class RedisFrontier(Frontier):
    """The crawl's state in Redis, shared by every worker of `[frontier].job` (see the module's doc).

    `output` says where this worker's shard goes (`DIR/pages-<worker>.<format>`);
    without it the frontier writes no files (`Scraper.crawl`). `worker`
    overrides the worker's name (by default `worker_name()`).
    """

    def __init__(
        self, config: FrontierConfig, *, output: OutputConfig | None = None, worker: str | None = None
    ) -> None:
        if redis is None:
            raise UsageError("[frontier] backend = \"redis\" needs the redis package: pip install 'scraper[redis]'")
        self.url = config.url
        self.job = config.job
        self.lease = config.lease
        self.shard = worker if worker is not None else worker_name()
        self.instance = uuid.uuid4().hex
        self._prefix = f"scraper:{{{config.job}}}:"
        self._lease_ms = max(1, round(config.lease * 1000))
        self._slot_ttl_ms = max(1, round(min(config.lease, SLOT_TTL_MAX) * 1000))
        self._beat = min(config.lease, SLOT_TTL_MAX) / 3
        self._output = output
        self._path: Path | None = sink_path(output.dir, output.format, self.shard) if output is not None else None
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._connect_lock = asyncio.Lock()
        self._flush_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self._leases: dict[str, tuple[bytes, int]] = {}  # url -> (fingerprint, token) of what this worker holds
        self._taken: deque[Item] = deque()  # taken from Redis, not yet handed to the pipeline
        self._wake = asyncio.Event()
        self._seeds_closed = False
        self._seeds_pushed = False
        self._stopped = False
        self._ended = False
        self._budget_spent = False
        self._closed = False
        self._failed: BaseException | None = None
        self._dirty = True  # lines may wait in Redis (a previous life under this name)
        self._fd: int | None = None
        self._committed = 0  # bytes of the shard that Redis knows are whole records
        self._outage: float | None = None
        self._limiter: RedisHostLimiter | None = None
        self._outstanding = 0
        self._claimed = 0
        self._check_server()

    # --- connection --------------------------------------------------------------------

    def _check_server(self) -> None:
        """Reach Redis now, synchronously: a worker that cannot reach it stops before writing anything."""
        try:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=5, socket_timeout=5, retry=redis.retry.Retry(NoBackoff(), 0)
            )
            try:
                client.ping()
                self._claimed = int(client.get(self._prefix + "claimed") or 0)
                self._outstanding = int(client.get(self._prefix + "outstanding") or 0)
                if self._output is not None:
                    client.set(self._prefix + "format", self._output.format, nx=True)
                    fmt = (client.get(self._prefix + "format") or b"").decode()
                    if fmt != self._output.format:
                        raise UsageError(
                            f"job {self.job!r} writes {fmt}: every worker of a job writes the same format "
                            f"(--format {fmt})"
                        )
            finally:
                client.close()
        except UsageError:
            raise
        except (redis.exceptions.RedisError, OSError, ValueError) as e:
            message = " ".join(str(e).split()) or type(e).__name__
            raise UsageError(f"cannot reach Redis at {_safe_url(self.url)}: {message}") from None

    async def _ensure(self) -> None:
        if self._redis is not None:
            return
        if self._failed is not None:
            raise self._failed
        async with self._connect_lock:
            if self._redis is not None:
                return
            client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=5,
                socket_timeout=10,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),  # retried here, with backoff
            )
            scripts = {name: client.register_script(_LIB + src) for name, src in _SCRIPTS.items()}
            try:
                await self._register(scripts)
            except BaseException:
                with contextlib.suppress(Exception):
                    await client.aclose()
                raise
            self._redis, self._scripts = client, scripts
            loop = asyncio.get_running_loop()
            self._tasks = [loop.create_task(self._heartbeat()), loop.create_task(self._flusher())]

    async def _register(self, scripts: dict[str, Any]) -> None:
        """Take this worker's name, waiting out the heartbeat of a dead worker of the same name."""
        waited_from = time.monotonic()
        told = False
        while True:
            ok, ttl = await self._retry(
                lambda: scripts["register"](keys=[self._prefix], args=[self.shard, self.instance, self._lease_ms])
            )
            if ok:
                return
            if time.monotonic() - waited_from > self.lease + 0.5:  # a live worker renews every lease / 3
                raise UsageError(
                    f"worker name {self.shard!r} is in use by a live worker of job {self.job!r}: "
                    "give each worker its own SCRAPER_WORKER"
                )
            if not told:
                log.warning("worker %s: waiting for the last worker of that name to time out", self.shard)
                told = True
            await asyncio.sleep(min(max(int(ttl), 10) / 1000, 0.5))

    async def _retry(self, call: Callable[[], Awaitable[_T]]) -> _T:
        """`call()`, again with backoff while the connection is lost (up to RETRY_FOR seconds)."""
        pause = 0.05
        while True:
            try:
                result = await call()
            except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError) as e:
                now = time.monotonic()
                if self._outage is None:
                    self._outage = now
                    log.warning("lost Redis at %s (%s): retrying", _safe_url(self.url), " ".join(str(e).split()))
                if now - self._outage > RETRY_FOR:
                    self._failed = OutputError(
                        f"lost Redis at {_safe_url(self.url)} for {RETRY_FOR:.0f} s: {' '.join(str(e).split())}"
                    )
                    raise self._failed from None
                await asyncio.sleep(pause)
                pause = min(pause * 2, 2.0)
                continue
            if self._outage is not None:
                log.warning("Redis at %s is back", _safe_url(self.url))
                self._outage = None
            return result

    async def _call(self, name: str, *args: Any) -> Any:
        await self._ensure()
        script = self._scripts[name]
        return await self._retry(lambda: script(keys=[self._prefix], args=list(args)))

    async def _cmd(self, method: str, *args: Any) -> Any:
        await self._ensure()
        return await self._retry(lambda: getattr(self._redis, method)(*args))

    # --- background: heartbeat and outbox -------------------------------------------------

    async def _heartbeat(self) -> None:
        """Keep this worker alive in Redis, its leases and host slots renewed."""
        while True:
            await asyncio.sleep(self._beat)
            try:
                args: list[Any] = [self.shard, self.instance, self._lease_ms]
                for fp, token in list(self._leases.values()):
                    args += (fp, token)
                if await self._call("renew", *args) == -1:
                    log.warning("worker %s: another live worker took this name over", self.shard)
                if self._limiter is not None and self._limiter._tokens:
                    slots: list[Any] = [self._slot_ttl_ms]
                    for token, host in list(self._limiter._tokens.items()):
                        slots += (host, token)
                    await self._call("host_renew", *slots)
                await self._push_seeds_closed()
            except asyncio.CancelledError:
                raise
            except Exception as e:  # lost Redis for good: the run learns it from its own calls
                log.warning("worker %s: heartbeat failed: %s", self.shard, e)
                return

    async def _flusher(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            if self._dirty:
                try:
                    await self._flush()
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the next flush, or close(), raises it to the run
                    log.warning("worker %s: cannot flush its shard: %s", self.shard, e)

    async def _flush(self) -> None:
        """Move the outbox to the shard, a batch at a time (see the module's doc)."""
        if self._path is None:
            return
        async with self._flush_lock:
            self._dirty = False
            while True:
                lines = await self._call("flush_begin", self.shard, FLUSH_BATCH)
                if not lines:
                    return
                fd = await self._shard_fd()
                try:
                    size = os.fstat(fd).st_size
                    if size > self._committed:  # an append of ours that was not confirmed: cut it, write again
                        os.ftruncate(fd, self._committed)
                    elif size < self._committed:
                        self._committed = size  # cut by someone else (--overwrite): start from there
                    await asyncio.shield(asyncio.to_thread(_append, fd, b"".join(lines)))
                    size = os.fstat(fd).st_size
                except OSError as e:
                    raise OutputError(f"cannot write {self._path}: {e.strerror or e}") from None
                await self._call("flush_end", self.shard, size)
                self._committed = size

    async def _shard_fd(self) -> int:
        """This worker's shard, open for appending and locked; cut back to what Redis knows is whole."""
        if self._fd is not None:
            return self._fd
        assert self._path is not None
        path = self._path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputError(f"cannot write {path}: {e.strerror or e}") from None
        waited_from = time.monotonic()
        while not _try_lock(fd):  # an adopter may hold it for a moment
            if time.monotonic() - waited_from > max(10.0, 2 * self.lease):
                os.close(fd)
                raise OutputError(f"{path} is locked by another process: is another worker named {self.shard} running?")
            await asyncio.sleep(0.05)
        size = os.fstat(fd).st_size
        committed = await self._cmd("get", self._prefix + "size:" + self.shard)
        if committed is None or size < int(committed):
            if committed is not None:
                log.warning("worker %s: %s is shorter than the records it had written", self.shard, path)
            await self._cmd("set", self._prefix + "size:" + self.shard, size)
        elif size > int(committed):
            os.ftruncate(fd, int(committed))  # a flush that did not finish: its lines are still in Redis
            size = int(committed)
        self._committed = size
        self._fd = fd
        return fd

    # --- the Frontier seam ------------------------------------------------------------------

    async def add_seed(self, item: Item) -> bool:
        member = _member(item)
        token, self._outstanding = await self._call("add_seed", self.shard, self._lease_ms, member)
        if not token:
            return False
        self._leases[item.url] = (member[:8], int(token))
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

    async def next(self) -> Item | None:
        await self._ensure()
        await self._push_seeds_closed()
        pause = 0.005
        while True:
            if self._stopped:
                return None
            if self._taken:
                return self._taken.popleft()
            reply = await self._call("take", self.shard, TAKE_BATCH, self._lease_ms)
            ended, self._outstanding = int(reply[0]), int(reply[1])
            for i in range(3, len(reply), 2):
                item = _item(reply[i + 1])
                self._leases[item.url] = (reply[i + 1][:8], int(reply[i]))
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

    async def open_output(self, path: Path, header: str | None) -> None:
        """Open and lock this worker's shard (named when built: `path` is the same), with `header` when empty."""
        assert self._path is not None and path == self._path, (path, self._path)
        await self._ensure()
        async with self._flush_lock:
            fd = await self._shard_fd()
            if header and self._committed == 0 and os.fstat(fd).st_size == 0:
                try:
                    await asyncio.to_thread(_append, fd, header.encode("utf-8"))
                except OSError as e:
                    raise OutputError(f"cannot write {self._path}: {e.strerror or e}") from None
                self._committed = os.fstat(fd).st_size
                await self._cmd("set", self._prefix + "size:" + self.shard, self._committed)

    async def record(self, item: Item, line: str | None) -> bool:
        """Record `item` (its output line; None: no file) and release it, in one atomic step.

        False: this worker's lease on it ran out and another worker has it now: the
        record must not be kept (that worker records it).
        """
        held = self._leases.get(item.url)
        fp, token = held if held is not None else (_fp(item.url), 0)
        ok = await self._commit(fp, token, line)
        if held is not None and self._leases.get(item.url) == held:
            del self._leases[item.url]
        return ok

    async def record_unaccepted(self, item: Item, line: str | None) -> bool:
        """The record of a URL never leased: kept by the first worker to mark it seen."""
        return await self._commit(_fp(item.url), 0, line)

    async def _commit(self, fp: bytes, token: int, line: str | None) -> bool:
        data = line.encode("utf-8", "replace") if line is not None else b""
        ok = await self._call("commit", self.shard, fp, token, data, 1 if line is not None else 0)
        if ok and line is not None:
            self._dirty = True
        return bool(ok)

    async def release(self, item: Item) -> None:
        """`item` was dropped (the run is stopping, or `max_pages` is spent): it goes back to pending.

        Recorded items go through `record`; so an interrupted worker loses nothing.
        """
        held = self._leases.pop(item.url, None)
        if held is not None:
            await self._call("give_back", *held)

    async def flush(self) -> None:
        await self._flush()

    @property
    def outstanding(self) -> int:
        return self._outstanding

    @property
    def claimed(self) -> int:
        return self._claimed

    def close_seeds(self) -> None:
        self._seeds_closed = True

    async def _push_seeds_closed(self) -> None:
        if self._seeds_closed and not self._seeds_pushed and self._redis is not None:
            await self._cmd("srem", self._prefix + "seeding", self.shard)
            self._seeds_pushed = True

    def stop(self) -> None:
        self._stopped = True
        self._wake.set()

    async def mark_seen(self, url: str) -> None:
        await self._cmd("sadd", self._prefix + "seen", _fp(url))

    async def is_seen(self, url: str) -> bool:
        return bool(await self._cmd("sismember", self._prefix + "seen", _fp(url)))

    async def claim(self, limit: int) -> bool:
        ok, self._claimed = await self._call("claim", limit)
        if not ok:
            self._budget_spent = True
        return bool(ok)

    def count_claimed(self, n: int) -> None:
        """Nothing to do: Redis counted those fetches when they were claimed."""

    def limiter(self, concurrency: int, per_host: int, delay: float) -> RedisHostLimiter:
        """A `Limiter` whose `per_host` and `delay` hold over all workers of the job."""
        self._limiter = RedisHostLimiter(self, concurrency, per_host, delay)
        return self._limiter

    # --- the end -------------------------------------------------------------------------

    async def close(self) -> None:
        """Give back what this worker holds, write its last records, adopt dead workers' records."""
        if self._closed or self._redis is None:
            self._closed = True
            return
        self._closed = True
        self._seeds_closed = True
        try:
            await self._push_seeds_closed()
            held = [x for pair in self._leases.values() for x in pair]
            self._leases.clear()
            self._taken.clear()
            for i in range(0, len(held), 512):
                await self._call("give_back", *held[i : i + 512])
            await self._flush()
            if self._path is not None:
                await self._adopt(wait=self._ended)
            await self._call("unregister", self.shard, self.instance)
        finally:
            async with self._flush_lock:  # never cut a flush short: its append would outlive it
                for task in self._tasks:
                    task.cancel()
            for task in self._tasks:
                with contextlib.suppress(BaseException):
                    await task
            if self._fd is not None:
                os.close(self._fd)  # and its lock
                self._fd = None
            client, self._redis = self._redis, None
            with contextlib.suppress(Exception):
                await client.aclose()

    async def _adopt(self, wait: bool) -> None:
        """Take over the records of dead workers that never reached their shards.

        With `wait` (the crawl is over), wait for workers that are still alive in
        Redis to flush theirs, or to be found dead (at most `lease` seconds).
        """
        assert self._output is not None
        deadline = time.monotonic() + (2 * self.lease + 5 if wait else 0)
        left: dict[str, int] = {}
        while True:
            waiting = False
            left.clear()
            for raw in await self._cmd("smembers", self._prefix + "workers"):
                other = raw.decode()
                if other == self.shard:
                    continue
                outbox, flushing, alive = await self._retry(lambda other=other: self._status(other))
                if not outbox and not flushing:
                    if not alive:
                        await self._cmd("srem", self._prefix + "workers", other)
                    continue
                if alive:
                    waiting = True
                    continue
                moved, took_flushing, locked = await self._adopt_one(other, flushing)
                if moved > 0:
                    self._dirty = True
                    await self._flush()
                if moved < 0 or locked:
                    waiting = True
                elif flushing and not took_flushing:
                    left[other] = flushing
            if not waiting or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        for other, n in left.items():
            log.warning(
                "worker %s died while writing %d records to its shard, which this worker cannot see: they stay "
                "in Redis until a worker named %s is started again with --resume where its shard is",
                other, n, other,
            )

    async def _status(self, other: str) -> list[int]:
        """(records in its outbox, records it was writing, alive) of worker `other`."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.llen(self._prefix + "outbox:" + other)
        pipe.llen(self._prefix + "flushing:" + other)
        pipe.exists(self._prefix + "alive:" + other)
        return await pipe.execute()

    async def _adopt_one(self, other: str, flushing: int) -> tuple[int, bool, bool]:
        """(lines adopted, or -1 when `other` is alive after all; its unfinished batch with them; its shard locked)."""
        assert self._output is not None
        fd: int | None = None
        locked = False
        take_flushing = False
        committed = 0
        if flushing:
            path = sink_path(self._output.dir, self._output.format, other)
            try:
                fd = os.open(path, os.O_WRONLY)
            except OSError:
                fd = None  # not on this machine
            if fd is not None and not _try_lock(fd):
                os.close(fd)
                fd, locked = None, True  # its owner still runs, or another worker is adopting it
        try:
            if fd is not None:
                raw = await self._cmd("get", self._prefix + "size:" + other)
                if raw is not None and os.fstat(fd).st_size >= int(raw):
                    take_flushing, committed = True, int(raw)
            moved = int(await self._call("adopt", self.shard, other, 1 if take_flushing else 0))
            if take_flushing and moved >= 0 and fd is not None:
                os.ftruncate(fd, committed)  # what its unfinished flush left: those lines are ours now
            return moved, take_flushing and moved >= 0, locked
        finally:
            if fd is not None:
                os.close(fd)


class RedisHostLimiter(Limiter):
    """`Limiter` whose `per_host` and `delay` hold over every worker of the job.

    Order as in `Limiter`: a host slot (here in Redis; with a delay, the host's
    gate too), then a global slot of this worker, then the start is written
    down; a URL waiting for its host holds no global slot. The local per-host
    semaphore and lock keep at most `per_host` tasks of this worker, one at a
    time, asking Redis for one host.
    """

    def __init__(self, frontier: RedisFrontier, concurrency: int, per_host: int, delay: float) -> None:
        super().__init__(concurrency, per_host, delay)
        self._f = frontier
        self._tokens: dict[str, str] = {}  # slot token -> host, renewed by the heartbeat
        self._count = 0
        self._background: set[asyncio.Task[Any]] = set()

    def raise_delay(self, host: str, delay: float) -> None:
        super().raise_delay(host, delay)
        task = asyncio.get_running_loop().create_task(self._f._call("host_delay", host, round(delay * 1000)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    @asynccontextmanager
    async def _slot(self, host: str, h: Any) -> AsyncIterator[None]:
        # `Limiter.request` keeps the host's use count around this, so idle hosts are forgotten safely
        self._count += 1
        token = f"{self._f.shard}/{self._f.instance[:8]}/{self._count}"
        got_global = False
        async with h.slots:
            try:
                async with h.gate:
                    self._tokens[token] = host
                    gate_ms = await self._acquire(host, token, h.delay)
                    await self._global.acquire()
                    got_global = True
                    if gate_ms:
                        await self._f._call("host_start", host, token, gate_ms)
                if self.closed:
                    raise LimiterClosed
                self.in_flight += 1
                try:
                    yield
                finally:
                    self.in_flight -= 1
            finally:
                if got_global:
                    self._global.release()
                if self._tokens.pop(token, None) is not None:
                    with contextlib.suppress(Exception):  # else it expires by itself
                        await self._f._scripts["host_release"](keys=[self._f._prefix], args=[host, token])

    async def _acquire(self, host: str, token: str, delay: float) -> int:
        """Wait for a slot of `host` over all workers; returns the delay (ms) whose gate it holds."""
        delay_ms = round(delay * 1000)
        pause = 2  # ms: polls a busy host less and less often, up to every 50 ms
        while True:
            if self.closed:
                raise LimiterClosed
            ok, value = await self._f._call(
                "host_acquire", host, token, self._per_host, self._f._slot_ttl_ms, delay_ms
            )
            if ok:
                return int(value)
            if value:  # the host's delay: the exact wait
                await asyncio.sleep(int(value) / 1000)
                continue
            await asyncio.sleep(pause / 1000)
            pause = min(pause * 2, 50)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _append(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]
    os.fsync(fd)
