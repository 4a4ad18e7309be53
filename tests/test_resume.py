"""--resume: the output is the crawl's state; whatever stopped a run, the union is every URL once.

A killed run (SIGKILL) may leave a torn last line: when the kill left none, the
tests tear one themselves, as a kill mid-write would.
"""

from __future__ import annotations

import csv
import io
import json
import os
import signal
from pathlib import Path

import pytest

from scraper.errors import OutputError
from scraper.page import Page, record_keys
from scraper.sinks import Sink, read_back, truncate_torn
from tests.test_interrupt import (
    Gate,
    assert_all_gone,
    assert_exactly_once,
    cli_args,
    crawl_files,
    descendants,
    finish,
    lines_of,
    run,
    site,
    start_cli,
    wait_lines,
)


async def kill_mid_crawl(args: list[str], pages: Path, lines: int = 8) -> None:
    """Start the CLI, and SIGKILL its whole process group once `pages` holds `lines` lines."""
    proc = await start_cli(*args)
    await wait_lines(pages, lines)
    os.killpg(proc.pid, signal.SIGKILL)
    result = await finish(proc)
    assert result.code == -signal.SIGKILL, result.stderr


def tear(pages: Path, half_of: str) -> None:
    """End `pages` with a torn line (half of `half_of`), unless the kill already left one."""
    data = pages.read_bytes()
    if data.endswith(b"\n"):
        with open(pages, "ab") as f:
            f.write(half_of.encode()[: len(half_of) // 2])
    assert not pages.read_bytes().endswith(b"\n")


def stats_of(out: Path) -> dict:
    return json.loads((out / "stats.json").read_text())


async def test_sigkill_then_resume_records_every_url_once(serve, tmp_path):
    gate = Gate(free=10)  # the rest wait until the kill is done
    server = await serve(site(0.01, gate=gate))
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)
    pages = out / "pages.jsonl"

    await kill_mid_crawl(cli_args(urls_file, cfg, out), pages)
    whole = pages.read_bytes()[: pages.read_bytes().rfind(b"\n") + 1]
    done = {json.loads(line)["url"] for line in whole.splitlines()}
    torn_url = next(u for u in urls if u not in done)  # its record was being written: it is fetched again
    tear(pages, json.dumps({"url": torn_url, "final_url": torn_url, "status": 200, "ok": True}) + "\n")
    gate.open()

    result = await run(*cli_args(urls_file, cfg, out, "--resume"))

    assert result.code == 0, result.stderr
    records = lines_of(pages)  # the torn line is gone: every line is a whole record
    assert pages.read_bytes().startswith(whole)
    assert_exactly_once([r["url"] for r in records], set(urls))
    assert all(server.requests(u.removeprefix(server.base)) == 1 for u in done)
    assert server.requests(torn_url.removeprefix(server.base)) >= 1
    stats = stats_of(out)
    assert stats["pages"] == stats["ok"] == len(records) == len(urls)
    assert stats["run_pages"] == len(urls) - len(done)
    assert stats["interrupted"] is False


def tree(depth: int, roots: str = "ab") -> dict[str, tuple[int, str | None]]:
    """The pages of `site`'s link tree down to `depth`: path -> (depth, referrer path)."""
    pages: dict[str, tuple[int, str | None]] = {}
    level = [(f"/t/{r}", None) for r in roots]
    for d in range(depth + 1):
        for path, parent in level:
            pages[path] = (d, parent)
        level = [(f"{path}{k}", path) for path, _ in level for k in range(3)]
    return pages


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
async def test_depth_crawl_resumes_from_the_links_of_done_pages(serve, tmp_path, stop):
    gate = Gate(free=16)
    server = await serve(site(0.01, gate=gate))
    expected = tree(3)  # 80 pages; the depth-3 pages link to depth 4, which is never fetched
    urls_file, cfg, out = crawl_files(tmp_path, [server.url("/t/a"), server.url("/t/b")])
    args = cli_args(urls_file, cfg, out, "--depth", "3")
    pages = out / "pages.jsonl"

    if stop == signal.SIGKILL:
        await kill_mid_crawl(args, pages, lines=12)
        tear(pages, json.dumps({"url": server.url("/t/b"), "depth": 0}))
    else:
        proc = await start_cli(*args)
        await wait_lines(pages, 12)
        os.killpg(proc.pid, signal.SIGINT)
        assert (await finish(proc)).code == 130
    data = pages.read_bytes()
    done = {json.loads(line)["url"] for line in data[: data.rfind(b"\n") + 1].splitlines()}
    assert len(done) < len(expected)
    gate.open()

    result = await run(*args, "--resume")

    assert result.code == 0, result.stderr
    records = lines_of(pages)
    assert_exactly_once([r["url"] for r in records], {server.url(p) for p in expected})
    for r in records:  # the rebuilt frontier keeps each link's depth and the page it was found on
        depth, parent = expected[r["url"].removeprefix(server.base)]
        assert (r["depth"], r["referrer"]) == (depth, parent and server.url(parent)), r
    assert stats_of(out)["pages"] == len(records)
    assert all(server.requests(u.removeprefix(server.base)) == 1 for u in done)


async def test_resume_after_a_finished_run_fetches_nothing(serve, tmp_path):
    server = await serve(site(0))
    expected = tree(2)
    urls_file, cfg, out = crawl_files(tmp_path, [server.url("/t/a"), server.url("/t/b"), "ftp://nope/"])
    args = cli_args(urls_file, cfg, out, "--depth", "2")
    assert (await run(*args)).code == 0
    before = (out / "pages.jsonl").read_bytes()
    assert before.count(b"\n") == len(expected) + 1  # and the invalid_url record
    hits = dict(server.hits)

    result = await run(*args, "--resume")

    assert result.code == 0, result.stderr
    assert server.hits == hits
    assert (out / "pages.jsonl").read_bytes() == before
    stats = stats_of(out)
    assert stats["pages"] == len(expected) + 1 and stats["run_pages"] == 0
    assert stats["by_error"] == {"invalid_url": 1}


async def test_csv_resumes_like_jsonl(serve, tmp_path):
    gate = Gate(free=10)
    server = await serve(site(0.01, gate=gate))
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)
    pages = out / "pages.csv"
    args = cli_args(urls_file, cfg, out, "--format", "csv")

    await kill_mid_crawl(args, pages, lines=9)  # the header and 8 records
    tear(pages, f"{urls[-1]},{urls[-1]},200,true,0,,2024-01-01T00:00:00Z,5,1,text/html,100,\"a title\"\n")
    gate.open()

    result = await run(*args, "--resume")

    assert result.code == 0, result.stderr
    text = pages.read_text(encoding="utf-8")
    assert text.endswith("\n") and text.count("url,final_url,") == 1  # one header, no torn row
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert_exactly_once([row["url"] for row in rows], set(urls))
    assert all(row["ok"] == "true" and row["status"] == "200" for row in rows)
    assert stats_of(out)["pages"] == len(rows)


