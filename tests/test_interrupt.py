"""SIGINT, SIGTERM, a second Ctrl-C and a failing output, on the real CLI.

The CLI runs as a subprocess in its own session (as a shell job would), so a
signal can go to its whole process group, parse workers included, as Ctrl-C
does. The crawl is held mid-way by the test, never by a guess of how long it
takes: the loopback site answers a few pages, then holds the others at a `Gate`
that the test opens (if ever) only after its signal was sent. The helpers here
are shared with test_resume.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.conftest import ROOT, Result, html, write_config

#: seconds that requests in flight get after a signal, in these tests
GRACE = "0.5"


class Gate:
    """Lets the first `free` requests through, and holds the rest until `open()`.

    With a gate closed, a crawl cannot end however fast or slow the machine:
    the test sends its signal while it is surely mid-way.
    """

    def __init__(self, free: int) -> None:
        self.free = free
        self._open = asyncio.Event()

    async def wait(self) -> None:
        if self.free > 0:
            self.free -= 1
            return
        await self._open.wait()

    def open(self) -> None:
        self._open.set()


def site(
    delay: float = 0.1, hang: Callable[[str], bool] = lambda path: False, gate: Gate | None = None
) -> Any:
    """`/p/N`: a page after `delay` s; `/t/NODE`: a link tree (3 children a node).

    A path for which `hang(path)` is true never answers (until its client goes):
    it is in flight whenever a signal comes. With a `gate`, every other request
    waits at the gate first.
    """

    async def handler(request: web.Request) -> web.Response:
        path = request.path
        if hang(path):
            await asyncio.Event().wait()  # set by no one: cancelled when the client goes
        if gate is not None:
            await gate.wait()
        await asyncio.sleep(delay)
        if path.startswith("/t/"):
            node = path[3:]
            # children, plus a link back up and one to the first tree (followed once only)
            links = [f"/t/{node}{k}" for k in range(3)] + ["/t/a", f"/t/{node[:-1] or node}"]
            return web.Response(text=html(f"node {node}", links), content_type="text/html")
        if path.startswith("/p/"):
            return web.Response(text=html(f"page {path}", ["/p/elsewhere"]), content_type="text/html")
        return web.Response(status=404, text="not found")

    return handler


def crawl_files(tmp_path: Path, urls: list[str], workers: int = 1) -> tuple[Path, Path, Path]:
    """(urls file, config file, output dir): robots off, small limits."""
    urls_file = tmp_path / "urls.txt"
    urls_file.write_text("".join(u + "\n" for u in urls), encoding="utf-8")
    cfg = write_config(
        tmp_path / "config.toml",
        f"[fetch]\nobey_robots = false\nconcurrency = 4\nper_host = 4\n[parse]\nworkers = {workers}\n",
    )
    return urls_file, cfg, tmp_path / "out"


def cli_args(urls_file: Path, cfg: Path, out: Path, *more: str) -> list[str]:
    return [str(urls_file), "--config", str(cfg), "--output", str(out), *more]


async def start_cli(
    *args: str, grace: str = GRACE, preexec_fn: Callable[[], None] | None = None, stdin: int | None = None
) -> asyncio.subprocess.Process:
    """Start `python -m scraper ARGS` in a session of its own (its pid is its process group)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "SCRAPER_GRACE_S": grace}
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", *args,
        stdin=asyncio.subprocess.DEVNULL if stdin is None else stdin,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
        start_new_session=True,
        preexec_fn=preexec_fn,
    )


async def finish(proc: asyncio.subprocess.Process, timeout: float = 30) -> Result:
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    return Result(proc.returncode if proc.returncode is not None else -1, out.decode(), err.decode())


async def run(*args: str) -> Result:
    return await finish(await start_cli(*args))


async def wait_lines(path: Path, n: int, timeout: float = 60) -> None:
    """Wait until `path` holds at least `n` lines (the sink writes in batches)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{path} did not reach {n} lines in {timeout} s")


async def said(proc: asyncio.subprocess.Process, text: str, timeout: float = 60) -> str:
    """Read `proc`'s stderr until a line holds `text`; returns what was read (`finish` gets the rest)."""
    assert proc.stderr is not None
    read = ""
    async with asyncio.timeout(timeout):
        while text not in read:
            line = await proc.stderr.readline()
            assert line, f"stderr ended before {text!r}: {read!r}"
            read += line.decode()
    return read


