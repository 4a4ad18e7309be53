"""[output] warc: the archive of every HTTP exchange, read with warcio's own reader and `warcio check`.

The archive is read back only with warcio (its ArchiveIterator and its `check`
command), never with our own reader, so a mistake in the format cannot hide.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import json
import os
import signal
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from warcio.archiveiterator import ArchiveIterator

from scraper import Scraper, load_config
from scraper.archive import whole_length
from scraper.frontier import MemoryFrontier
from tests.conftest import ROOT, config, html, page_handler, read_jsonl, run_cli
from tests.test_interrupt import finish, start_cli, wait_lines
from tests.test_render import browser_tmp  # noqa: F401 - a fixture


@dataclass
class Rec:
    type: str
    id: str
    uri: str
    date: str
    concurrent: list[str]
    warc: Any  # warcio's WARC headers
    status: int | None
    http: Any  # warcio's HTTP headers, None for warcinfo
    payload: bytes


def read_archive(path: Path) -> list[Rec]:
    """Every record of a .warc.gz, read with warcio."""
    out = []
    with open(path, "rb") as f:
        for r in ArchiveIterator(f):
            h = r.rec_headers
            status = r.http_headers.get_statuscode() if r.rec_type == "response" else None
            out.append(Rec(
                type=r.rec_type, id=h.get_header("WARC-Record-ID"), uri=h.get_header("WARC-Target-URI") or "",
                date=h.get_header("WARC-Date"),
                concurrent=[v for k, v in h.headers if k == "WARC-Concurrent-To"], warc=h,
                status=int(status) if status else None, http=r.http_headers, payload=r.raw_stream.read(),
            ))
    return out


def warcio_check(path: Path) -> subprocess.CompletedProcess[str]:
    """warcio's own checker (every digest of every record), as a user would run it."""
    return subprocess.run(
        [sys.executable, "-c", "import sys; from warcio.cli import main; main(sys.argv[1:])", "check", "-v", str(path)],
        capture_output=True, text=True, timeout=60,
    )


def sha1_digest(data: bytes) -> str:
    return "sha1:" + base64.b32encode(hashlib.sha1(data).digest()).decode()


def responses(recs: list[Rec], uri: str) -> list[Rec]:
    return [r for r in recs if r.type == "response" and r.uri == uri]


def assert_final_responses_archived(records: list[dict[str, Any]], recs: list[Rec]) -> None:
    """Every ok record's final response is in the archive, with the very body the record describes."""
    for record in records:
        if record["ok"]:
            bodies = [r.payload for r in responses(recs, record["final_url"]) if r.status == 200]
            hashes = {"sha256:" + hashlib.sha256(b).hexdigest() for b in bodies}
            assert record["content_hash"] in hashes, f"{record['url']}: final response not archived"


# --- the exchanges -----------------------------------------------------------------------------

PAGE = html("Zipped", body="<h1>gz</h1>" + "<p>compressible text</p>" * 50)