async def test_resume_in_the_other_format_is_exit_2(serve, tmp_path):
    server = await serve(site(0))
    urls_file, cfg, out = crawl_files(tmp_path, [server.url("/p/1")])
    out.mkdir()
    (out / "pages.jsonl").write_text('{"url": "http://127.0.0.1/p/0"}\n')

    result = await run(*cli_args(urls_file, cfg, out, "--resume", "--format", "csv"))

    assert result.code == 2, result.stderr
    assert "--format jsonl" in result.stderr and "Traceback" not in result.stderr
    assert server.hits == {}
    assert sorted(p.name for p in out.iterdir()) == ["pages.jsonl"]


@pytest.mark.parametrize("existing", ["pages.jsonl", "pages.csv"])
async def test_existing_output_is_exit_2_and_left_alone(serve, tmp_path, existing):
    server = await serve(site(0))
    urls_file, cfg, out = crawl_files(tmp_path, [server.url("/p/1")])
    out.mkdir()
    content = b'{"url": "http://127.0.0.1/p/0"}\n{"url": "http://127.0.0.1/p/1", "sta'  # torn: not ours to cut
    (out / existing).write_bytes(content)
    (out / "stats.json").write_text("{}")

    result = await run(*cli_args(urls_file, cfg, out))

    assert result.code == 2, result.stderr
    assert "--resume" in result.stderr and "--overwrite" in result.stderr
    assert server.hits == {}
    assert (out / existing).read_bytes() == content
    assert (out / "stats.json").read_text() == "{}"
    assert sorted(p.name for p in out.iterdir()) == sorted([existing, "stats.json"])


async def test_max_pages_counts_the_records_already_in_the_output(serve, tmp_path):
    # the first two hang: at the signal they are in flight, cancelled, and not counted
    hanging = {"/p/0", "/p/1"}
    gate = Gate(free=6)  # fewer than 20: the run cannot reach --max-pages before the signal
    server = await serve(site(0.01, hang=hanging.__contains__, gate=gate))
    urls = [server.url(f"/p/{i}") for i in range(60)]
    urls_file, cfg, out = crawl_files(tmp_path, urls)
    args = cli_args(urls_file, cfg, out, "--max-pages", "20")

    proc = await start_cli(*args)
    await wait_lines(out / "pages.jsonl", 4)
    os.killpg(proc.pid, signal.SIGINT)
    assert (await finish(proc)).code == 130
    first = lines_of(out / "pages.jsonl")
    assert len(first) < 20 and server.url("/p/0") not in {r["url"] for r in first}

    hanging.clear()
    gate.open()
    result = await run(*args, "--resume")

    assert result.code == 0, result.stderr
    records = lines_of(out / "pages.jsonl")
    assert len(records) == len({r["url"] for r in records}) == 20
    assert server.url("/p/0") in {r["url"] for r in records}
    assert sum(server.hits.values()) <= 20 + 4  # at most those in flight at the signal were fetched twice
    assert stats_of(out)["pages"] == 20