def lines_of(path: Path) -> list[dict[str, Any]]:
    """Every line of a JSONL file as a record; fails on a torn or broken line."""
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"torn last line: {data[-200:]!r}"
    return [json.loads(line) for line in data.decode("utf-8").splitlines()]


def assert_exactly_once(urls: list[str], expected: set[str]) -> None:
    assert len(urls) == len(set(urls)), f"recorded twice: {sorted(u for u in set(urls) if urls.count(u) > 1)}"
    assert set(urls) == expected, f"missing {sorted(expected - set(urls))}, extra {sorted(set(urls) - expected)}"


# --- process tree -----------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, ppid, start time) of a live process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[1]), fields[19]


def descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every process below `pid` (parse workers, forkserver, resource tracker)."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (st := _stat(int(entry.name))) is not None:
            children.setdefault(st[1], []).append((int(entry.name), st[2]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child[0])
    return found


async def assert_all_gone(procs: set[tuple[int, str]], timeout: float = 15) -> None:
    """Each of `procs` exits (a zombie counts as gone: no one may be left to reap it)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [(pid, st) for pid, start in procs if (st := _stat(pid)) and st[2] == start and st[0] != "Z"]
        if not left:
            return
        assert time.monotonic() < deadline, f"orphans left behind: {left}"
        await asyncio.sleep(0.05)


# --- tests ------------------------------------------------------------------------------------


async def test_sigint_to_the_group_stops_cleanly_then_resume_finishes(serve, tmp_path):
    # /p/7 is in flight at the signal and outlasts the grace: it is cancelled, not recorded, fetched on resume
    hanging = {"/p/7"}
    gate = Gate(free=12)
    server = await serve(site(0.01, hang=hanging.__contains__, gate=gate))
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls, workers=2)
    pages = out / "pages.jsonl"

    proc = await start_cli(*cli_args(urls_file, cfg, out))
    await wait_lines(pages, 8)
    workers = descendants(proc.pid)
    assert workers, "the parse pool should be running"
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C reaches the whole process group
    result = await finish(proc)
    took = time.monotonic() - signalled

    assert result.code == 130, result.stderr
    assert "Traceback" not in result.stderr
    assert "SIGINT" in result.stderr and "interrupted" in result.stderr
    assert took < 20  # /p/7 never answers: the grace ended the run, not the page
    await assert_all_gone(workers)
    first = lines_of(pages)
    assert 8 <= len(first) < len(urls)
    assert server.url("/p/7") not in {r["url"] for r in first}
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] is True
    assert stats["pages"] == len(first)

    hits_before = dict(server.hits)
    hanging.clear()
    gate.open()
    result = await run(*cli_args(urls_file, cfg, out, "--resume"))
    assert result.code == 0, result.stderr
    records = lines_of(pages)
    assert records[: len(first)] == first  # appended to, never rewritten
    assert_exactly_once([r["url"] for r in records], set(urls))
    # what was recorded is not fetched again
    done = {r["url"].removeprefix(server.base) for r in first}
    assert all(server.hits[p] == hits_before[p] for p in done)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] is False
    assert stats["pages"] == len(records) == len(urls)
    assert stats["run_pages"] == len(urls) - len(first)


async def test_sigterm_exits_143_with_stats(serve, tmp_path):
    server = await serve(site(0.01, gate=Gate(free=10)))  # closed for good: the crawl cannot end by itself
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)

    proc = await start_cli(*cli_args(urls_file, cfg, out))
    await wait_lines(out / "pages.jsonl", 8)
    proc.send_signal(signal.SIGTERM)
    result = await finish(proc)

    assert result.code == 143, result.stderr
    assert "Traceback" not in result.stderr
    records = lines_of(out / "pages.jsonl")
    stats = json.loads((out / "stats.json").read_text())
    assert stats["interrupted"] is True
    assert stats["pages"] == len(records) < len(urls)


async def test_sigterm_to_the_group(serve, tmp_path):
    # `kill -TERM -PGID` also reaches the pool and its forkserver
    server = await serve(site(0.01, gate=Gate(free=10)))
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls, workers=2)

    proc = await start_cli(*cli_args(urls_file, cfg, out))
    await wait_lines(out / "pages.jsonl", 8)
    workers = descendants(proc.pid)
    assert workers, "the parse pool should be running"
    os.killpg(proc.pid, signal.SIGTERM)
    result = await finish(proc)

    assert result.code == 143, result.stderr
    assert "Traceback" not in result.stderr
    await assert_all_gone(workers)
    assert json.loads((out / "stats.json").read_text())["interrupted"] is True
    lines_of(out / "pages.jsonl")


async def test_second_sigint_exits_at_once_leaving_whole_lines(serve, tmp_path):
    # every other page hangs: the first Ctrl-C would wait out the grace for them
    server = await serve(site(0.05, hang=lambda path: path.endswith(("1", "3", "5"))))
    urls = [server.url(f"/p/{i}") for i in range(200)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)
    cfg.write_text(cfg.read_text().replace("concurrency = 4\nper_host = 4", "concurrency = 64\nper_host = 64"))

    proc = await start_cli(*cli_args(urls_file, cfg, out), grace="30")  # the second Ctrl-C must not wait it out
    await wait_lines(out / "pages.jsonl", 8)
    workers = descendants(proc.pid)
    os.killpg(proc.pid, signal.SIGINT)
    # the first was handled (two pending SIGINTs would be delivered as one)
    first = await said(proc, "SIGINT: finishing requests in flight")
    signalled = time.monotonic()
    os.killpg(proc.pid, signal.SIGINT)
    result = await finish(proc)

    assert result.code == 130, result.stderr
    assert time.monotonic() - signalled < 10  # not the 30 s grace: the hanging pages never answer
    assert "Traceback" not in first + result.stderr
    await assert_all_gone(workers)
    records = lines_of(out / "pages.jsonl")
    assert len({r["url"] for r in records}) == len(records)


async def test_sigint_with_stdin_left_open(serve, tmp_path):
    # `tail -f urls.txt | python -m scraper -`: the seeds never end, Ctrl-C must still stop the run
    server = await serve(site(0.05))
    _, cfg, out = crawl_files(tmp_path, [])
    proc = await start_cli("-", "--config", str(cfg), "--output", str(out), stdin=asyncio.subprocess.PIPE)
    assert proc.stdin is not None
    proc.stdin.write("".join(server.url(f"/p/{i}") + "\n" for i in range(20)).encode())
    await proc.stdin.drain()
    await wait_lines(out / "pages.jsonl", 20)
    os.killpg(proc.pid, signal.SIGINT)
    try:  # the open stdin must not keep it running: no more than the grace, but a loaded machine is slow
        await asyncio.wait_for(asyncio.shield(proc.wait()), 30)
    except TimeoutError:
        os.killpg(proc.pid, signal.SIGKILL)
    result = await finish(proc)
    assert result.code == 130, result.stderr
    assert "Traceback" not in result.stderr and "Fatal Python error" not in result.stderr
    assert len(lines_of(out / "pages.jsonl")) == 20


async def test_output_under_a_regular_file_is_exit_1(serve, tmp_path):
    server = await serve(site(0))
    urls_file, cfg, _ = crawl_files(tmp_path, [server.url("/p/1")])
    (tmp_path / "file").write_text("not a folder")

    result = await run(*cli_args(urls_file, cfg, tmp_path / "file" / "out"))

    assert result.code == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scraper: error:") and "file/out" in lines[0], lines
    assert server.hits == {}


def _limit_file_size(size: int) -> Callable[[], None]:
    """For the child: files may not grow past `size` bytes (a full disk, even for root)."""

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))

    return limit


async def test_output_full_mid_run_is_exit_1_with_whole_lines(serve, tmp_path):
    server = await serve(site(0.01))
    urls = [server.url(f"/p/{i}") for i in range(300)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)

    proc = await start_cli(*cli_args(urls_file, cfg, out), preexec_fn=_limit_file_size(50_000))
    result = await finish(proc)

    assert result.code == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if not line.startswith("progress:")]
    assert len(lines) == 1 and lines[0].startswith("scraper: error: cannot write"), lines
    assert "pages.jsonl" in lines[0]
    first = lines_of(out / "pages.jsonl")  # whole lines only, though the limit cut a write short
    assert 0 < len(first) < len(urls)
    assert (out / "pages.jsonl").stat().st_size <= 50_000

    # the disk has room again: --resume finishes the crawl
    result = await run(*cli_args(urls_file, cfg, out, "--resume"))
    assert result.code == 0, result.stderr
    assert_exactly_once([r["url"] for r in lines_of(out / "pages.jsonl")], set(urls))
