"""Per-host concurrency and delay, and the global cap on requests in flight.

The order of acquisition is the point of this module. A request first waits
for its host (a free `per_host` slot, then the host's `delay` since the last
start), and only then takes one of the `concurrency` global slots. So a URL
waiting on a slow or rate-limited host holds no global slot, and the other
hosts go on at full speed: no head-of-line blocking.

`delay` is measured between request *starts*, and a start is when the global
slot is in hand: the host's gate stays closed until then, so two requests to
one host can never start closer together than `delay`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar

__all__ = ["FINISHING", "Limiter", "LimiterClosed"]

#: True in a task whose requests belong to a page under way (a render's): after `close()`
#: they may still start, so the page can finish within the interrupt's grace
FINISHING: ContextVar[bool] = ContextVar("FINISHING", default=False)


class LimiterClosed(Exception):
    """The run is stopping: no new request may start."""


class _Host:
    __slots__ = ("delay", "gate", "last_start", "slots", "users")

    def __init__(self, per_host: int, delay: float) -> None:
        self.slots = asyncio.Semaphore(per_host)
        self.gate = asyncio.Lock()
        # kept even while delay is 0: a Crawl-delay learnt from robots.txt then
        # holds after the robots.txt request itself
        self.last_start = -float("inf")
        self.delay = delay
        self.users = 0  # requests holding or waiting for this host


class Limiter:
    """`concurrency` requests in flight in all, `per_host` to one host, `delay` between starts."""

    def __init__(self, concurrency: int, per_host: int, delay: float) -> None:
        self._global = asyncio.Semaphore(concurrency)
        self._per_host = per_host
        self._delay = delay
        self._hosts: dict[str, _Host] = {}
        self._created = 0
        self.in_flight = 0
        self._closed = False

    def close(self) -> None:
        """Refuse every request that has not started yet (an interrupt), but those of pages under way."""
        self._closed = True

    @property
    def closed(self) -> bool:
        """Whether a request starting now is refused (`LimiterClosed`)."""
        return self._closed and not FINISHING.get()

    def _host(self, host: str) -> _Host:
        h = self._hosts.get(host)
        if h is None:
            self._created += 1
            if self._created % 4096 == 0:
                self._forget_idle()
            h = self._hosts[host] = _Host(self._per_host, self._delay)
        return h

    def _forget_idle(self) -> None:
        """Drop hosts nobody uses whose delay window has passed: a crawl of a
        million hosts must not keep a million semaphores. A host whose delay was
        raised by robots.txt is kept, or its Crawl-delay would be forgotten."""
        now = time.monotonic()
        for name, h in list(self._hosts.items()):
            if h.users == 0 and h.delay == self._delay and h.last_start + h.delay <= now:
                del self._hosts[name]

    @property
    def hosts(self) -> int:
        """Hosts the limiter holds state for."""
        return len(self._hosts)

    def raise_delay(self, host: str, delay: float) -> None:
        """Make `host`'s delay at least `delay` (robots.txt Crawl-delay)."""
        h = self._host(host)
        h.delay = max(h.delay, delay)

    def delay_of(self, host: str) -> float:
        h = self._hosts.get(host)
        return h.delay if h is not None else self._delay

    @asynccontextmanager
    async def request(self, host: str) -> AsyncIterator[None]:
        """Hold a host slot and a global slot for the duration of one request."""
        h = self._host(host)
        h.users += 1  # kept around the slot, so an idle host is forgotten only when idle
        try:
            async with self._slot(host, h):
                if self.closed:
                    raise LimiterClosed
                self.in_flight += 1
                try:
                    yield
                finally:
                    self.in_flight -= 1
        finally:
            h.users -= 1

    @asynccontextmanager
    async def _slot(self, host: str, h: _Host) -> AsyncIterator[None]:
        """Hold the host's slot (after its delay), then a global slot: the part a subclass may replace.

        `request` does the rest (the closed check, the count in flight).
        """
        async with h.slots:
            if h.delay > 0:
                async with h.gate:
                    wait = h.last_start + h.delay - time.monotonic()
                    if wait > 0:
                        await asyncio.sleep(wait)
                    await self._global.acquire()
                    h.last_start = time.monotonic()
            else:
                await self._global.acquire()
                h.last_start = time.monotonic()
            try:
                yield
            finally:
                self._global.release()