async def test_sigkill_of_the_main_process_leaves_no_workers(serve, tmp_path):
    server = await serve(site(0.01, gate=Gate(free=10)))
    urls_file, cfg, out = crawl_files(tmp_path, [server.url(f"/p/{i}") for i in range(60)], workers=2)
    proc = await start_cli(*cli_args(urls_file, cfg, out))
    await wait_lines(out / "pages.jsonl", 8)
    workers = descendants(proc.pid)
    assert workers, "the parse pool should be running"
    proc.kill()  # the main process only, as the OOM killer does
    try:
        await assert_all_gone(workers, timeout=10)
    finally:
        for pid, _ in workers:  # whatever is left holds our pipes open
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        await finish(proc)


# --- the output file itself ------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
async def test_read_back_keeps_records_whose_text_has_line_separators(tmp_path, fmt):
    # \r, \u2028, \x85, \x0c are line breaks to str.splitlines() and some to csv: none may split a record
    titles = ["cr\rin title", "ls\u2028ps\u2029", "nel\x85ff\x0cvt\x0b", "crlf\r\nlf\n", 'q"uo,te', "plain"]
    path = tmp_path / f"pages.{fmt}"
    sink = Sink(path, fmt)
    await sink.open()
    for i, title in enumerate(titles):
        await sink.write(Page(url=f"http://h/{i}", final_url=f"http://h/{i}", status=200, ok=True, title=title))
    await sink.close()
    size = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b'http://h/9,"torn\n' if fmt == "csv" else b'{"url": "http://h/9", "ti')

    records, good_end = read_back(path, fmt)

    assert [r["title"] for r in records] == titles
    assert [r["url"] for r in records] == [f"http://h/{i}" for i in range(len(titles))]
    assert good_end == size
    assert truncate_torn(path, good_end) and path.stat().st_size == size


async def test_a_failed_write_leaves_whole_lines_and_stops_every_writer(tmp_path, monkeypatch):
    path = tmp_path / "pages.jsonl"
    sink = Sink(path, "jsonl")
    await sink.open()
    await sink.write(Page(url="http://h/0"))
    await sink.flush()
    real_write = sink._file.write
    calls = 0

    async def full_disk(data):  # takes half a batch, then the disk is full
        nonlocal calls
        calls += 1
        if calls == 1:
            return await real_write(bytes(data[: len(data) // 2]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(sink._file, "write", full_disk)
    for i in range(1, 4):
        await sink.write(Page(url=f"http://h/{i}"))
    with pytest.raises(OutputError, match="No space left on device"):
        await sink.flush()
    with pytest.raises(OutputError, match="No space left on device"):
        await sink.write(Page(url="http://h/5"))
    with pytest.raises(OutputError, match="No space left on device"):
        await sink.close()
    assert [r["url"] for r in lines_of(path)] == ["http://h/0"]


async def test_csv_resume_with_another_text_setting_is_exit_2(serve, tmp_path):
    server = await serve(site(0))
    urls_file, cfg, out = crawl_files(tmp_path, [server.url("/p/1"), server.url("/p/2")])
    result = await run(*cli_args(urls_file, cfg, out, "--format", "csv"))
    assert result.code == 0, result.stderr
    before = (out / "pages.csv").read_bytes()
    cfg.write_text(cfg.read_text().replace("[parse]", "[parse]\ntext = true", 1))
    result = await run(*cli_args(urls_file, cfg, out, "--format", "csv", "--resume"))
    assert result.code == 2
    assert "[parse].text" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert (out / "pages.csv").read_bytes() == before


async def test_a_csv_cell_longer_than_csvs_default_limit_reads_back(tmp_path):
    from scraper import read_pages

    path = tmp_path / "pages.csv"
    sink = Sink(path, "csv", record_keys(text=True))
    await sink.open()
    long_text = "word " * 60_000  # 300 KB: over the csv module's 128 KiB default
    await sink.write(Page(url="http://a/", ok=True, text=long_text, with_text=True))
    await sink.write(Page(url="http://a/b", ok=True, text="short", with_text=True))
    await sink.close()
    records, good_end = read_back(path, "csv")
    assert [r["url"] for r in records] == ["http://a/", "http://a/b"] and good_end == path.stat().st_size
    assert records[0]["text"] == long_text
    assert [p.text for p in read_pages(tmp_path)] == [long_text, "short"]
