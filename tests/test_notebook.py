"""A data job in a real Jupyter notebook: nbclient runs it in an ipykernel on this Python.

The cells do what a notebook user does: define `extract` in a cell (it uses a
global of another cell), call `scrape()`, `async for` over `Scraper.crawl` at top
level, `await Scraper.run`, and read the output back with `read_pages`. The test
serves the site on loopback from its own event loop while the kernel runs.
"""

from __future__ import annotations

import json
import os
import sys

import nbformat
from nbclient import NotebookClient

from tests.conftest import ROOT, html, page_handler

CELLS = [
    """\
import json, os, sys
import scraper
from scraper import Scraper, load_config, read_pages, scrape
SEED, OUT = {seed!r}, {out!r}""",
    """\
SUFFIX = "!"  # a global of another cell: it travels with extract""",
    """\
def extract(soup, page):
    return {{"h1": soup.h1.get_text() + SUFFIX, "pid": os.getpid()}}""",
    """\
pages = scrape([SEED], extract=extract, depth=1)
scraped = sorted((p.url, p.fields["h1"], p.error) for p in pages)
pids = {{p.fields["pid"] for p in pages}}""",
    """\
streamed = []
async with Scraper(load_config(None, depth=1), extract=extract) as s:
    async for page in s.crawl([SEED]):
        streamed.append((page.url, page.fields["h1"]))""",
    """\
async with Scraper(load_config(None, depth=1, output=OUT), extract=extract) as s:
    stats = await s.run([SEED])
rows = [p.to_dict() for p in read_pages(OUT)]""",
    """\
def children():  # processes whose parent is this kernel
    found = []
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{{entry}}/stat") as f:
                if entry.isdigit() and f.read().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                    found.append(int(entry))
        except OSError:
            pass
    return found

print(json.dumps({{
    "python": os.path.realpath(sys.executable),
    "kernel_pid": os.getpid(),
    "scraped": scraped,
    "worker_pids": sorted(pids),
    "streamed": sorted(streamed),
    "stats_pages": stats.pages,
    "rows": sorted((r["url"], r["fields"]["h1"]) for r in rows),
    "children": children(),
}}))""",
]


async def test_a_notebook_data_job(serve, tmp_path, monkeypatch):
    site = await serve({"/": page_handler(html("root", ["/a", "/b"], body="<h1>Root</h1>")),
                        "/a": page_handler(html("a", body="<h1>A</h1>")),
                        "/b": page_handler(html("b", body="<h1>B</h1>"))})
    out = tmp_path / "out"
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(cell.format(seed=site.url("/"), out=str(out))) for cell in CELLS]
    monkeypatch.setenv("PYTHONPATH", str(ROOT))  # the kernel imports this tree's scraper, as if installed

    client = NotebookClient(nb, timeout=180, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    await client.async_execute()

    [output] = [o for o in nb.cells[-1].outputs if o.get("name") == "stdout"]
    result = json.loads(output["text"])
    urls = [site.url(p) for p in ("/", "/a", "/b")]
    expected = sorted(zip(urls, ["Root!", "A!", "B!"], strict=True))
    assert result["python"] == os.path.realpath(sys.executable)
    assert result["scraped"] == [[url, h1, None] for url, h1 in expected]
    assert result["kernel_pid"] not in result["worker_pids"]  # extract ran in the parse processes
    assert result["streamed"] == [list(row) for row in expected]
    assert result["stats_pages"] == 3
    assert result["rows"] == [list(row) for row in expected]
    assert result["children"] == []  # every Scraper closed: no worker, fork server or tracker left
    assert site.hits["/"] == 3  # three crawls, each once
