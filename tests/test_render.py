"""[render]: pages built by scripts, rendered by a real headless Chromium under the crawl's rules.

The pages here build their title, fields and links with scripts that fetch JSON
from the same loopback server, so what a record holds tells whether it was rendered.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from conftest import ROOT, config, read_jsonl, run_cli, write_config

from scraper import ConfigError, Scraper, load_config
from scraper.config import RenderConfig
from scraper.render import is_shell

# a shell: nothing visible until app.js has fetched /data.json and built the page
SHELL = """<!doctype html><html><head><title>loading</title><script src="/app.js"></script>
<link rel="stylesheet" href="/style.css"></head>
<body><div id="app"></div><img src="/pic.png"><noscript>This page needs JavaScript.</noscript></body></html>"""
APP_JS = """
fetch('/data.json').then(r => r.json()).then(d => {
  document.title = d.title;
  document.head.insertAdjacentHTML('beforeend', '<meta name="description" content="' + d.description + '">');
  const app = document.getElementById('app');
  app.innerHTML = '<h1>' + d.title + '</h1><span class="price">' + d.price + '</span>' +
    d.links.map(l => '<a href="' + l + '">' + l + '</a>').join('');
});
fetch('/secret.json').catch(() => {});
"""
DATA = {"title": "Built by a script", "description": "from JSON", "price": "12.50", "links": ["/from-script"]}
# a plain page: plenty of text, and a script that adds one link (seen only when rendered)
PLAIN = ("<!doctype html><html><head><title>Plain</title></head><body><p>" + "Words of a plain page. " * 20 +
         "</p><a href=\"/static-link\">static</a>"
         "<script>document.body.insertAdjacentHTML('beforeend', '<a href=\"/script-link\">s</a>')</script>"
         "</body></html>")


def text(body: str, content_type: str = "text/html") -> Any:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=body, content_type=content_type)

    return handler


def _site(extra: dict[str, Any] | None = None) -> dict[str, Any]:

    routes: dict[str, Any] = {
        "/shell": text(SHELL, "text/html"),
        "/app.js": text(APP_JS, "application/javascript"),
        "/data.json": text(json.dumps(DATA), "application/json"),
        "/secret.json": text("{}", "application/json"),
        "/style.css": text("body { color: black }", "text/css"),
        "/pic.png": text("not really a png", "image/png"),
        "/plain": text(PLAIN, "text/html"),
        "/matched": text(PLAIN.replace("Plain", "Matched"), "text/html"),
        "/from-script": text("<title>Reached</title><p>found by a script's link</p>", "text/html"),
        "/static-link": text("<title>Static</title>", "text/html"),
        "/script-link": text("<title>Script link</title>", "text/html"),
        "/robots.txt": text("User-agent: *\nDisallow: /secret.json\n", "text/plain"),
    }
    routes.update(extra or {})
    return routes


def _render_config(tmp_path: Path, render: dict[str, Any], **sections: Any) -> Any:
    c = config(tmp_path, **sections)
    return replace(c, render=RenderConfig(**{"wait": "networkidle", **render}))


async def _crawl(c: Any, urls: list[str]) -> dict[str, Any]:
    async with Scraper(c) as s:
        return {p.url: p async for p in s.crawl(urls)}


def _chromium_processes(marker: str) -> list[int]:
    """Processes whose command line names `marker` (the browsers' profile folder is under it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        if marker in cmdline and "chrom" in cmdline:
            found.append(int(entry))
    return found


@pytest.fixture
def browser_tmp(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The browsers' profile folders go under a folder of the test's own, so the test can find their processes.

    A short path under /tmp: Chromium puts a Unix socket there, whose path may not exceed 107 bytes.
    """
    tmpdir = Path(tempfile.mkdtemp(prefix="scraper-render-", dir="/tmp"))
    monkeypatch.setenv("TMPDIR", str(tmpdir))
    yield tmpdir
    for _ in range(100):  # a browser being closed may still be removing its profile
        if not _chromium_processes(str(tmpdir)):
            break
        time.sleep(0.1)
    shutil.rmtree(tmpdir, ignore_errors=True)


def test_shell_detection() -> None:
    assert is_shell(SHELL.encode(), "text/html")
    assert not is_shell(PLAIN.encode(), "text/html")  # a script, but plenty of text
    assert not is_shell(b"<html><body><p>short</p></body></html>", "text/html")  # no script: nothing to run
    assert is_shell(b"<html><body><script>x()</script>" + b"<script>" + b"y" * 5000 + b"</script></body>", None)


async def test_never_starts_no_browser(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    server = await serve(_site())
    c = _render_config(tmp_path, {"mode": "never"})
    pages = await _crawl(c, [server.url("/shell")])
    page = pages[server.url("/shell")]
    assert page.title == "loading" and page.links == [] and "rendered" not in page.to_dict()
    assert server.requests("/app.js") == 0 and server.requests("/data.json") == 0
    assert _chromium_processes(str(browser_tmp)) == []


async def test_auto_renders_shells_only_under_the_crawls_rules(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    server = await serve(_site())
    c = _render_config(
        tmp_path,
        {"mode": "auto", "match": ["/matched$"]},
        fetch={"obey_robots": True},
        crawl={"depth": 1},
        parse={"text": True},
    )
    from scraper.config import FieldSpec

    c = replace(c, parse=replace(c.parse, fields={"price": FieldSpec(selector=".price")}))
    pages = await _crawl(c, [server.url(p) for p in ("/shell", "/plain", "/matched")])

    shell = pages[server.url("/shell")]
    assert shell.rendered is True and shell.error is None and shell.ok, shell.error
    assert shell.title == "Built by a script" and shell.description == "from JSON"
    assert shell.fields == {"price": "12.50"}
    assert server.url("/from-script") in shell.links
    assert "12.50" in (shell.text or "")
    assert shell.status == 200 and shell.final_url == server.url("/shell") and shell.content_type == "text/html"
    assert shell.to_dict()["rendered"] is True
    # the link the script added was followed
    assert pages[server.url("/from-script")].title == "Reached"
    assert pages[server.url("/from-script")].rendered is False  # no script: not a shell

    plain = pages[server.url("/plain")]
    assert plain.rendered is False and plain.title == "Plain"
    assert server.url("/script-link") not in plain.links  # not rendered: the script never ran
    matched = pages[server.url("/matched")]
    assert matched.rendered is True and server.url("/script-link") in matched.links

    # the document itself was fetched once, by the crawl; the browser's requests went through its rules
    assert server.requests("/shell") == 1
    assert server.requests("/data.json") == 1
    assert server.requests("/secret.json") == 0  # disallowed by robots.txt: never reached the server
    assert server.requests("/pic.png") == 0  # a blocked type (image): never requested
    assert server.requests("/style.css") == 1


async def test_sub_requests_keep_to_the_private_address_rule(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    """A page from a public host may not have the browser reach a private address: its requests are refused."""
    from scraper.fetch import Fetcher
    from scraper.limits import Limiter
    from scraper.render import Rendered, Renderer, find_browser

    server = await serve(_site())
    c = _render_config(tmp_path, {"mode": "always"})
    limiter = Limiter(c.fetch.concurrency, c.fetch.per_host, c.fetch.delay)
    async with Fetcher(c, limiter) as fetcher:
        renderer = Renderer(c, fetcher, limiter, None, await find_browser(c.render))
        try:
            fetched = await fetcher.fetch(server.url("/shell"), allow_private=True)
            # as if the page had come from a public host: its scripts may not reach 127.0.0.1
            refused = await renderer.visit(fetched, allow_private=False)
            allowed = await renderer.visit(fetched, allow_private=True)
        finally:
            await renderer.close()
    assert isinstance(refused, Rendered) and refused.error is None  # the page still rendered
    assert b"Built by a script" not in (refused.body or b"")
    assert isinstance(allowed, Rendered) and b"Built by a script" in (allowed.body or b"")
    assert server.requests("/app.js") == 1 and server.requests("/data.json") == 1  # the allowed render's only


async def test_always_renders_every_html_page_and_blocks_types(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    server = await serve(_site({"/doc.pdf": _pdf}))
    c = _render_config(tmp_path, {"mode": "always", "block": ["image", "stylesheet"]})
    pages = await _crawl(c, [server.url(p) for p in ("/shell", "/plain", "/doc.pdf")])
    assert pages[server.url("/plain")].rendered is True
    assert server.url("/script-link") in pages[server.url("/plain")].links
    assert pages[server.url("/shell")].title == "Built by a script"
    pdf = pages[server.url("/doc.pdf")]
    assert pdf.rendered is False and pdf.ok and pdf.content_type == "application/pdf"
    assert server.requests("/style.css") == 0 and server.requests("/pic.png") == 0
    assert server.requests("/secret.json") == 1  # robots.txt not obeyed in this crawl


async def _pdf(request: web.Request) -> web.Response:
    return web.Response(body=b"%PDF-1.4 not much", content_type="application/pdf")


async def test_a_recrawls_304_keeps_the_earlier_render(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    async def shell(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304, headers={"ETag": '"v1"'})
        return web.Response(text=SHELL, content_type="text/html", headers={"ETag": '"v1"'})

    server = await serve(_site({"/shell": shell}))
    first = _render_config(tmp_path, {"mode": "auto"}, output={"dir": str(tmp_path / "first")})
    async with Scraper(first) as s:
        await s.run([server.url("/shell")])
    again = replace(first, output=replace(first.output, dir=str(tmp_path / "again")),
                    crawl=replace(first.crawl, since=str(tmp_path / "first")))
    async with Scraper(again) as s:
        await s.run([server.url("/shell")])
    before, after = (read_jsonl(tmp_path / d / "pages.jsonl")[0] for d in ("first", "again"))
    assert before["rendered"] is True and before["title"] == "Built by a script"
    assert after["status"] == 304 and after["changed"] is False
    assert after["rendered"] is True and after["title"] == "Built by a script"  # carried over with its keys


async def test_browser_traffic_keeps_to_per_host(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    release = asyncio.Event()
    waiting = 0

    async def slow(request: web.Request) -> web.Response:
        nonlocal waiting
        waiting += 1
        if waiting >= 2:
            release.set()  # the cap is reached: let them all go
        await release.wait()
        await asyncio.sleep(0.02)
        return web.Response(text='{"n": 1}', content_type="application/json")

    many = ("<title>many</title><script>Promise.all([...Array(12).keys()].map(i => fetch('/api/' + i)))"
            ".then(() => document.title = 'all done')</script>")
    server = await serve(_site({"/many": text(many), "/api/{n}": slow}))
    c = _render_config(tmp_path, {"mode": "always"}, fetch={"per_host": 2, "concurrency": 8})
    pages = await _crawl(c, [server.url("/many")])
    assert pages[server.url("/many")].title == "all done"
    assert sum(server.requests(f"/api/{i}") for i in range(12)) == 12
    assert server.max_in_flight == 2


async def test_hanging_script_is_a_render_error_after_retries(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    # each try loads /count.js, then spins forever: the tab never reaches `load`, nor closes
    hang = '<title>static title</title><body><script src="/count.js"></script><script>while (true) {}</script></body>'
    server = await serve(_site({"/hang": text(hang), "/count.js": text("var tried = 1;", "application/javascript")}))
    c = _render_config(tmp_path, {"mode": "always", "timeout": 3.0, "wait": "load"}, retry={"attempts": 2})
    pages = await _crawl(c, [server.url("/hang")])
    page = pages[server.url("/hang")]
    assert page.error is not None and page.error.kind == "render", page
    assert page.error.message == "render timed out after 3 s"
    assert page.rendered is False and page.to_dict()["rendered"] is False
    assert page.status == 200 and page.title == "static title"  # the record holds the page as fetched
    assert server.requests("/hang") == 1  # fetched once
    assert server.requests("/count.js") == 2  # rendered twice: the timeout was retried


async def test_a_crashed_browser_is_started_again_and_its_page_retried(
    serve: Any, tmp_path: Path, browser_tmp: Path
) -> None:
    reached = asyncio.Event()
    never = asyncio.Event()
    tries = 0

    async def script(request: web.Request) -> web.Response:
        nonlocal tries
        tries += 1
        if tries == 1:
            reached.set()  # the browser is rendering the page: now it dies
            await never.wait()
        return web.Response(text="document.title = 'after the crash'", content_type="application/javascript")

    server = await serve(_site({"/crash": text('<title>before</title><script src="/crash.js"></script>'),
                                "/crash.js": script}))
    c = _render_config(tmp_path, {"mode": "always", "wait": "load"}, retry={"attempts": 2})
    crawl = asyncio.create_task(_crawl(c, [server.url("/crash")]))
    await asyncio.wait_for(reached.wait(), 60)
    browsers = [pid for pid in _chromium_processes(str(browser_tmp)) if b"--type=" not in _cmdline(pid)]
    assert len(browsers) == 1
    os.kill(browsers[0], signal.SIGKILL)
    pages = await asyncio.wait_for(crawl, 60)
    never.set()
    page = pages[server.url("/crash")]
    assert page.rendered is True and page.error is None and page.title == "after the crash"
    assert tries == 2


async def test_browsers_are_recycled(serve: Any, tmp_path: Path, browser_tmp: Path,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from scraper import render

    launches = 0
    launch = render.Renderer._launch

    async def counted(self: Any) -> Any:
        nonlocal launches
        launches += 1
        return await launch(self)

    monkeypatch.setattr(render, "RECYCLE_AFTER", 2)
    monkeypatch.setattr(render.Renderer, "_launch", counted)
    server = await serve(_site())
    c = _render_config(tmp_path, {"mode": "always", "pages": 1})
    pages = await _crawl(c, [server.url(p) for p in ("/shell", "/plain", "/matched", "/from-script", "/static-link")])
    assert all(p.rendered for p in pages.values()) and len(pages) == 5
    assert launches == 3  # 2 + 2 + 1 pages
    assert len([p for p in _chromium_processes(str(browser_tmp)) if b"--type=" not in _cmdline(p)]) == 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read()
    except OSError:
        return b""


async def test_cli_leaves_no_browser_behind(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    never = asyncio.Event()

    async def unanswered(request: web.Request) -> web.Response:
        await never.wait()
        return web.Response(text="{}", content_type="application/json")

    # read at `load`, while its fetch of /never.json is still under way: that request is abandoned cleanly
    pending = "<title>pending</title><script>fetch('/never.json')</script>"
    server = await serve(_site({"/pending": text(pending), "/never.json": unanswered}))
    (tmp_path / "urls.txt").write_text("".join(server.url(p) + "\n" for p in ("/pending", "/plain")))
    cfg = write_config(tmp_path / "c.toml", '[fetch]\nobey_robots = false\n[render]\nmode = "always"\n')
    r = await run_cli(str(tmp_path / "urls.txt"), "--config", str(cfg), "--output", str(tmp_path / "out"))
    never.set()
    assert r.code == 0, r.stderr
    records = {rec["url"]: rec for rec in read_jsonl(tmp_path / "out" / "pages.jsonl")}
    assert records[server.url("/pending")]["rendered"] is True and records[server.url("/pending")]["error"] is None
    assert server.url("/script-link") in records[server.url("/plain")]["links"]
    assert "Task was destroyed" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert server.requests("/never.json") == 1
    assert _chromium_processes(str(browser_tmp)) == []


async def test_no_browser_outlives_a_killed_run(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    reached = asyncio.Event()
    never = asyncio.Event()

    async def stalled(request: web.Request) -> web.Response:
        reached.set()  # asked by the browser: it is up and rendering
        await never.wait()
        return web.Response(text="", content_type="application/javascript")

    server = await serve(_site({"/stall": text('<script src="/stall.js"></script>'),
                                "/stall.js": stalled}))
    (tmp_path / "urls.txt").write_text(server.url("/stall") + "\n")
    cfg = write_config(tmp_path / "c.toml", '[fetch]\nobey_robots = false\n[render]\nmode = "always"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", str(tmp_path / "urls.txt"), "--config", str(cfg),
        "--output", str(tmp_path / "out"), "-q",
        env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await asyncio.wait_for(reached.wait(), 60)
        assert _chromium_processes(str(browser_tmp))  # the browser is running
    finally:
        proc.send_signal(signal.SIGKILL)
        await proc.wait()
        never.set()
    for _ in range(200):  # the driver notices its pipe closed and takes the browser down
        if not _chromium_processes(str(browser_tmp)):
            break
        await asyncio.sleep(0.1)
    assert _chromium_processes(str(browser_tmp)) == []


async def test_a_render_under_way_gets_the_interrupts_grace(serve: Any, tmp_path: Path, browser_tmp: Path) -> None:
    reached = asyncio.Event()
    interrupted = asyncio.Event()

    async def first(request: web.Request) -> web.Response:
        reached.set()
        await interrupted.wait()  # answered only once the run is stopping
        script = "fetch('/after.json').then(r => r.json()).then(d => { document.title = d.title; })"
        return web.Response(text=script, content_type="application/javascript")

    page = '<title>before</title><script src="/first.js"></script>'
    server = await serve(_site({"/slow": text(page), "/first.js": first,
                                "/after.json": text('{"title": "finished in the grace"}', "application/json")}))
    (tmp_path / "urls.txt").write_text(server.url("/slow") + "\n")
    cfg = write_config(tmp_path / "c.toml", '[fetch]\nobey_robots = false\n[render]\nmode = "always"\n'
                                            'wait = "networkidle"\n')
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", str(tmp_path / "urls.txt"), "--config", str(cfg),
        "--output", str(tmp_path / "out"),
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCRAPER_GRACE_S": "60"},
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    try:
        await asyncio.wait_for(reached.wait(), 60)
        proc.send_signal(signal.SIGINT)
        while b"finishing requests in flight" not in await asyncio.wait_for(proc.stderr.readline(), 60):
            pass
        interrupted.set()  # the run is stopping: the page's next request comes after the interrupt
        await asyncio.wait_for(proc.stderr.read(), 60)
        code = await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert code == 130
    records = read_jsonl(tmp_path / "out" / "pages.jsonl")
    assert len(records) == 1 and records[0]["rendered"] is True
    assert records[0]["title"] == "finished in the grace"
    assert server.requests("/after.json") == 1
    assert _chromium_processes(str(browser_tmp)) == []


async def test_missing_playwright_is_exit_2_naming_the_extra(serve: Any, tmp_path: Path) -> None:
    server = await serve(_site())
    (tmp_path / "urls.txt").write_text(server.url("/shell") + "\n")
    cfg = write_config(tmp_path / "c.toml", '[render]\nmode = "auto"\n')
    code = ("import sys; sys.modules['playwright'] = None; from scraper.cli import main; "
            f"sys.exit(main([{str(tmp_path / 'urls.txt')!r}, '--config', {str(cfg)!r}, "
            f"'--output', {str(tmp_path / 'out')!r}]))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "pip install 'scraper[browser]'" in lines[0] and "Traceback" not in lines[0]
    assert server.hits == {}  # before any request
    assert not (tmp_path / "out" / "pages.jsonl").exists()


async def test_bad_executable_is_exit_2(serve: Any, tmp_path: Path) -> None:
    server = await serve(_site())
    (tmp_path / "urls.txt").write_text(server.url("/shell") + "\n")
    cfg = write_config(tmp_path / "c.toml", '[render]\nmode = "always"\nexecutable = "/no/such/chromium"\n')
    r = await run_cli(str(tmp_path / "urls.txt"), "--config", str(cfg), "--output", str(tmp_path / "out"))
    assert r.code == 2
    assert "[render] executable" in r.stderr and "/no/such/chromium" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert server.hits == {}


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ('mode = "sometimes"', "render.mode"),
        ("mode = 1", "render.mode"),
        ('match = ["(unclosed"]', "render.match"),
        ('match = "x"', "render.match"),
        ("pages = 0", "render.pages"),
        ('pages = "4"', "render.pages"),
        ('wait = "idle"', "render.wait"),
        ("timeout = 0", "render.timeout"),
        ("timeout = -1.5", "render.timeout"),
        ('block = ["pictures"]', "render.block"),
        ("block = 3", "render.block"),
        ("executable = 3", "render.executable"),
        ("colour = 1", "render.colour"),
    ],
)
def test_bad_render_values_name_key_and_file(tmp_path: Path, text: str, key: str) -> None:
    path = write_config(tmp_path / "c.toml", f"[render]\n{text}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert key in str(e.value) and "c.toml" in str(e.value)
    assert "\n" not in str(e.value)
