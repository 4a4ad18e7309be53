"""`--since DIR`: recrawl only what changed (SPEC 9), on the real CLI and a real server.

The loopback site honours `If-None-Match` (weak comparison) and
`If-Modified-Since` as a web server does, counts the body bytes it sends, and
notes the validators each request carried. The test crawls it, changes some
pages, and crawls it again with `--since` the first output:

    /        -> /a /b /c /d /gone /flaky /r (and /new, second crawl)   changes
    /a       ETag + Last-Modified, unchanged: 304 (its 304 sends a weak ETag, no Last-Modified)
      /deep  reached only through /a; no validators, same body       -> /deeper (depth 3: not followed)
      /skip  denied by [crawl].deny, on the 304 page and the downloaded one alike
    /b       ETag, body changes
    /c       no validators, same body
    /d       Last-Modified only, unchanged: 304 with no validators
    /gone    200, then 404
    /flaky   404, then 200 (no ok earlier record: new)
    /r       302 to /t, whose ETag is unchanged: 304 on the /t hop
    /new     only in the second crawl
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections import defaultdict
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from scraper import Scraper, Stats, UsageError, load_config
from scraper.config import Config, CrawlConfig, FetchConfig, OutputConfig, ParseConfig
from scraper.since import EarlierCrawl, _fixdate_stamp
from scraper.sinks import read_back
from tests.conftest import html, run_cli, write_config

LM = "Sun, 06 Nov 1994 08:49:37 GMT"


@dataclass
class Doc:
    body: str
    status: int = 200
    etag: str | None = None
    last_modified: str | None = None
    etag_on_304: str | None = None  # the ETag a 304 sends (None: none)
    lm_on_304: bool = False
    location: str | None = None


class Site:
    """A site that answers conditional requests; `docs` may be changed between crawls."""

    def __init__(self) -> None:
        self.docs: dict[str, Doc] = {}
        self.sent = 0  # body bytes sent
        self.validators: dict[str, list[tuple[str | None, str | None]]] = defaultdict(list)
        self.statuses: dict[str, list[int]] = defaultdict(list)

    def reset(self) -> None:
        self.sent = 0
        self.validators.clear()
        self.statuses.clear()

    async def handler(self, request: web.Request) -> web.Response:
        path = request.path
        inm, ims = request.headers.get("If-None-Match"), request.headers.get("If-Modified-Since")
        self.validators[path].append((inm, ims))
        response = self._answer(self.docs.get(path), inm, ims)
        self.statuses[path].append(response.status)
        self.sent += len(response.body or b"")
        return response

    @staticmethod
    def _answer(doc: Doc | None, inm: str | None, ims: str | None) -> web.Response:
        if doc is None or doc.status == 404:
            return web.Response(status=404, text="not found")
        if doc.location is not None:
            return web.Response(status=302, headers={"Location": doc.location})
        if inm is not None:  # RFC 9110 13.1.2: If-None-Match wins over If-Modified-Since
            weak = [tag.strip().removeprefix("W/") for tag in inm.split(",")]
            fresh = doc.etag is not None and doc.etag.removeprefix("W/") in weak
        else:
            fresh = (ims is not None and doc.last_modified is not None
                     and parsedate_to_datetime(ims) >= parsedate_to_datetime(doc.last_modified))
        if fresh:
            headers = {}
            if doc.etag_on_304 is not None:
                headers["ETag"] = doc.etag_on_304
            if doc.lm_on_304 and doc.last_modified:
                headers["Last-Modified"] = doc.last_modified
            return web.Response(status=304, headers=headers)
        headers = {}
        if doc.etag:
            headers["ETag"] = doc.etag
        if doc.last_modified:
            headers["Last-Modified"] = doc.last_modified
        return web.Response(text=doc.body, content_type="text/html", headers=headers)


def first_site(site: Site) -> None:
    links = ["/a", "/b", "/c", "/d", "/gone", "/flaky", "/r"]
    site.docs = {
        "/": Doc(html("home", links), etag='"root-1"'),
        "/a": Doc(html("page a", ["/deep", "/skip"], body='<p class="price">12 EUR</p>', description="about a"),
                  etag='"a-1"', last_modified=LM, etag_on_304='W/"a-1"'),
        "/deep": Doc(html("deep", ["/deeper"], body="deep down")),
        "/deeper": Doc(html("deeper")),
        "/skip": Doc(html("skipped")),
        "/b": Doc(html("page b", body="<p>first version</p>"), etag='"b-1"'),
        "/c": Doc(html("page c", body="<p>never changes</p>")),
        "/d": Doc(html("page d", ["/a"]), last_modified=LM),
        "/gone": Doc(html("going"), etag='"gone-1"'),
        "/flaky": Doc("", status=404),
        "/r": Doc("", location="/t"),
        "/t": Doc(html("target of r"), etag='"t-1"'),
    }


def change_site(site: Site) -> None:
    links = ["/a", "/b", "/c", "/d", "/gone", "/flaky", "/r", "/new"]
    site.docs["/"] = Doc(html("home", links), etag='"root-2"')
    site.docs["/b"] = Doc(html("page b, again", body="<p>second version</p>"), etag='"b-2"')
    site.docs["/gone"] = Doc("", status=404)
    site.docs["/flaky"] = Doc(html("flaky is back"), etag='"flaky-2"')
    site.docs["/new"] = Doc(html("new page"), etag='"new-1"')


#: `changed` of each record of the second crawl (null: no ok record in the first)
EXPECTED_CHANGED = {
    "/": True, "/a": False, "/b": True, "/c": False, "/d": False, "/gone": True,
    "/flaky": None, "/r": False, "/new": None, "/deep": False,
}


def files(tmp_path: Path, base: str, fmt: str = "jsonl", **extra: str) -> tuple[Path, Path]:
    """(urls file, config file): depth 2, fields, text, a deny rule."""
    urls = tmp_path / "urls.txt"
    urls.write_text(base + "/\n", encoding="utf-8")
    more = "".join(f"{line}\n" for line in extra.values())
    cfg = write_config(
        tmp_path / "config.toml",
        "[fetch]\nobey_robots = false\nconcurrency = 4\n"
        '[crawl]\ndepth = 2\ndeny = ["/skip"]\n'
        f'[parse]\nworkers = 1\ntext = true\n[parse.fields]\nprice = ".price"\n[output]\nformat = "{fmt}"\n{more}',
    )
    return urls, cfg


def records(folder: Path, fmt: str = "jsonl", name: str = "pages") -> dict[str, dict[str, Any]]:
    found, _ = read_back(folder / f"{name}.{fmt}", fmt)
    by_path = {r["url"].split(":", 2)[2].split("/", 1)[1]: r for r in found}
    assert len(by_path) == len(found), "a URL recorded twice"
    return {"/" + path: r for path, r in by_path.items()}


def stats(folder: Path, name: str = "stats.json") -> dict[str, Any]:
    return json.loads((folder / name).read_text(encoding="utf-8"))


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


async def crawl(urls: Path, cfg: Path, out: Path, since: Path | None = None, resume: bool = False) -> Stats:
    """A crawl in this process, as the CLI runs it (the CLI's own runs are in the tests that need them)."""
    config = load_config(cfg, output=str(out), since=None if since is None else str(since))
    async with Scraper(config) as s:
        return await s.run(urls, resume=resume)


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_a_recrawl_revalidates_carries_304s_over_and_says_what_changed(serve, tmp_path, fmt):
    site = Site()
    first_site(site)
    server = await serve(site.handler)
    urls, cfg = files(tmp_path, server.base, fmt)
    one, two = tmp_path / "one", tmp_path / "two"
    if fmt == "jsonl":  # the CLI once, the library once
        result = await run_cli(str(urls), "--config", str(cfg), "--output", str(one))
        assert result.code == 0 and "since the earlier crawl" not in result.stderr, result.stderr
    else:
        await crawl(urls, cfg, one)
    first, sent_first = records(one, fmt), site.sent
    before = digest(one)
    change_site(site)
    site.reset()
    if fmt == "csv":
        result = await run_cli(str(urls), "--config", str(cfg), "--output", str(two), "--since", str(one))
        assert result.code == 0, result.stderr
        assert "since the earlier crawl: 3 changed, 5 unchanged, 2 new" in result.stderr
    else:
        await crawl(urls, cfg, two, since=one)
    assert digest(one) == before  # the earlier folder is never written
    second = records(two, fmt)

    # the first crawl: every key there, changed null, no --since counts
    assert all(r["changed"] is None for r in first.values())
    assert first["/a"]["etag"] == '"a-1"' and first["/a"]["last_modified"] == LM
    assert first["/c"]["etag"] is None and first["/c"]["content_hash"].startswith("sha256:")
    assert not {"changed", "unchanged", "new"} & set(stats(tmp_path / "one"))

    # the second crawl: one record per URL, `changed` by SPEC 9's rules
    assert {path: r["changed"] for path, r in second.items()} == EXPECTED_CHANGED
    assert {k: stats(tmp_path / "two")[k] for k in ("changed", "unchanged", "new")} == {
        "changed": 3, "unchanged": 5, "new": 2
    }

    # validators sent: from the earlier ok record only, each one it had; the /t hop only, not /r
    sent = {path: calls[0] for path, calls in site.validators.items()}
    assert sent["/"] == ('"root-1"', None)
    assert sent["/a"] == ('"a-1"', LM)
    assert sent["/d"] == (None, LM)
    assert sent["/gone"] == ('"gone-1"', None)
    assert sent["/r"] == (None, None) and sent["/t"] == ('"t-1"', None)
    for path in ("/c", "/deep", "/flaky", "/new", "/b"):
        assert sent[path] == ((None, None) if path != "/b" else ('"b-1"', None)), path
    assert "/skip" not in site.validators and "/deeper" not in site.validators

    # 304: success, nothing downloaded, parsed keys carried over, validators from the 304 or the earlier record
    for path in ("/a", "/d", "/r"):
        r, old = second[path], first[path]
        assert (r["status"], r["ok"], r["bytes"], r["error"], r["attempts"]) == (304, True, 0, None, 1), path
        for key in ("content_hash", "title", "description", "links", "fields", "text", "content_type"):
            assert r[key] == old[key], (path, key)
    assert second["/a"]["fields"] == {"price": "12 EUR"} and second["/a"]["text"]
    assert second["/a"]["etag"] == 'W/"a-1"'  # the 304's own
    assert second["/a"]["last_modified"] == LM  # the 304 had none: the earlier record's
    assert (second["/d"]["etag"], second["/d"]["last_modified"]) == (None, LM)
    assert second["/r"]["final_url"] == server.url("/t") and second["/r"]["etag"] == '"t-1"'

    # links of a 304 page are followed as if it had been downloaded: depth, referrer, filters
    assert second["/deep"]["depth"] == 2 and second["/deep"]["referrer"] == server.url("/a")
    assert "/deeper" not in second and "/skip" not in second
    assert (second["/deep"]["status"], second["/c"]["status"]) == (200, 200)

    # 2xx: compared by content hash; other outcomes of an ok earlier URL are changes
    assert second["/b"]["content_hash"] != first["/b"]["content_hash"]
    assert second["/c"]["content_hash"] == first["/c"]["content_hash"]
    assert second["/gone"]["status"] == 404 and second["/gone"]["error"]["kind"] == "http"
    assert first["/flaky"]["ok"] is False and second["/flaky"]["ok"] is True

    # the bytes saved: the 304s sent no body
    body = {path: len(doc.body.encode()) for path, doc in site.docs.items()}
    assert site.sent == sum(body[p] for p in ("/", "/b", "/c", "/deep", "/flaky", "/new")) + len(b"not found")
    assert stats(tmp_path / "two")["bytes"] == sum(r["bytes"] for r in second.values()) < sent_first


async def test_resuming_a_recrawl_finishes_it_with_the_same_records(serve, tmp_path):
    site = Site()
    first_site(site)
    server = await serve(site.handler)
    urls, cfg = files(tmp_path, server.base)
    one, two = tmp_path / "one", tmp_path / "two"
    await crawl(urls, cfg, one)
    change_site(site)
    site.reset()
    cut = write_config(tmp_path / "cut.toml", cfg.read_text().replace("[crawl]\n", "[crawl]\nmax_pages = 3\n"))
    await crawl(urls, cut, two, since=one)  # stops part way
    part = records(two)
    assert len(part) == 3
    result = await run_cli(str(urls), "--config", str(cfg), "--output", str(two), "--since", str(one), "--resume")
    assert result.code == 0, result.stderr

    second = records(two)
    assert {path: r["changed"] for path, r in second.items()} == EXPECTED_CHANGED
    assert all(second[path] == r for path, r in part.items())  # the first part kept as it was
    assert all(len(calls) == 1 for calls in site.validators.values())  # nothing fetched twice
    assert second["/deep"]["depth"] == 2 and second["/a"]["status"] == 304
    s = stats(two)  # the counts cover the whole output
    assert (s["pages"], s["changed"], s["unchanged"], s["new"]) == (10, 3, 5, 2)
    assert "since the earlier crawl: 3 changed, 5 unchanged, 2 new" in result.stderr


async def test_the_library_recrawls_too(serve, tmp_path):
    site = Site()
    first_site(site)
    server = await serve(site.handler)
    one = tmp_path / "one"

    def config(**crawl: Any) -> Config:
        return Config(fetch=FetchConfig(obey_robots=False), parse=ParseConfig(workers=1),
                      crawl=CrawlConfig(depth=2, deny=("/skip",), **crawl), output=OutputConfig(dir=str(one)))

    async with Scraper(config()) as s:
        await s.run([server.url("/")])
    change_site(site)
    async with Scraper(config(since=str(one))) as s:
        pages = {p.url.removeprefix(server.base): p async for p in s.crawl([server.url("/")])}
    assert {path: p.changed for path, p in pages.items()} == EXPECTED_CHANGED
    assert pages["/a"].status == 304 and pages["/a"].title == "page a" and pages["/a"].ok


# --- bad --since, and outputs older than the recrawl keys -------------------------------------------


def one_line(stderr: str) -> str:
    assert stderr.count("\n") == 1 and "Traceback" not in stderr, stderr
    return stderr


async def test_bad_since_folders_are_usage_errors_and_change_nothing(serve, tmp_path):
    site = Site()
    first_site(site)
    server = await serve(site.handler)
    urls, cfg = files(tmp_path, server.base)
    out = tmp_path / "out"
    await crawl(urls, cfg, out)
    requests = sum(len(v) for v in site.validators.values())
    before = digest(out)
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a crawl")
    blank = tmp_path / "blank"  # output files without one whole record
    blank.mkdir()
    (blank / "pages.jsonl").write_text('{"url": "http://torn')
    (blank / "pages-w1.csv").write_text("url,ok,content_hash\n")
    old = tmp_path / "old"
    old.mkdir()
    (old / "pages.jsonl").write_text(json.dumps({"url": server.url("/"), "ok": True, "status": 200}) + "\n")
    old_csv = tmp_path / "old_csv"
    old_csv.mkdir()
    (old_csv / "pages.csv").write_text(f"url,ok,status\n{server.url('/')},true,200\n")
    cases = [
        (["--since", str(tmp_path / "missing"), "--overwrite"], "does not exist"),
        (["--since", str(empty / ".." / "out"), "--overwrite"], "is the output folder"),
        (["--since", str(empty), "--overwrite"], "holds no crawl output"),
    ]
    for extra, message in cases:  # on the CLI: exit 2, one line
        result = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), *extra)
        assert result.code == 2, (extra, result.stderr)
        assert message in one_line(result.stderr), (extra, result.stderr)
    more = [
        (out, {"resume": True}, "is the output folder"),
        (urls, {"overwrite": True}, "is not a folder"),
        (blank, {"overwrite": True}, r"holds no crawl output \(no record in pages.jsonl, pages-w1.csv\)"),
        (old, {"overwrite": True}, "has no content_hash"),
        (old_csv, {"overwrite": True}, "has no content_hash"),
    ]
    for since, flags, message in more:  # the library: UsageError, which the CLI makes exit 2
        config = load_config(cfg, output=str(out), since=str(since))
        async with Scraper(config) as s:
            with pytest.raises(UsageError, match=message):
                await s.run(urls, **flags)
    # [crawl] since in config.toml, relative to the working folder
    since_toml = cfg.read_text().replace("[crawl]\n", '[crawl]\nsince = "nowhere"\n')
    cfg_since = write_config(tmp_path / "since.toml", since_toml)
    result = await run_cli(str(urls), "--config", str(cfg_since), "--output", str(tmp_path / "new"), cwd=tmp_path)
    assert result.code == 2 and "nowhere does not exist" in one_line(result.stderr)
    assert not (tmp_path / "new").exists()
    assert digest(out) == before and sum(len(v) for v in site.validators.values()) == requests


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_resuming_an_output_without_the_recrawl_keys_is_refused(tmp_path, fmt):
    out = tmp_path / "out"
    out.mkdir()
    if fmt == "jsonl":
        (out / "pages.jsonl").write_text(json.dumps({"url": "http://127.0.0.1:9/", "ok": False}) + "\n")
    else:
        (out / "pages.csv").write_text("url,final_url,status,ok,depth,referrer,fetched_at,elapsed_ms,attempts,"
                                       "content_type,bytes,title,description,links,fields,error\n")
    before = digest(out)
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/other\n")
    result = await run_cli(str(urls), "--output", str(out), "--format", fmt, "--resume", cwd=tmp_path)
    assert result.code == 2
    assert ("content_hash" if fmt == "jsonl" else "other columns") in one_line(result.stderr)
    assert digest(out) == before


