"""Loopback servers for the benchmarks, each a separate process.

- `start_static(root)` serves the generated site: with nginx when it is
  installed (one worker, as the current user, config and logs in a temp
  dir), else with aiohttp's static handler in a subprocess. `Server.kind`
  says which, and the driver reports it.
- `start_latency(delay_ms)` answers every request with a small HTML page
  (a title, no links) after `delay_ms`. It counts requests and records when
  the first one started and the last response was sent, served as JSON on
  `/__stats` (and cleared by `/__reset`), so the driver can compare the
  server-observed span with the ideal `n * delay / concurrency`.

Servers run in their own process so that the client being measured owns its
core: what the driver's getrusage sees is the client's CPU time only.

The aiohttp servers are also this module's command line, which the parent
starts as a subprocess; each binds port 0 and prints the port it got:

    python -m benchmarks.servers static ROOT
    python -m benchmarks.servers latency --delay-ms 200
"""

from __future__ import annotations

import argparse
import asyncio
import grp
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = [
    "Server",
    "latency_stats",
    "reset_latency_stats",
    "start_latency",
    "start_static",
]

HOST = "127.0.0.1"
START_TIMEOUT = 15.0


@dataclass
class Server:
    """A running server process; use it as a context manager, or call `stop()`."""

    kind: str  # "nginx", "aiohttp-static" or "aiohttp-latency"
    base_url: str  # e.g. "http://127.0.0.1:41234", no trailing slash
    process: subprocess.Popen[bytes]
    workdir: Path | None = None  # nginx's config and logs; removed on stop
    info: dict[str, Any] = field(default_factory=dict)

    def stop(self) -> None:
        """Stop the process (and nginx's worker), then remove the work dir."""
        if self.process.poll() is None:
            # SIGTERM is a fast shutdown for nginx's master (it stops its worker)
            # and a clean exit for the aiohttp servers.
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                # Our server runs in a session of its own: kill that group only.
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Server:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _wait_listening(proc: subprocess.Popen[bytes], port: int, what: str, log: Path | None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            detail = log.read_text(errors="replace")[-2000:] if log and log.exists() else ""
            raise RuntimeError(f"{what} exited with status {proc.returncode} at start\n{detail}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    proc.terminate()
    raise RuntimeError(f"{what} did not listen on {HOST}:{port} within {START_TIMEOUT} s")


_NGINX_CONF = """\
{user}worker_processes 1;
worker_rlimit_nofile 8192;
pid {work}/nginx.pid;
error_log {work}/error.log warn;

events {{
    worker_connections 4096;
}}

http {{
    types {{
        text/html html;
        text/plain txt;
    }}
    default_type application/octet-stream;
    access_log {work}/access.log combined buffer=64k flush=1s;
    sendfile on;
    tcp_nopush on;
    # Clients keep their connections for the whole run, as on a real site.
    keepalive_timeout 65;
    keepalive_requests 1000000;
    client_body_temp_path {work}/client_body;
    proxy_temp_path {work}/proxy;
    fastcgi_temp_path {work}/fastcgi;
    uwsgi_temp_path {work}/uwsgi;
    scgi_temp_path {work}/scgi;

    server {{
        listen {host}:{port} backlog=4096;
        root {root};
        location / {{ }}
    }}
}}
"""


def _start_nginx(nginx: str, root: Path) -> Server:
    work = Path(tempfile.mkdtemp(prefix="bench-nginx-"))
    port = _free_port()
    # nginx's master started as root hands its worker to "nobody": name the
    # current user instead (the directive is ignored, with a warning, otherwise).
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    conf = work / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, work=work, host=HOST, port=port, root=root.resolve()))
    error_log = work / "error.log"
    cmd = [nginx, "-p", str(work), "-e", str(error_log), "-c", str(conf), "-g", "daemon off;"]
    with (work / "stderr.log").open("wb") as err:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=err, stderr=err, start_new_session=True)
    server = Server("nginx", f"http://{HOST}:{port}", proc, work, {"conf": str(conf)})
    try:
        _wait_listening(proc, port, "nginx", error_log)
    except BaseException:
        server.stop()
        raise
    version = subprocess.run([nginx, "-v"], capture_output=True, text=True).stderr.strip()
    server.info["version"] = version.removeprefix("nginx version: nginx/")
    return server


