"""The examples/ scripts run against a local shop and produce the CSV they promise."""

from __future__ import annotations

import asyncio
import csv
import json
import os
import sys

from aiohttp import web

from tests.conftest import ROOT

PRODUCTS = {
    1: ("Kettle", "K-1", "$24.50", ["kitchen", "steel"], False),
    2: ("Lamp", "L-2", "$1,099.00", ["light"], True),
    3: ("Mug", "M-3", "$7", [], False),
}


async def shop(request: web.Request) -> web.Response:
    path = request.path
    if path in ("/", "/page/1"):
        links = "".join(f'<a href="/product/{n}">{n}</a>' for n in PRODUCTS) + '<a href="/about">about</a>'
        body = f"<h2>Shop</h2>{links}"
    elif path.startswith("/product/"):
        name, sku, price, tags, sold_out = PRODUCTS[int(path.rsplit("/", 1)[1])]
        tag_html = "".join(f'<span class="tag">{t}</span>' for t in tags)
        body = (f'<h1 class="name">{name}</h1><div data-sku="{sku}"><p class="price">{price}</p>'
                f'{tag_html}{"<b class=sold-out>sold out</b>" if sold_out else ""}</div><a href="/page/1">back</a>')
    else:
        return web.Response(status=404)
    return web.Response(text=f"<html><head><title>shop</title></head><body>{body}</body></html>",
                        content_type="text/html")


async def test_products_to_csv(serve, tmp_path):
    site = await serve(shop)
    out = tmp_path / "products.csv"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(ROOT / "examples" / "products_to_csv.py"), site.url("/"), str(out),
        cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    _, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    with open(out, newline="", encoding="utf-8") as f:
        rows = sorted(csv.DictReader(f), key=lambda r: r["sku"])
    assert [(r["name"], r["sku"], r["price"], r["in_stock"], r["tags"]) for r in rows] == [
        ("Kettle", "K-1", "24.5", "True", "kitchen|steel"),
        ("Lamp", "L-2", "1099.0", "False", "light"),
        ("Mug", "M-3", "7.0", "True", ""),
    ]
    assert site.requests("/about") == 0  # not allowed by the example's [crawl].allow
    assert "3 products written" in err.decode()


async def test_quickstart_crawls_the_example_site_and_leaves_nothing_running(tmp_path):
    from tests.test_pool import alive, wait_for_tree

    with open(tmp_path / "stderr", "wb") as err:  # a file, not a pipe: its end would wait for every holder
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(ROOT / "examples" / "quickstart.py"), "--output", str(tmp_path / "out"),
            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=asyncio.subprocess.DEVNULL, stderr=err,
        )
        tree = await wait_for_tree(proc.pid, 1)  # the parse pool's fork server or resource tracker, at least
        code = await asyncio.wait_for(proc.wait(), 60)
    stderr = (tmp_path / "stderr").read_text()

    assert code == 0, stderr
    assert alive(tree) == []
    lines = (tmp_path / "out" / "pages.jsonl").read_text().splitlines()
    records = {r["url"].split("/", 3)[3]: r for r in map(json.loads, lines)}
    assert len(records) == 13 and records["articles/asyncio.html"]["ok"]
    assert records["private/secret.html"]["error"]["kind"] == "robots"  # the site's robots.txt is obeyed
    assert "done: 13 pages (11 ok, 2 failed)" in stderr
