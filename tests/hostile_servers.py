"""Hostile servers and helpers for the tests of issue 4 (a hostile web and bad input).

Everything here listens on 127.0.0.x only. `raw_serve` starts a bare asyncio
TCP server (optionally TLS) for responses that aiohttp's own server would
refuse to send: garbage heads, endless headers, broken chunking.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import shutil
import socket
import ssl
import subprocess
import sys
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ROOT, Result

RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
_HANGUPS = (ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)


@dataclass
class RawServer:
    host: str
    port: int
    connections: int = 0

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str, scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"


@pytest.fixture
async def raw_serve() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    """`await raw_serve(handler, tls=None)`: a bare TCP server; it counts connections."""
    servers: list[asyncio.Server] = []
    tasks: set[asyncio.Task[Any]] = set()

    async def start(handler: RawHandler, host: str = "127.0.0.1", tls: ssl.SSLContext | None = None) -> RawServer:
        info = RawServer(host=host, port=0)

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            info.connections += 1
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            try:
                await handler(reader, writer)
            except _HANGUPS:
                pass
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, host, 0, ssl=tls)
        servers.append(server)
        info.port = server.sockets[0].getsockname()[1]
        return info

    yield start
    for task in list(tasks):
        task.cancel()
    for server in servers:
        server.close()
        await server.wait_closed()


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """Read one request head (up to the blank line)."""
    return await reader.readuntil(b"\r\n\r\n")


@pytest.fixture(autouse=True)
def no_dns_for_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    """Names under .invalid fail in this process without a DNS query leaving the machine.

    RFC 6761 lets a resolver answer for .invalid itself; glibc asks the name
    server anyway, and these tests send nothing beyond 127.0.0.0/8.
    """
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else str(host or "")
        if name.rstrip(".").endswith(".invalid"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` with nothing listening: connecting to it is refused."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


# --- aiohttp handlers ------------------------------------------------------------


def redirect(location: str, status: int = 302) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(status=status, headers={"Location": location})

    return handler


def chain(n: int, final: str = "/final", prefix: str = "/r") -> dict[str, Any]:
    """Routes for exactly `n` redirects: /r0 -> /r1 -> ... -> /r{n-1} -> `final`."""
    routes: dict[str, Any] = {}
    for i in range(n):
        routes[f"{prefix}{i}"] = redirect(f"{prefix}{i + 1}" if i + 1 < n else final)
    return routes


def sleeper(seconds: float, body: bytes = b"ok", content_type: str = "text/plain") -> Any:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.Response(body=body, content_type=content_type)

    return handler


# --- bombs -----------------------------------------------------------------------

BOMB_SIZE = 500 * 1024 * 1024  # what the bomb expands to


def gzip_bomb_handler(sent: dict[str, int], size: int = BOMB_SIZE) -> Any:
    """A gzip stream over `size` zeros (~1000:1), compressed as it is served, in ~32 KB chunks.

    Each network chunk expands to ~32 MB; the whole to `size`. `sent` counts
    the compressed bytes written.
    """

    async def handler(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html", "Content-Encoding": "gzip"})
        await resp.prepare(request)
        z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        zeros = bytes(1 << 20)
        pending = b""
        try:
            for _ in range(size >> 20):
                pending += z.compress(zeros)
                if len(pending) >= 32 * 1024:
                    await resp.write(pending)
                    sent["bytes"] = sent.get("bytes", 0) + len(pending)
                    pending = b""
                await asyncio.sleep(0)  # the client may share this event loop
                if request.transport is None or request.transport.is_closing():
                    return resp  # it hung up
            await resp.write(pending + z.flush())
            await resp.write_eof()
        except (ConnectionError, RuntimeError):  # the client hung up, as it should
            pass
        return resp

    return handler


# --- TLS -------------------------------------------------------------------------


def self_signed(tmp: Path) -> tuple[Path, Path]:
    """A throwaway self-signed certificate for 127.0.0.1 (openssl req), or skip."""
    openssl = shutil.which("openssl")
    if openssl is None:
        if os.environ.get("CI"):
            pytest.fail("openssl not found: .ci/run installs it")  # CI never skips a test silently
        pytest.skip("openssl not found")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True, timeout=30,
    )
    return cert, key


def server_tls(cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    return ctx


# --- the CLI with its peak memory ---------------------------------------------------

# Runs the CLI as a child and reports the child's peak RSS as the kernel accounted
# it (getrusage RUSAGE_CHILDREN: the largest waited-for descendant), with no polling race.
_PEAK_RSS = (
    "import resource, subprocess, sys\n"
    "rc = subprocess.call([sys.executable, '-m', 'scraper', *sys.argv[1:]])\n"
    "print('PEAK_RSS_KB=%d' % resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    "sys.exit(rc)\n"
)


async def run_cli_peak_rss(*args: str, cwd: Path | None = None, timeout: float = 60) -> tuple[Result, int]:
    """`python -m scraper ARGS` in a subprocess, as `run_cli` does; returns (result, peak RSS in bytes)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _PEAK_RSS, *args,
        cwd=cwd,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout)
    text = out.decode()
    peak = [line for line in text.splitlines() if line.startswith("PEAK_RSS_KB=")]
    assert peak, f"no peak RSS reported: {text!r} {err.decode()!r}"
    return Result(proc.returncode or 0, text, err.decode()), int(peak[-1].split("=", 1)[1]) * 1024


def starts_of(server: Any, path: str | None = None) -> list[float]:
    """Loop times at which `server` started requests (for `path` only, when given)."""
    return [t for t, p in server.starts if path is None or p == path]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


monotonic = time.monotonic