def _start_python(kind: str, args: list[str]) -> Server:
    """Start this module as a server subprocess and read the port it printed."""
    cmd = [sys.executable, "-m", "benchmarks.servers", *args]
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=None,  # a crash shows up in the driver's terminal
        start_new_session=True,
        env=env,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().decode().strip()  # "port N", or nothing if it died
    proc.stdout.close()
    if not line.startswith("port "):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{kind} server failed to start: {' '.join(cmd)}")
    port = int(line.split()[1])
    server = Server(kind, f"http://{HOST}:{port}", proc)
    _wait_listening(proc, port, kind, None)
    return server


def start_static(root: str | Path, *, use_nginx: bool = True) -> Server:
    """Serve `root` on 127.0.0.1: nginx when it is installed (and allowed), else aiohttp."""
    nginx = shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )
    if use_nginx and nginx:
        return _start_nginx(nginx, Path(root))
    return _start_python("aiohttp-static", ["static", str(Path(root).resolve())])


def start_latency(delay_ms: float) -> Server:
    """Start the latency server: every response after `delay_ms` milliseconds."""
    server = _start_python("aiohttp-latency", ["latency", "--delay-ms", str(delay_ms)])
    server.info["delay_ms"] = delay_ms
    return server


def latency_stats(base_url: str) -> dict[str, Any]:
    """The latency server's counters (see `LatencyStats.as_dict`)."""
    with urllib.request.urlopen(f"{base_url}/__stats", timeout=10) as r:
        return dict(json.load(r))


def reset_latency_stats(base_url: str) -> None:
    with urllib.request.urlopen(f"{base_url}/__reset", timeout=10) as r:
        r.read()


# --- the aiohttp servers (run in the subprocess) ---------------------------------


@dataclass
class LatencyStats:
    """What the latency server saw since the last reset; times are its monotonic clock."""

    requests: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_start: float | None = None
    last_end: float | None = None

    def as_dict(self) -> dict[str, Any]:
        span = None
        if self.first_start is not None and self.last_end is not None:
            span = self.last_end - self.first_start
        return {
            "requests": self.requests,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "first_start": self.first_start,
            "last_end": self.last_end,
            "span_s": span,
        }


def _listen() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(4096)
    return sock


async def _serve(app: Any) -> None:
    from aiohttp import web

    sock = _listen()
    runner = web.AppRunner(app, access_log=None)  # logging every request costs CPU
    await runner.setup()
    await web.SockSite(runner, sock, backlog=4096).start()
    print(f"port {sock.getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def _static_app(root: Path) -> Any:
    from aiohttp import web

    app = web.Application()
    app.router.add_static("/", root, show_index=False, follow_symlinks=False)
    return app


def _latency_app(delay_s: float) -> Any:
    from aiohttp import web

    stats = LatencyStats()
    body = (
        b'<!DOCTYPE html><html><head><meta charset="utf-8">'
        b"<title>Latency test page</title></head>"
        b"<body><p>A small page with no links.</p></body></html>"
    )

    async def page(request: web.Request) -> web.StreamResponse:
        s = stats  # a reset during this request must not skew the new counters
        now = time.monotonic()
        if s.first_start is None:
            s.first_start = now
        s.requests += 1
        s.in_flight += 1
        s.max_in_flight = max(s.max_in_flight, s.in_flight)
        try:
            await asyncio.sleep(delay_s)
            response = web.Response(body=body, content_type="text/html", charset="utf-8")
            # Send it here, so the time recorded is when the response went out.
            await response.prepare(request)
            await response.write_eof()
            s.last_end = time.monotonic()
            return response
        finally:
            s.in_flight -= 1

    async def get_stats(request: web.Request) -> web.Response:
        return web.json_response(stats.as_dict())

    async def reset(request: web.Request) -> web.Response:
        nonlocal stats
        stats = LatencyStats()
        return web.json_response({"reset": True})

    app = web.Application()
    app.router.add_get("/__stats", get_stats)
    app.router.add_get("/__reset", reset)
    app.router.add_route("*", "/{tail:.*}", page)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Benchmark servers (aiohttp).")
    sub = parser.add_subparsers(dest="command", required=True)
    static = sub.add_parser("static", help="serve a directory")
    static.add_argument("root", type=Path)
    latency = sub.add_parser("latency", help="answer every request after a delay")
    latency.add_argument("--delay-ms", type=float, default=200.0)
    args = parser.parse_args(argv)
    app = _static_app(args.root) if args.command == "static" else _latency_app(args.delay_ms / 1000)
    asyncio.run(_serve(app))


if __name__ == "__main__":
    main()
