"""Per-host limits over every worker of a job: a `Limiter` whose host slots live in Redis.

Order as in `Limiter`: a host slot (here in Redis; with a delay, the host's gate
too), then a global slot of this worker, then the start is written down; a URL
waiting for its host holds no global slot. The local per-host semaphore and
lock keep at most `per_host` tasks of this worker, one at a time, asking Redis
for one host. A slot is a token in the host's sorted set that expires unless
the heartbeat renews it (`renew`), so a dead worker's slots come back.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tenacity import AsyncRetrying, RetryCallState, retry_if_result

from ..limits import Limiter, LimiterClosed
from .redis_link import RedisLink, redis

__all__ = ["RedisHostLimiter"]

log = logging.getLogger("scraper.frontier.redis")


class RedisHostLimiter(Limiter):
    """`Limiter` whose `per_host` and `delay` hold over every worker of the job; `concurrency` stays this worker's.

    `slot_ttl` is how long (seconds) a slot outlives a worker that stopped renewing it.
    """

    def __init__(self, link: RedisLink, concurrency: int, per_host: int, delay: float, slot_ttl: float) -> None:
        super().__init__(concurrency, per_host, delay)
        self._link = link
        self._slot_ttl_ms = max(1, round(slot_ttl * 1000))
        self._tokens: dict[str, str] = {}  # slot token -> host, renewed by the heartbeat
        self._count = 0
        self._background: set[asyncio.Task[Any]] = set()
        link.on_beat(self.renew)

    def raise_delay(self, host: str, delay: float) -> None:
        super().raise_delay(host, delay)
        task = asyncio.get_running_loop().create_task(self._link.call("host_delay", host, round(delay * 1000)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def renew(self) -> None:
        """Renew the host slots this worker holds (the heartbeat's part)."""
        if self._tokens:
            slots: list[Any] = [self._slot_ttl_ms]
            for token, host in list(self._tokens.items()):
                slots += (host, token)
            await self._link.call("host_renew", *slots)

    @asynccontextmanager
    async def _slot(self, host: str, h: Any) -> AsyncIterator[None]:
        self._count += 1
        token = f"{self._link.worker}/{self._link.instance[:8]}/{self._count}"
        got_global = False
        async with h.slots:
            try:
                async with h.gate:
                    self._tokens[token] = host
                    gate_ms = await self._acquire(host, token, h.delay)
                    await self._global.acquire()
                    got_global = True
                    if gate_ms:
                        await self._link.call("host_start", host, token, gate_ms)
                yield
            finally:
                if got_global:
                    self._global.release()
                if self._tokens.pop(token, None) is not None:
                    await self._release(host, token)

    async def _release(self, host: str, token: str) -> None:
        try:  # once, not retried: a slot not given back expires by itself
            await self._link.call_once("host_release", host, token)
        except (redis.exceptions.RedisError, OSError) as e:
            log.debug("host slot %s of %s left to expire: %s", token, host, e)

    async def _acquire(self, host: str, token: str, delay: float) -> int:
        """Wait for a slot of `host` over all workers; returns the delay (ms) whose gate it holds.

        Polled under a tenacity policy: a busy host is asked again less and less
        often (2 ms doubling to 50 ms); a host whose next start is known is asked
        again exactly then.
        """
        delay_ms = round(delay * 1000)

        async def ask() -> tuple[int, int]:
            if self.closed:
                raise LimiterClosed
            ok, value = await self._link.call(
                "host_acquire", host, token, self._per_host, self._slot_ttl_ms, delay_ms
            )
            return int(ok), int(value)

        retrying = AsyncRetrying(
            retry=retry_if_result(lambda reply: not reply[0]),  # LimiterClosed ends it: not a reply
            wait=_until_free,
        )
        _, gate_ms = await retrying(ask)
        return gate_ms


def _until_free(state: RetryCallState) -> float:
    """Seconds until the host is asked again: its delay's exact end when Redis said it, else a backoff."""
    _, wait_ms = state.outcome.result()  # type: ignore[union-attr]
    if wait_ms:
        return wait_ms / 1000
    return min(0.002 * 2 ** (state.attempt_number - 1), 0.05)