# --- a shared crawl's shards ------------------------------------------------------------------------


async def test_a_redis_worker_reads_every_earlier_shard(serve, tmp_path, monkeypatch):
    from tests.redis_server import start_redis

    site = Site()
    first_site(site)
    server = await serve(site.handler)
    urls, cfg = files(tmp_path, server.base)
    one = tmp_path / "one"
    await crawl(urls, cfg, one)
    # the earlier crawl as a shared crawl leaves it: two shards, one with a torn last line
    lines = (one / "pages.jsonl").read_bytes().splitlines(keepends=True)
    (one / "pages.jsonl").unlink()
    (one / "pages-w1.jsonl").write_bytes(b"".join(lines[::2]) + b'{"url": "http://torn')
    (one / "pages-w2.jsonl").write_bytes(b"".join(lines[1::2]))
    change_site(site)
    with start_redis() as redis:
        job = "since-" + uuid.uuid4().hex[:8]
        shared = write_config(tmp_path / "shared.toml", cfg.read_text()
                              + f'[frontier]\nbackend = "redis"\nurl = "{redis.url}"\njob = "{job}"\n')
        monkeypatch.setenv("SCRAPER_WORKER", "w9")
        result = await run_cli(str(urls), "--config", str(shared), "--output", str(tmp_path / "two"),
                               "--since", str(one))
    assert result.code == 0, result.stderr
    second = records(tmp_path / "two", name="pages-w9")
    assert {path: r["changed"] for path, r in second.items()} == EXPECTED_CHANGED
    s = stats(tmp_path / "two", "stats-w9.json")
    assert (s["changed"], s["unchanged"], s["new"]) == (3, 5, 2)


