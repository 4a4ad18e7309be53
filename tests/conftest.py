"""Loopback servers and CLI runners shared by the tests.

Every server is a real aiohttp server on 127.0.0.x started inside the test's
event loop; a test that needs several hosts binds them to distinct loopback
addresses (127.0.0.2, 127.0.0.3, ...), since a host is a host name.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Config
from scraper.config import CrawlConfig, FetchConfig, OutputConfig, ParseConfig, RetryConfig

ROOT = Path(__file__).resolve().parent.parent


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """On pytest-timeout's timeout, add the stack of every task of the test's event loop.

    The timeout interrupts the loop where it waits (in `select`): the stack that says
    what hung is that of the task awaiting forever, not the loop's own.
    """
    try:
        return (yield)
    except BaseException as e:  # re-raised: only looked at
        if type(e).__name__ == "Failed" and "Timeout" in str(e):
            item.add_report_section("call", "asyncio tasks at the timeout", _task_stacks())
        raise


def _task_stacks() -> str:
    try:
        loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        return "(no event loop)"
    if loop.is_closed():
        return "(the event loop is closed)"
    out = io.StringIO()
    for task in asyncio.all_tasks(loop):
        task.print_stack(file=out)
    return out.getvalue()


@dataclass
class Server:
    """A running loopback server and what it observed."""

    host: str
    port: int
    in_flight: int = 0
    max_in_flight: int = 0
    hits: dict[str, int] = field(default_factory=dict)
    starts: list[tuple[float, str]] = field(default_factory=list)

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def requests(self, path: str) -> int:
        return self.hits.get(path, 0)


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    """`await serve(routes, host=...)`: start a server; it counts requests in flight.

    `routes` maps a path to a handler, or is a single catch-all handler.
    """
    runners: list[web.AppRunner] = []

    async def start(routes: dict[str, Handler] | Handler, host: str = "127.0.0.1", port: int = 0) -> Server:
        server = Server(host=host, port=0)

        @web.middleware
        async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
            path = request.path_qs
            server.hits[path] = server.hits.get(path, 0) + 1
            server.starts.append((asyncio.get_running_loop().time(), path))
            server.in_flight += 1
            server.max_in_flight = max(server.max_in_flight, server.in_flight)
            try:
                return await handler(request)
            finally:
                server.in_flight -= 1

        app = web.Application(middlewares=[observe])
        if callable(routes):
            app.router.add_route("*", "/{tail:.*}", routes)
        else:
            for path, handler in routes.items():
                app.router.add_route("*", path, handler)
            app.router.add_route("*", "/{tail:.*}", _not_found)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        runners.append(runner)
        server.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return server

    yield start
    for runner in runners:
        await runner.cleanup()


async def _not_found(request: web.Request) -> web.Response:
    return web.Response(status=404, text="not found")


@pytest.fixture
def request_starts(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[float]]:
    """Host -> the monotonic times at which the crawl's requests to it started.

    A start as the scraper made it: the time the `Limiter` wrote down when it let
    the request go (what its `delay` is measured from), not when the bytes reached
    a server, which on a loaded machine lags by a varying amount.
    """
    from scraper.limits import Limiter

    starts: dict[str, list[float]] = {}
    original = Limiter.request

    @asynccontextmanager
    async def request(self: Limiter, host: str) -> AsyncIterator[None]:
        async with original(self, host):
            starts.setdefault(host, []).append(self._hosts[host].last_start)
            yield

    monkeypatch.setattr(Limiter, "request", request)
    return starts


class LoopLag:
    """The loop's scheduling delay while the block runs: how late a short sleep wakes.

    A timing assertion whose interval includes waking from a sleep allows the
    lateness measured over that interval on top of its own margin: on a loaded
    machine, it is what the load ate.
    """

    def __init__(self, every: float = 0.005) -> None:
        self.every = every
        self.samples: list[tuple[float, float, float]] = []  # (asleep from, woke at, late by)
        self._task: asyncio.Task[None] | None = None

    def worst(self, start: float = -float("inf"), end: float = float("inf")) -> float:
        """The latest wake of a sleep that overlapped [start, end] (monotonic times)."""
        return max((late for t0, t1, late in self.samples if t1 >= start and t0 <= end), default=0.0)

    async def __aenter__(self) -> LoopLag:
        self._task = asyncio.create_task(self._sample())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        await asyncio.wait([self._task])  # a cancellation of the test itself still propagates

    async def _sample(self) -> None:
        while True:
            t = time.monotonic()
            await asyncio.sleep(self.every)
            now = time.monotonic()
            self.samples.append((t, now, max(0.0, now - t - self.every)))


def html(title: str, links: list[str] = (), body: str = "", description: str | None = None) -> str:  # type: ignore[assignment]
    desc = f'<meta name="description" content="{description}">' if description is not None else ""
    anchors = "".join(f'<a href="{link}">{link}</a>\n' for link in links)
    return f"<!doctype html><html><head><title>{title}</title>{desc}</head><body>{body}{anchors}</body></html>"


def page_handler(text: str, content_type: str = "text/html", status: int = 200) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type, status=status)

    return handler


def config(tmp_path: Path | None = None, **sections: dict[str, Any]) -> Config:
    """A Config for tests: robots off, no retry waits, small pool, a 30 s timeout; sections override."""
    fetch = {"obey_robots": False, "timeout": 30.0, **sections.pop("fetch", {})}
    retry = {"backoff": 0.01, "max_backoff": 0.2, **sections.pop("retry", {})}
    parse = {"workers": 1, **sections.pop("parse", {})}
    output = {"dir": str(tmp_path / "out") if tmp_path else "output", **sections.pop("output", {})}
    crawl = sections.pop("crawl", {})
    assert not sections, f"unknown sections {sections}"
    return Config(
        fetch=FetchConfig(**fetch),
        retry=RetryConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in retry.items()}),
        parse=ParseConfig(**parse),
        output=OutputConfig(**output),
        crawl=CrawlConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in crawl.items()}),
    )


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


async def run_cli(*args: str, cwd: Path | None = None, stdin: bytes | None = None, timeout: float = 60) -> Result:
    """Run `python -m scraper ARGS` as a real subprocess (the servers keep serving meanwhile)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", *args,
        cwd=cwd,
        stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(stdin), timeout)
    return Result(proc.returncode or 0, out.decode(), err.decode())


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def write_config(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


class _Written:
    output_size = 0


class _MockResponse:
    """aioresponses builds responses without `stream_writer`, which aiohttp 3.14 requires."""

    @staticmethod
    def make() -> type:
        from aiohttp import ClientResponse

        class Response(ClientResponse):
            def __init__(self, *args: Any, **kwargs: Any) -> None:
                kwargs.setdefault("stream_writer", _Written())
                super().__init__(*args, **kwargs)

        return Response


@pytest.fixture
def mock_http() -> Any:
    """aioresponses, made to work with this aiohttp; `.get(url, ...)` as usual."""
    from aioresponses import aioresponses

    response_class = _MockResponse.make()
    with aioresponses() as m:
        original = m.add

        def add(url: Any, method: str = "GET", *args: Any, **kwargs: Any) -> None:
            kwargs.setdefault("response_class", response_class)
            original(url, method, *args, **kwargs)

        m.add = add  # type: ignore[method-assign]
        yield m
