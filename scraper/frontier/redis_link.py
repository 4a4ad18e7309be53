"""One worker's link to its job in Redis: the connection, the Lua scripts, the retry policy, the heartbeat.

The other rooms of the Redis frontier (the queue and leases in `redis`, the host
limiter in `redis_hosts`, the shard writer in `redis_shard`) talk to Redis only
through a `RedisLink`: `call` runs one of the scripts, `command` one plain
command, both under the one retry policy below.

Retry policy (tenacity): a lost connection or a timeout is tried again with
exponential backoff (0.05 s doubling to 2 s), for as long as the outage lasts,
up to `RETRY_FOR` seconds counted from its first failure (so calls that start
during an outage do not extend it). Then the worker gives up: `OutputError`
(exit 1), and every later call fails at once with the same error.

The scripts live in `lua/*.lua` (each with `lua/lib.lua` in front), read once
when this module is imported and registered once per connection (redis-py runs
them by SHA and loads a script only when Redis does not know it).

Background work (the heartbeat here, the shard flusher) runs in `Periodic`
tasks, which stop by an event and are awaited with a bound: a task that a
cancellation did not reach (a Redis call that returned normally in a cancelled
task) cannot keep `close()` waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from ..errors import OutputError, UsageError

try:
    import redis
    import redis.asyncio as aioredis
    import redis.asyncio.retry
    import redis.retry
    from redis.backoff import NoBackoff
except ImportError:  # pragma: no cover - the extra is not installed
    redis = None  # type: ignore[assignment]
    NoBackoff = None  # type: ignore[assignment,misc]

__all__ = ["RETRY_FOR", "SCRIPTS", "NoBackoff", "Periodic", "RedisLink", "redis", "safe_url"]

log = logging.getLogger("scraper.frontier.redis")

#: seconds a lost connection to Redis is retried before the worker gives up
RETRY_FOR = 300.0


def _load_scripts() -> dict[str, str]:
    folder = resources.files(__package__).joinpath("lua")
    lib = folder.joinpath("lib.lua").read_text(encoding="utf-8")
    return {
        entry.name.removesuffix(".lua"): lib + entry.read_text(encoding="utf-8")
        for entry in folder.iterdir()
        if entry.name.endswith(".lua") and entry.name != "lib.lua"
    }


#: script name -> its Lua source, the library in front; read once
SCRIPTS: dict[str, str] = _load_scripts()


def safe_url(url: str) -> str:
    """The Redis URL without its password, for messages."""
    import re

    return re.sub(r"(//[^:/@]*:)[^@/]*@", r"\1***@", url)


class Periodic:
    """`fn()` every `interval` seconds in a task, until `stop()`.

    A failure is logged; it ends the task unless `keep_going` (then the next round tries again).
    """

    def __init__(
        self, name: str, interval: float, fn: Callable[[], Awaitable[Any]], *, keep_going: bool = False
    ) -> None:
        self.name = name
        self._interval = interval
        self._fn = fn
        self._keep_going = keep_going
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=self.name)

    async def _run(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._interval)
            if self._stopping.is_set():
                return
            try:
                await self._fn()
            except Exception as e:  # the run learns of a lasting failure from its own calls
                log.warning("%s failed: %s", self.name, e)
                if not self._keep_going:
                    return

    async def stop(self, timeout: float) -> None:
        """Ask the task to end after its current round, and wait for it at most `timeout` seconds (twice)."""
        self._stopping.set()
        task, self._task = self._task, None
        if task is None:
            return
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:  # a round stuck on Redis: cut it short
            task.cancel()
            done, _ = await asyncio.wait({task}, timeout=timeout)
        if not done:
            log.warning("%s did not stop within %.1f s; left behind", self.name, 2 * timeout)
        elif not task.cancelled() and task.exception() is not None:  # _run logs its own; this is a bug
            log.warning("%s ended with %r", self.name, task.exception())


class RedisLink:
    """The connection of worker `worker` to job `job`, its name taken in Redis and kept alive.

    Connecting (on the first call) registers the worker: its name must not be in
    use by a live worker (one that just died of that name is waited out, at most
    `lease` seconds). Then a heartbeat every `beat` seconds keeps it alive, and
    runs what the other rooms renew with it (`on_beat`).
    """

    def __init__(self, url: str, job: str, worker: str, lease: float, beat: float) -> None:
        if redis is None:
            raise UsageError("[frontier] backend = \"redis\" needs the redis package: pip install 'scraper[redis]'")
        self.url = url
        self.job = job
        self.worker = worker
        self.lease = lease
        #: this life of the worker (a restarted worker of the same name is another instance)
        self.instance = uuid.uuid4().hex
        #: every key of the job starts with this (the braces make one Redis Cluster hash slot)
        self.prefix = f"scraper:{{{job}}}:"
        self.lease_ms = max(1, round(lease * 1000))
        self._client: Any = None
        self._scripts: dict[str, Any] = {}
        self._lock = asyncio.Lock()
        self._failed: BaseException | None = None
        self._outage: float | None = None
        self._beats: list[Callable[[], Awaitable[Any]]] = []
        self._heartbeat = Periodic(f"worker {worker}: heartbeat", beat, self._beat)

    @property
    def connected(self) -> bool:
        return self._client is not None

    def on_beat(self, fn: Callable[[], Awaitable[Any]]) -> None:
        """Run `fn()` with every heartbeat (renewing what a dead worker must give back)."""
        self._beats.append(fn)

    async def _beat(self) -> None:
        for fn in list(self._beats):
            await fn()

    # --- connecting ------------------------------------------------------------------

    async def ensure(self) -> None:
        """Connect and register this worker, once; a worker that gave up raises its error again."""
        if self._client is not None:
            return
        if self._failed is not None:
            raise self._failed
        async with self._lock:
            if self._client is not None:
                return
            client = aioredis.Redis.from_url(
                self.url,
                socket_connect_timeout=5,
                socket_timeout=10,
                retry=redis.asyncio.retry.Retry(NoBackoff(), 0),  # retried here, by the policy above
            )
            scripts = {name: client.register_script(src) for name, src in SCRIPTS.items()}
            try:
                await self._register(scripts)
            except BaseException:
                await _close_client(client)
                raise
            self._client, self._scripts = client, scripts
            self._heartbeat.start()

    async def _register(self, scripts: dict[str, Any]) -> None:
        """Take this worker's name, waiting out the heartbeat of a dead worker of the same name."""
        waited_from = time.monotonic()
        told = False
        while True:
            ok, ttl = await self._retrying(
                lambda: scripts["register"](keys=[self.prefix], args=[self.worker, self.instance, self.lease_ms])
            )
            if ok:
                return
            if time.monotonic() - waited_from > self.lease + 0.5:  # a live worker renews every lease / 3
                raise UsageError(
                    f"worker name {self.worker!r} is in use by a live worker of job {self.job!r}: "
                    "give each worker its own SCRAPER_WORKER"
                )
            if not told:
                log.warning("worker %s: waiting for the last worker of that name to time out", self.worker)
                told = True
            await asyncio.sleep(min(max(int(ttl), 10) / 1000, 0.5))

    async def close(self) -> None:
        """Stop the heartbeat and close the connection (the worker's name runs out by itself)."""
        await self._heartbeat.stop(timeout=max(1.0, 2 * self.lease))
        client, self._client = self._client, None
        if client is not None:
            await _close_client(client)

    # --- calls -------------------------------------------------------------------------

    async def call(self, name: str, *args: Any) -> Any:
        """Run script `name` with `args` (KEYS[1] is the job's prefix)."""
        await self.ensure()
        script = self._scripts[name]
        return await self._retrying(lambda: script(keys=[self.prefix], args=list(args)))

    async def call_once(self, name: str, *args: Any) -> Any:
        """Run script `name` once, not retried: for what may as well be left to expire."""
        await self.ensure()
        return await self._scripts[name](keys=[self.prefix], args=list(args))

    async def command(self, method: str, *args: Any) -> Any:
        """Run one plain command (`get`, `sadd`, ...)."""
        await self.ensure()
        return await self._retrying(lambda: getattr(self._client, method)(*args))

    async def pipeline(self, build: Callable[[Any], None]) -> list[Any]:
        """Run the commands `build(pipe)` queues, in one round trip (not a transaction)."""
        await self.ensure()

        def run() -> Awaitable[list[Any]]:
            pipe = self._client.pipeline(transaction=False)
            build(pipe)
            return pipe.execute()

        return await self._retrying(run)

    async def _retrying(self, call: Callable[[], Awaitable[Any]]) -> Any:
        retrying = AsyncRetrying(
            retry=retry_if_exception_type((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)),
            wait=wait_exponential(multiplier=0.05, max=2.0),
            stop=self._gave_up,
            before_sleep=self._lost,
            retry_error_callback=self._give_up,
        )
        async def attempt() -> Any:  # tenacity awaits only coroutine functions
            return await call()

        result = await retrying(attempt)
        if self._outage is not None:
            log.warning("Redis at %s is back", safe_url(self.url))
            self._outage = None
        return result

    def _lost(self, state: RetryCallState) -> None:
        if self._outage is None:
            self._outage = time.monotonic()
            log.warning("lost Redis at %s (%s): retrying", safe_url(self.url), _reason(state))

    def _gave_up(self, state: RetryCallState) -> bool:
        return self._outage is not None and time.monotonic() - self._outage > RETRY_FOR

    def _give_up(self, state: RetryCallState) -> Any:
        self._failed = OutputError(f"lost Redis at {safe_url(self.url)} for {RETRY_FOR:.0f} s: {_reason(state)}")
        raise self._failed from None


def _reason(state: RetryCallState) -> str:
    error = state.outcome.exception() if state.outcome is not None else None
    return " ".join(str(error).split()) or type(error).__name__


async def _close_client(client: Any) -> None:
    try:
        await client.aclose()
    except (redis.exceptions.RedisError, OSError) as e:  # closing a dead connection: nothing is lost
        log.debug("closing the Redis connection: %s", e)