# --- the index itself -------------------------------------------------------------------------------


def test_the_index_keeps_validators_and_hashes_and_reads_records_back(tmp_path):
    h = "sha256:" + "ab" * 32
    long_etag = '"' + "x" * 300 + '"'
    jsonl = [
        {"url": "http://h/a", "final_url": "http://h/a", "ok": True, "etag": '"é"', "last_modified": LM,
         "content_hash": h, "title": "a"},
        {"url": "http://h/b", "final_url": "http://h/z", "ok": True, "etag": long_etag,
         "last_modified": "Sunday, 06-Nov-94 08:49:37 GMT", "content_hash": h, "title": "b"},
        {"url": "http://h/failed", "ok": False, "etag": '"f"', "content_hash": None},
    ]
    folder = tmp_path / "earlier"
    folder.mkdir()
    (folder / "pages-w1.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in jsonl) + "not json\n" + '{"url": "http://h/torn", "ok": tr'
    )
    header = "url,final_url,ok,title,text,etag,last_modified,content_hash,links,fields\n"
    (folder / "pages-w2.csv").write_text(
        header + f'http://h/c,http://h/c,true,"c, with\nnewline","two\nlines",,"{LM}",{h},"[""http://h/a""]",{{}}\n'
        'http://h/d,,true,d,,"""d""",,,[],{}\n'
        'http://h/torn2,,true,"torn\n'
    )
    index = EarlierCrawl.read(folder)
    assert (index.records, len(index)) == (5, 4)
    a, b, c, d = (index.lookup(f"http://h/{p}") for p in "abcd")
    assert index.lookup("http://h/failed") is None and index.lookup("http://h/torn") is None
    assert index.lookup("http://h/torn2") is None and index.lookup("http://h/other") is None
    assert a.headers() == {"If-None-Match": '"é"', "If-Modified-Since": LM} and not a.redirected
    assert b.headers() == {"If-None-Match": long_etag, "If-Modified-Since": "Sunday, 06-Nov-94 08:49:37 GMT"}
    assert b.redirected and index.record(b)["final_url"] == "http://h/z"
    assert c.headers() == {"If-Modified-Since": LM}
    assert d.headers() == {"If-None-Match": '"d"'} and d.hash16 is None
    assert index.record(a)["title"] == "a"
    rc = index.record(c)
    assert (rc["title"], rc["text"]) == ("c, with\nnewline", "two\nlines")
    assert (rc["links"], rc["fields"]) == (["http://h/a"], {})
    assert index.changed("http://h/a", True, h) is False
    assert index.changed("http://h/a", True, "sha256:" + "cd" * 32) is True
    assert index.changed("http://h/a", False, None) is True
    assert index.changed("http://h/d", True, h) is True  # no earlier hash to compare with
    assert index.changed("http://h/failed", True, h) is None
    stopped = threading.Event()  # an interrupt while the folder is read: the run stops, no error
    stopped.set()
    assert len(EarlierCrawl.read(folder, stop=stopped)) == 0
    # only the compact IMF-fixdate form is packed; anything else is kept as sent
    assert _fixdate_stamp(LM) == 784111777
    assert _fixdate_stamp("Mon, 06 Nov 1994 08:49:37 GMT") is None  # a wrong weekday
    assert _fixdate_stamp("Sun, 31 Jun 1994 08:49:37 GMT") is None


async def test_a_304_to_an_unconditional_request_is_an_http_error(serve):
    async def always_304(request: web.Request) -> web.Response:
        return web.Response(status=304)

    server = await serve(always_304)
    async with Scraper(Config(fetch=FetchConfig(obey_robots=False), parse=ParseConfig(workers=1))) as s:
        [page] = [p async for p in s.crawl([server.url("/")])]
    assert (page.status, page.ok, page.changed, page.error.kind) == (304, False, None, "http")
