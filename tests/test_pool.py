"""The parse processes: `extract` by value, no main guard needed, nothing left alive after a run.

Scripts run as real subprocesses against a loopback server; the process tree is
read from /proc (see test_interrupt's helpers).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import threading
import time

import pytest
from aiohttp import web

import scraper
from scraper import ConfigError, Scraper
from tests.conftest import ROOT, config, html, page_handler
from tests.test_interrupt import _stat, cli_args, crawl_files, descendants


def alive(procs: set[tuple[int, str]]) -> list[int]:
    """The pids of `procs` still running now (a zombie is not running: its parent only has to reap it)."""
    return [pid for pid, start in procs if (st := _stat(pid)) and st[2] == start and st[0] != "Z"]


async def wait_for_tree(
    pid: int, n: int, besides: set[tuple[int, str]] = frozenset(), timeout: float = 90  # type: ignore[assignment]
) -> set[tuple[int, str]]:
    """The processes below `pid`, not in `besides`, once there are at least `n` (the pool is up).

    `timeout` only bounds a failure: a loaded machine may take long to start the pool.
    """
    deadline = time.monotonic() + timeout
    while len(tree := descendants(pid) - besides) < n:
        assert time.monotonic() < deadline, f"only {len(tree)} new processes below {pid}"
        await asyncio.sleep(0.02)
    return tree


def site_with_gate(gate: asyncio.Event) -> web.RequestHandler:
    """Pages /p/N link to nothing; /hold answers once `gate` is set."""

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hold":
            await gate.wait()
        return web.Response(text=html(f"page {request.path}", body=f"<h1>{request.path}</h1>"),
                            content_type="text/html")

    return handler


# --- no main guard ---------------------------------------------------------------------------------

GUARDLESS = """\
import json, os, sys
from scraper import scrape

# no `if __name__ == "__main__":` guard: a parse process that ran this again would crawl again
with open(os.environ["RUNS_FILE"], "a") as f:
    f.write(f"{os.getpid()}\\n")
TAG = "tag-from-a-global"
pages = scrape([os.environ["SEED"]], depth=1,
               extract=lambda soup, page: {"h1": soup.h1.get_text(), "tag": TAG, "pid": os.getpid()})
