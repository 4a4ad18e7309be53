"""`--output -`: records on stdout, record by record; a closed pipe ends the run quietly; no files."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys

import pytest
from aiohttp import web

from tests.conftest import ROOT, html, page_handler, run_cli, write_config


def gated_site(gate: asyncio.Event) -> web.RequestHandler:
    """/0 answers at once; every other page once `gate` is set."""

    async def handler(request: web.Request) -> web.Response:
        if request.path != "/0":
            await gate.wait()
        return web.Response(text=html(f"page {request.path}"), content_type="text/html")

    return handler


def files_in(folder) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture
def cfg(tmp_path):
    # save_html asks for files: with --output - there are none all the same
    return write_config(tmp_path / "config.toml",
                        "[fetch]\nobey_robots = false\n[parse]\nworkers = 1\n[output]\nsave_html = true\n")


async def test_jsonl_records_on_stdout_and_no_files(serve, tmp_path, cfg):
    site = await serve({"/": page_handler(html("root", ["/a", "/b"])), "/a": page_handler(html("A")),
                        "/b": page_handler(html("B"))})
    (tmp_path / "urls.txt").write_text(site.url("/") + "\n")
    before = files_in(tmp_path)

    result = await run_cli("urls.txt", "--config", str(cfg), "--output", "-", "--depth", "1", cwd=tmp_path)

    assert result.code == 0, result.stderr
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(r["url"] for r in records) == [site.url("/"), site.url("/a"), site.url("/b")]
    assert {r["title"] for r in records} == {"root", "A", "B"}
    assert result.stdout.endswith("\n") and result.stdout.count("\n") == 3  # nothing else on stdout
    assert "done: 3 pages" in result.stderr  # the summary goes to stderr, as ever
    assert files_in(tmp_path) == before  # no output folder, no stats.json, no html/


async def test_csv_on_stdout_starts_with_its_header(serve, tmp_path, cfg):
    site = await serve({"/": page_handler(html("root, with a comma", ["/a"])), "/a": page_handler(html("A"))})
    result = await run_cli("-", "--config", str(cfg), "--output", "-", "--format", "csv", "--depth", "1", "-q",
                           cwd=tmp_path, stdin=(site.url("/") + "\n").encode())

    assert result.code == 0, result.stderr
    assert result.stderr == ""
    rows = list(csv.reader(io.StringIO(result.stdout)))
    assert rows[0][:4] == ["url", "final_url", "status", "ok"] and "title" in rows[0]
    title = rows[0].index("title")
    assert sorted(row[title] for row in rows[1:]) == ["A", "root, with a comma"]
    assert files_in(tmp_path) == ["config.toml"]


async def test_a_closed_pipe_ends_the_run_quietly(serve, tmp_path, cfg):
    gate = asyncio.Event()
    site = await serve(gated_site(gate))
    (tmp_path / "urls.txt").write_text("".join(site.url(f"/{i}") + "\n" for i in range(10)))
    read_end, write_end = os.pipe()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "scraper", "urls.txt", "--config", str(cfg), "--output", "-", "-q",
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=asyncio.subprocess.DEVNULL, stdout=write_end, stderr=asyncio.subprocess.PIPE,
    )
    os.close(write_end)
    reader = os.fdopen(read_end, "rb")
    try:
        # the first record arrives while the other nine cannot be fetched yet: written record by record
        first = await asyncio.wait_for(asyncio.to_thread(reader.readline), 30)
    finally:
        reader.close()  # as `| head -1` does
    gate.set()
    _, err = await asyncio.wait_for(proc.communicate(), 30)
    stderr = err.decode()

    assert json.loads(first)["url"] == site.url("/0")
    assert proc.returncode == 0, stderr
    assert stderr == ""
    assert files_in(tmp_path) == ["config.toml", "urls.txt"]


async def test_head_in_a_shell_pipeline(serve, tmp_path, cfg):
    gate = asyncio.Event()
    site = await serve(gated_site(gate))
    (tmp_path / "urls.txt").write_text("".join(site.url(f"/{i}") + "\n" for i in range(10)))
    shell = await asyncio.create_subprocess_exec(
        "bash", "-c",
        f'{sys.executable} -m scraper urls.txt --config config.toml --output - 2>err.txt | head -1; '
        'echo "status ${PIPESTATUS[0]}"',
        cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.PIPE,
    )
    assert shell.stdout is not None
    first = await asyncio.wait_for(shell.stdout.readline(), 30)  # head has printed it and exited
    gate.set()
    rest = (await asyncio.wait_for(shell.stdout.read(), 30)).decode()

    assert json.loads(first)["url"] == site.url("/0")
    assert rest == "status 0\n"
    stderr = (tmp_path / "err.txt").read_text()
    assert stderr.startswith("interrupted: ")  # the summary, as after any run, and nothing else
    assert "Traceback" not in stderr and "scraper: error" not in stderr and "Exception" not in stderr


@pytest.mark.parametrize(
    ("args", "config_text", "says"),
    [
        (["--resume"], "", "--resume"),
        (["--since", "old"], "", "--since"),
        ([], '[frontier]\nbackend = "redis"\n', "backend"),
    ],
    ids=["resume", "since", "redis"],
)
async def test_what_needs_an_output_folder_is_a_usage_error(tmp_path, args, config_text, says):
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "pages.jsonl").write_text("")
    cfg = write_config(tmp_path / "config.toml", config_text)
    (tmp_path / "urls.txt").write_text("http://127.0.0.1:9/\n")
    result = await run_cli("urls.txt", "--config", str(cfg), "--output", "-", *args, cwd=tmp_path)

    assert result.code == 2
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1 and says in result.stderr and "--output -" in result.stderr
