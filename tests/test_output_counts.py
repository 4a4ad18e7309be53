"""The counts say what the output holds: stats.json after a full disk, progress after --resume and max_pages."""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from aiohttp import web

from tests.conftest import ROOT, html, run_cli, write_config

PROGRESS = re.compile(r"^progress: (\d+)/(\d+) pages, (\d+\.\d) pages/s, (\d+) errors, (\d+) s$")


@pytest.fixture
def small_disk(tmp_path):
    """A 64 KiB tmpfs, mounted for the test (root only, as in CI)."""
    if os.geteuid() != 0:
        if os.environ.get("CI"):
            pytest.fail("CI runs the tests as root: the full-disk test mounts a tmpfs")
        pytest.skip("mounting a tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=True)


async def test_after_a_full_disk_stats_count_what_the_file_holds(serve, tmp_path, small_disk):
    links = [f"/a-rather-long-link-name-that-fills-the-record/{i:03d}" for i in range(3)]

    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=html(f"page {request.path}", links), content_type="text/html")

    site = await serve(handler)
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(site.url(f"/p/{i}") + "\n" for i in range(300)))  # ~0.6 KB a record: 180 KB
    cfg = write_config(tmp_path / "config.toml", "[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n")
    out = small_disk / "out"

    result = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), "-q")

    assert result.code == 1
    assert result.stderr.count("\n") == 1 and "No space left on device" in result.stderr, result.stderr
    data = (out / "pages.jsonl").read_bytes()
    assert data.endswith(b"\n")  # whole records only
    lines = [json.loads(line) for line in data.splitlines()]
    assert 0 < len(lines) < 300
    stats = json.loads((out / "stats.json").read_text())
    assert stats["pages"] == stats["ok"] == stats["by_status"]["200"] == stats["run_pages"] == len(lines)
    assert stats["bytes"] == sum(r["bytes"] for r in lines)
    assert stats["interrupted"] is True


# --- progress ---------------------------------------------------------------------------------------


async def run_until(args: list[str], cwd: Path, gate: asyncio.Event, until) -> tuple[int, list[str]]:
    """Run the CLI with fast plain progress; set `gate` once a progress line satisfies `until`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", *args, cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT), "SCRAPER_PROGRESS_INTERVAL": "0.05"},
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    assert proc.stderr is not None
    lines: list[str] = []
    try:
        while not gate.is_set():
            line = (await asyncio.wait_for(proc.stderr.readline(), 30)).decode()
            assert line, f"the run ended before the awaited progress line: {lines}"
            lines.append(line.rstrip("\n"))
            if (m := PROGRESS.match(lines[-1])) and until(*map(int, (m[1], m[2])), lines[-1]):
                gate.set()
        lines += (await asyncio.wait_for(proc.stderr.read(), 30)).decode().splitlines()
        return await proc.wait(), lines
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


def progress_counts(lines: list[str]) -> list[tuple[int, int]]:
    found = [(int(m[1]), int(m[2])) for line in lines if (m := PROGRESS.match(line))]
    assert found, lines
    return found


def tree_site(gate: asyncio.Event) -> web.RequestHandler:
    """/t/NODE links to ten children; /hold answers once `gate` is set."""

    async def handler(request: web.Request) -> web.Response:
        if request.path == "/hold":
            await gate.wait()
        node = request.path.removeprefix("/t/")
        return web.Response(text=html(node, [f"/t/{node}{k}" for k in range(10)]), content_type="text/html")

    return handler


async def test_with_max_pages_known_never_exceeds_it(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(tree_site(gate))
    (tmp_path / "urls.txt").write_text(f"{site.url('/hold')}\n{site.url('/t/r')}\n")
    write_config(tmp_path / "config.toml", "[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n")

    # held at /hold until done reaches 20: by then the frontier knows far more than 30 links
    code, lines = await run_until(["urls.txt", "--max-pages", "30", "--depth", "3"], tmp_path, gate,
                                  lambda done, known, line: done >= 20)

    assert code == 0, lines
    counts = progress_counts(lines)
    assert all(done <= known <= 30 for done, known in counts), counts
    assert any(done >= 20 and known == 30 for done, known in counts), counts
    assert len((tmp_path / "output" / "pages.jsonl").read_text().splitlines()) == 30


async def test_after_resume_progress_counts_the_whole_crawl(serve, tmp_path):
    gate = asyncio.Event()
    site = await serve(tree_site(gate))
    write_config(tmp_path / "config.toml", "[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n")
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(site.url(f"/t/{i}") + "\n" for i in range(10)))
    first = await run_cli("urls.txt", "-q", cwd=tmp_path)
    assert first.code == 0, first.stderr

    # ten more seeds, one held: done reaches 19 of 20 only if the ten recorded ones count
    urls.write_text(urls.read_text() + "".join(site.url(f"/t/{i}") + "\n" for i in range(10, 19))
                    + site.url("/hold") + "\n")
    code, lines = await run_until(["urls.txt", "--resume"], tmp_path, gate,
                                  lambda done, known, line: done >= 19)

    assert code == 0, lines
    counts = progress_counts(lines)
    assert (19, 20) in counts, counts
    assert all(10 <= done <= known <= 20 for done, known in counts), counts
    assert "done: 20 pages" in "\n".join(lines) and "10 this run" in "\n".join(lines)