print(json.dumps([{"url": p.url, "fields": p.fields, "error": p.error and p.error.kind} for p in pages]))
"""


@pytest.mark.parametrize("how", ["script", "module"])
async def test_a_script_without_main_guard_crawls_once(serve, tmp_path, how):
    site = await serve({"/": page_handler(html("root", ["/a", "/b"], body="<h1>root</h1>")),
                        "/a": page_handler(html("a", body="<h1>A</h1>")),
                        "/b": page_handler(html("b", body="<h1>B</h1>"))})
    (tmp_path / "job.py").write_text(GUARDLESS, encoding="utf-8")
    runs = tmp_path / "runs.txt"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "RUNS_FILE": str(runs), "SEED": site.url("/")}
    args = ["job.py"] if how == "script" else ["-m", "job"]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)

    assert proc.returncode == 0, err.decode()
    assert err.decode() == ""
    assert runs.read_text().split() == [str(proc.pid)]  # the script ran once, in its own process
    pages = json.loads(out)
    assert sorted(p["url"] for p in pages) == [site.url("/"), site.url("/a"), site.url("/b")]
    assert all(p["error"] is None for p in pages), pages
    assert sorted(p["fields"]["h1"] for p in pages) == ["A", "B", "root"]
    assert {p["fields"]["tag"] for p in pages} == {"tag-from-a-global"}
    assert proc.pid not in {p["fields"]["pid"] for p in pages}  # it ran in the parse processes
    assert site.hits == {"/robots.txt": 1, "/": 1, "/a": 1, "/b": 1}


# --- extract by value --------------------------------------------------------------------------------


def _closure(suffix: str):
    def extract(soup, page):
        return {"closure": soup.h1.get_text() + suffix}

    return extract


class _Counter:
    """A callable object: sent with its state."""

    def __init__(self, start: int) -> None:
        self.start = start

    def __call__(self, soup, page):
        return {"object": self.start + len(page.links)}


@pytest.mark.parametrize(
    ("extract", "expected"),
    [
        (_closure("?"), {"closure": "/x?"}),
        (lambda soup, page: {"lambda": page.title}, {"lambda": "page /x"}),
        (_Counter(40), {"object": 40}),
    ],
    ids=["closure", "lambda", "callable-object"],
)
async def test_any_callable_is_sent_by_value(serve, tmp_path, extract, expected):
    gate = asyncio.Event()
    gate.set()
    site = await serve(site_with_gate(gate))
    async with Scraper(config(tmp_path), extract=extract) as s:
        [page] = [p async for p in s.crawl([site.url("/x")])]
    assert page.error is None
    assert page.fields == expected


def test_an_extract_that_cannot_be_sent_is_a_config_error():
    lock = threading.Lock()

    def locked_extract(soup, page):
        with lock:
            return {}

    with pytest.raises(ConfigError, match=r"extract=.*locked_extract .*test_pool\.py:\d+.* cannot be sent.*lock"):
        Scraper(config(), extract=locked_extract)
    with pytest.raises(ConfigError, match="locked_extract"):
        scraper.scrape(["http://127.0.0.1:9/"], extract=locked_extract)  # before any request
    with pytest.raises(TypeError, match="extract must be a function"):
        Scraper(config(), extract=42)  # type: ignore[arg-type]


async def test_an_extract_the_workers_cannot_load_is_a_config_error(serve, tmp_path, monkeypatch):
    # a function of a module the parse processes cannot import: sent by reference, it fails there
    (tmp_path / "vanishing.py").write_text("def extract(soup, page):\n    return {}\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    import vanishing  # type: ignore[import-not-found]

    (tmp_path / "vanishing.py").unlink()
    site = await serve(page_handler(html("t")))
    with pytest.raises(ConfigError, match=r"extract=extract .*cannot be loaded in the parse processes.*vanishing"):
        async with Scraper(config(tmp_path / "o"), extract=vanishing.extract) as s:
            [p async for p in s.crawl([site.url("/")])]


# --- nothing left alive ------------------------------------------------------------------------------


async def test_no_process_outlives_a_cli_run(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(site_with_gate(gate))
    urls_file, cfg, out = crawl_files(tmp_path, [site.url(f"/p/{i}") for i in range(20)] + [site.url("/hold")],
                                      workers=2)
    # stdout and stderr go to files: waiting for a pipe's end would also wait for whoever inherited it
    with open(tmp_path / "stdout", "wb") as stdout, open(tmp_path / "stderr", "wb") as stderr:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "scraper", *cli_args(urls_file, cfg, out),
            env={**os.environ, "PYTHONPATH": str(ROOT)}, stdin=asyncio.subprocess.DEVNULL, stdout=stdout, stderr=stderr,
        )
        # the run holds at /hold: two workers, their fork server and the resource tracker are up
        tree = await wait_for_tree(proc.pid, 4)
        gate.set()
        code = await asyncio.wait_for(proc.wait(), 60)

    assert alive(tree) == []  # right away: not a moment later
    assert code == 0, (tmp_path / "stderr").read_text()
    assert len(out.joinpath("pages.jsonl").read_text().splitlines()) == 21


async def test_no_process_outlives_a_closed_scraper(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(site_with_gate(gate))
    before = descendants(os.getpid())
    async with Scraper(config(tmp_path, parse={"workers": 2})) as s:
        async for page in s.crawl([site.url("/a"), site.url("/hold")]):
            assert page.error is None
            if page.url.endswith("/a"):  # parsed: the pool is up
                new = await wait_for_tree(os.getpid(), 4, besides=before)
                gate.set()
    assert alive(new) == []

    # a second Scraper in the same process starts and stops its own again
    async with Scraper(config(tmp_path, parse={"workers": 1})) as s:
        assert [p.title async for p in s.crawl([site.url("/b")])] == ["page /b"]
    assert alive(descendants(os.getpid()) - before) == []