async def test_every_exchange_is_archived_with_right_digests(serve, tmp_path):
    tries: dict[str, int] = {}

    async def gz(request: web.Request) -> web.Response:
        return web.Response(body=gzip.compress(PAGE.encode()), headers={
            "Content-Type": "text/html; charset=utf-8", "Content-Encoding": "gzip"})

    async def chunked(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": "text/html"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        for part in (b"<html><head><title>Chunks</title></head>", b"<body>one</body>", b"</html>"):
            await resp.write(part)
        await resp.write_eof()
        return resp

    async def flaky(request: web.Request) -> web.Response:
        tries["flaky"] = tries.get("flaky", 0) + 1
        if tries["flaky"] == 1:
            return web.Response(status=503, text="try again", headers={"Retry-After": "0"})
        return web.Response(text=html("Second try"), content_type="text/html")

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/final")

    links = ["/gz", "/chunked", "/flaky", "/redirect", "/big", "/data.json", "/missing"]
    site = await serve({
        "/robots.txt": page_handler("User-agent: *\nAllow: /\n", content_type="text/plain"),
        "/": page_handler(html("Home", links)),
        "/gz": gz, "/chunked": chunked, "/flaky": flaky, "/redirect": redirect,
        "/final": page_handler(html("Final")),
        "/big": page_handler("x" * 5000, content_type="text/plain"),
        "/data.json": page_handler('{"a": 1}', content_type="application/json"),
    })
    cfg = config(tmp_path, fetch={"obey_robots": True, "max_bytes": 4000}, crawl={"depth": 1},
                 output={"warc": True})
    async with Scraper(cfg) as s:
        await s.run([site.url("/")])
    out = Path(cfg.output.dir)
    archive = out / "pages.warc.gz"
    check = warcio_check(archive)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "digest pass" in check.stdout and "fail" not in check.stdout.lower()

    recs = read_archive(archive)
    assert recs[0].type == "warcinfo"
    assert recs[0].warc.protocol == "WARC/1.1" and all(r.warc.protocol == "WARC/1.1" for r in recs)
    assert {r.type for r in recs[1:]} == {"request", "response"}
    assert count_members(archive) == len(recs)  # every record its own gzip member
    # pairs: each request and its response point at each other, same target and date
    by_id = {r.id: r for r in recs}
    for r in recs[1:]:
        assert len(r.concurrent) == 1
        other = by_id[r.concurrent[0]]
        assert {r.type, other.type} == {"request", "response"}
        assert other.concurrent == [r.id] and other.uri == r.uri and other.date == r.date
        assert r.date.endswith("Z") and "T" in r.date
        assert r.warc.get_header("WARC-Payload-Digest") == sha1_digest(r.payload if r.type == "response" else b"")
    reqs = [r for r in recs if r.type == "request"]
    assert len(reqs) == len([r for r in recs if r.type == "response"])
    assert reqs[0].http.protocol == "GET" and reqs[0].http.statusline.startswith("/robots.txt")
    assert reqs[0].http.get_header("User-Agent") == cfg.fetch.user_agent

    assert [r.status for r in responses(recs, site.url("/robots.txt"))] == [200]
    assert [r.status for r in responses(recs, site.url("/flaky"))] == [503, 200]  # every attempt
    hop, = responses(recs, site.url("/redirect"))  # every redirect hop
    assert hop.status == 302 and hop.http.get_header("Location") == "/final"
    assert hop.payload == b"" and hop.http.get_header("Content-Length") == "0"
    assert hop.warc.get_header("WARC-Truncated") == "unspecified"  # its body was not kept
    assert [r.status for r in responses(recs, site.url("/final"))] == [200]
    assert responses(recs, site.url("/missing"))[0].status == 404
    # gzip on the wire, stored decoded: headers adjusted to match, the originals kept aside
    zipped, = responses(recs, site.url("/gz"))
    assert zipped.payload == PAGE.encode()
    assert zipped.http.get_header("Content-Encoding") is None
    assert zipped.http.get_header("Content-Length") == str(len(PAGE.encode()))
    assert zipped.http.get_header("X-Crawler-Content-Encoding") == "gzip"
    assert zipped.http.get_header("Content-Type") == "text/html; charset=utf-8"
    assert zipped.warc.get_header("WARC-Payload-Digest") == sha1_digest(PAGE.encode())
    chunks, = responses(recs, site.url("/chunked"))
    assert chunks.payload == b"<html><head><title>Chunks</title></head><body>one</body></html>"
    assert chunks.http.get_header("Transfer-Encoding") is None
    assert chunks.http.get_header("Content-Length") == str(len(chunks.payload))
    assert chunks.http.get_header("X-Crawler-Transfer-Encoding") == "chunked"
    # a body dropped as too_large is not archived
    records = {r["url"]: r for r in read_jsonl(out / "pages.jsonl")}
    assert records[site.url("/big")]["error"]["kind"] == "too_large"
    assert not [r for r in recs if r.uri == site.url("/big")]
    assert b"x" * 4001 not in archive.read_bytes() and all(b"x" * 4001 not in r.payload for r in recs)
    assert_final_responses_archived(list(records.values()), recs)


async def test_overwrite_replaces_the_archive_and_a_shard_has_its_own(serve, tmp_path):
    site = await serve({"/": page_handler(html("One", ["/two"])), "/two": page_handler(html("Two"))})
    cfg = config(tmp_path, crawl={"depth": 1}, output={"warc": True})
    out = Path(cfg.output.dir)
    async with Scraper(cfg) as s:
        await s.run([site.url("/")])
        await s.run([site.url("/two")], overwrite=True)
    recs = read_archive(out / "pages.warc.gz")
    assert [r.type for r in recs] == ["warcinfo", "request", "response"]  # the first crawl's exchanges are gone
    assert recs[2].uri == site.url("/two")

    class Worker(MemoryFrontier):
        shard = "w1"

    cfg = config(tmp_path / "shared", crawl={"depth": 1}, output={"warc": True})
    async with Scraper(cfg, frontier=Worker()) as s:
        await s.run([site.url("/")])
    shared = Path(cfg.output.dir)
    assert sorted(p.name for p in shared.iterdir()) == ["pages-w1.jsonl", "pages-w1.warc.gz", "stats-w1.json"]
    recs = read_archive(shared / "pages-w1.warc.gz")
    assert {r.uri for r in recs if r.type == "response"} == {site.url("/"), site.url("/two")}


async def test_sigkill_mid_crawl_then_resume_leaves_a_valid_archive(tmp_path):
    release = asyncio.Event()
    held = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hold":
            held.set()
            await release.wait()  # in flight when the crawl is killed
        return web.Response(text=html(f"page {request.path}", body="<p>" + "words " * 300 + "</p>"),
                            content_type="text/html")

    runner, base = await start_site(handler)
    try:
        urls = [f"{base}/p/{i}" for i in range(20)] + [f"{base}/hold"]
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text("\n".join(urls) + "\n")
        cfg = tmp_path / "config.toml"
        cfg.write_text("[fetch]\nobey_robots = false\nconcurrency = 4\n[parse]\nworkers = 1\n[output]\nwarc = true\n")
        out = tmp_path / "out"
        args = [str(urls_file), "--config", str(cfg), "--output", str(out)]
        proc = await start_cli(*args)
        await held.wait()
        await wait_lines(out / "pages.jsonl", 20)
        os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        archive = out / "pages.warc.gz"
        # killed: every ok record already has its final response in the archive
        records = [json.loads(line) for line in (out / "pages.jsonl").read_bytes().splitlines(keepends=True)
                   if line.endswith(b"\n")]
        assert len(records) == 20
        assert_final_responses_archived(records, read_archive(archive))
        # a kill mid-write tears the last member: tear one as it would
        whole = archive.stat().st_size
        first = archive.read_bytes()[: whole_length_of_first(archive)]
        with open(archive, "ab") as f:
            f.write(first[: len(first) // 2])
        assert whole_length(archive) == whole

        release.set()
        result = await finish(await start_cli(*args, "--resume"))
        assert result.code == 0, result.stderr
    finally:
        release.set()
        await runner.cleanup()
    check = warcio_check(archive)
    assert check.returncode == 0, check.stdout + check.stderr
    recs = read_archive(archive)
    assert count_members(archive) == len(recs)  # the torn member was cut off before the resumed run appended
    assert [r.type for r in recs].count("warcinfo") == 1 and recs[0].type == "warcinfo"
    records = read_jsonl(out / "pages.jsonl")
    assert sorted(r["url"] for r in records) == sorted(urls)
    assert_final_responses_archived(records, recs)
    assert responses(recs, f"{base}/hold")[-1].status == 200


async def test_sigterm_leaves_only_whole_members(tmp_path):
    release = asyncio.Event()
    held = asyncio.Event()

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hold":
            held.set()
            await release.wait()  # in flight when the signal comes; cancelled after the grace
        return web.Response(text=html(f"page {request.path}"), content_type="text/html")

    runner, base = await start_site(handler)
    try:
        urls_file = tmp_path / "urls.txt"
        urls_file.write_text("".join(f"{base}/p/{i}\n" for i in range(10)) + f"{base}/hold\n")
        cfg = tmp_path / "config.toml"
        cfg.write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\nwarc = true\n")
        out = tmp_path / "out"
        proc = await start_cli(str(urls_file), "--config", str(cfg), "--output", str(out))
        await held.wait()
        await wait_lines(out / "pages.jsonl", 10)
        os.killpg(proc.pid, signal.SIGTERM)
        result = await finish(proc)
    finally:
        release.set()
        await runner.cleanup()
    assert result.code == 143, result.stderr
    archive = out / "pages.warc.gz"
    recs = read_archive(archive)
    assert count_members(archive) == len(recs) == 1 + 2 * 10  # warcinfo, then whole pairs only
    assert warcio_check(archive).returncode == 0
    assert_final_responses_archived(read_jsonl(out / "pages.jsonl"), recs)


def count_members(path: Path) -> int:
    """The gzip members of a file, each checked to hold one whole WARC record (CRC and length included)."""
    data = path.read_bytes()
    members = 0
    while data:
        d = zlib.decompressobj(31)
        record = d.decompress(data)
        assert d.eof, "a torn gzip member"
        assert record.startswith(b"WARC/1.1\r\n") and record.endswith(b"\r\n\r\n")
        data, members = d.unused_data, members + 1
    return members


def whole_length_of_first(path: Path) -> int:
    d = zlib.decompressobj(31)
    data = path.read_bytes()
    d.decompress(data)
    return len(data) - len(d.unused_data)


async def start_site(handler: Any) -> tuple[web.AppRunner, str]:
    """A loopback site the test can stop before the end (the `serve` fixture's live to the end)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}"


async def test_a_bad_warc_value_is_exit_2_naming_the_key_and_file(tmp_path):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[output]\nwarc = "yes"\n')
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(tmp_path / "urls.txt"), "--config", str(cfg), "--output", str(tmp_path / "out"))
    assert result.code == 2
    line = f"scraper: error: {cfg}: output.warc must be true or false, not 'yes'"
    assert result.stderr.strip().splitlines() == [line]
    assert not (tmp_path / "out").exists()


async def test_warc_without_warcio_is_one_line_naming_the_extra(tmp_path):
    fake = tmp_path / "fake" / "warcio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('no warcio here')\n")
    cfg = tmp_path / "config.toml"
    cfg.write_text("[output]\nwarc = true\n")
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    env = {**os.environ, "PYTHONPATH": f"{tmp_path / 'fake'}{os.pathsep}{ROOT}"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", str(tmp_path / "urls.txt"), "--config", str(cfg),
        "--output", str(tmp_path / "out"), env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 2
    line = "scraper: error: [output] warc needs warcio: pip install 'scraper[warc]'"
    assert err.decode().strip().splitlines() == [line]
    assert not (tmp_path / "out").exists()


async def test_a_shared_crawl_writes_one_archive_per_worker_and_reparses_whole(serve, tmp_path):
    from tests.redis_server import start_redis
    from tests.test_redis import Site, finish, job, start_site, start_worker, worker_files

    site = await start_site(serve, Site(pages=60, delay=0.02))
    out = tmp_path / "out"
    with start_redis() as redis_server:
        name, procs = job(), []
        for w in ("w1", "w2"):
            urls, cfg = worker_files(tmp_path, redis_server.url, name, w, [site.server.url("/n/0")], per_host=8)
            with open(cfg, "a") as f:
                f.write("[output]\nwarc = true\n")
            procs.append(await start_worker(w, urls, cfg, out))
        results = await asyncio.gather(*(finish(p) for p in procs))
    assert [code for code, _ in results] == [0, 0], results
    assert sorted(p.name for p in out.glob("*.warc.gz")) == ["pages-w1.warc.gz", "pages-w2.warc.gz"]
    records = []
    for w in ("w1", "w2"):
        archive = out / f"pages-{w}.warc.gz"
        assert warcio_check(archive).returncode == 0
        shard = read_jsonl(out / f"pages-{w}.jsonl")
        assert_final_responses_archived(shard, read_archive(archive))  # each worker archives what it records
        records += shard
    assert len(records) == 60

    cfg = tmp_path / "fields.toml"
    cfg.write_text('[parse]\nworkers = 1\n[parse.fields]\nheading = "title"\n')
    dst = tmp_path / "dst"
    async with Scraper(load_config(cfg)) as s:
        stats = await s.reparse(out, dst)  # every shard, from both archives
    assert stats.pages == 60
    after = read_jsonl(dst / "pages.jsonl")
    assert sorted(r["url"] for r in after) == sorted(r["url"] for r in records)
    assert all(r["fields"] == {"heading": r["title"]} and r["title"].startswith("node ") for r in after)


async def test_a_rendered_page_keeps_its_dom_and_reparses_from_it(serve, tmp_path, browser_tmp):  # noqa: F811
    from dataclasses import replace

    from scraper.config import OutputConfig
    from tests.test_render import _render_config, _site

    server = await serve(_site())
    c = _render_config(tmp_path, {"mode": "always"})
    c = replace(c, output=OutputConfig(dir=str(tmp_path / "out"), warc=True))
    out = Path(c.output.dir)
    async with Scraper(c) as s:
        await s.run([server.url("/shell"), server.url("/plain")])
    before = read_jsonl(out / "pages.jsonl")
    assert all(r["rendered"] for r in before)
    assert {r["url"]: r["title"] for r in before}[server.url("/shell")] == "Built by a script"
    archive = out / "pages.warc.gz"
    assert warcio_check(archive).returncode == 0
    recs = read_archive(archive)
    doms = {r.uri: r for r in recs if r.type == "conversion"}
    assert set(doms) == {server.url("/shell"), server.url("/plain")}
    assert doms[server.url("/shell")].warc.get_header("Content-Type") == "text/html; charset=utf-8"
    assert b"Built by a script" in doms[server.url("/shell")].payload  # the DOM, not the shell sent
    assert b"Built by a script" not in responses(recs, server.url("/shell"))[0].payload
    assert_final_responses_archived(before, recs)

    async with Scraper(c) as s:  # no browser is needed: the DOM is in the archive
        await s.reparse(out, tmp_path / "again")
    assert read_jsonl(tmp_path / "again" / "pages.jsonl") == before


async def test_output_to_stdout_writes_no_archive(serve, tmp_path):
    site = await serve({"/": page_handler(html("hello"))})
    work = tmp_path / "work"
    work.mkdir()
    (work / "urls.txt").write_text(site.url("/") + "\n")
    (work / "config.toml").write_text("[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\nwarc = true\n")
    result = await run_cli("urls.txt", "--output", "-", cwd=work)
    assert result.code == 0, result.stderr
    assert [json.loads(line)["title"] for line in result.stdout.splitlines()] == ["hello"]
    assert sorted(p.name for p in work.iterdir()) == ["config.toml", "urls.txt"]
