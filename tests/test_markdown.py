"""`[parse] markdown = true`: the main content as Markdown (SPEC section 12).

Made pages check each rule; the Python 3.11 documentation (Debian's python3.11-doc,
pages no one here wrote) is served from a loopback server and crawled for real.
"""

from __future__ import annotations

import asyncio
import csv
import re
import sys
from pathlib import Path

from aiohttp import web
from conftest import ROOT, config, read_jsonl, run_cli, write_config
from lxml import etree

from scraper import Scraper
from scraper.parse import ParseJob, Parser
from scraper.urls import LinkFilter

DOCS = Path("/usr/share/doc/python3.11/html")
URL = "http://site.test/docs/guide/page.html"


def markdown(body: str, url: str = URL, content_type: str = "text/html; charset=utf-8") -> str | None:
    parser = Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()), markdown=True)
    out = parser.parse(ParseJob(final_url=url, content_type=content_type, body=body.encode(), follow=True,
                                sitemap=False))
    assert out.error is None, out
    return out.markdown


def fenced_blocks(md: str) -> list[str]:
    """Every fenced code block's text, its container prefix (quote marks, list indent) removed."""
    blocks, lines, i = [], md.split("\n"), 0
    while i < len(lines):
        m = re.match(r"^([ >]*)(`{3,}|~{3,})[^`]*$", lines[i])
        i += 1
        if not m:
            continue
        prefix, fence, body = m[1], m[2], []
        while i < len(lines) and not lines[i][len(prefix):].startswith(fence):
            body.append(lines[i][len(prefix):] if lines[i].startswith(prefix) else lines[i].lstrip(" >"))
            i += 1
        blocks.append("\n".join(line.rstrip() for line in body))
        i += 1
    return blocks


def targets(md: str) -> list[str]:
    """The targets of every Markdown link and image."""
    return re.findall(r"\]\((\S+?)(?: \"[^\"]*\")?\)", md)


# --- made pages ------------------------------------------------------------------------

SITE = """<!doctype html><html><head><title>T</title><base href="/docs/">
<style>.x { color: red }</style><script>var leaked = "SCRIPT TEXT";</script></head><body>
<header class="site"><a href="/">SITE LOGO</a> HEADER TEXT</header>
<nav><ul><li><a href="/a">NAV ONE</a></li><li><a href="/b">NAV TWO</a></li></ul></nav>
<div id="cookie-banner">We use COOKIES. <button>Accept</button></div>
<div class="layout has-sidebar">
<aside class="menu">SIDEBAR TEXT</aside>
<main>
<h1>Main title<a class="headerlink" href="#main-title" title="Permalink">¶</a></h1>
<p>A <em>first</em> paragraph with <strong>bold</strong> words and a <a href="other.html">relative link</a>,
a <a href="../up.html?q=1">parent link</a>, a <a href="#install">jump</a>, a <a href="JavaScript:go()">script</a> and an
<a href="https://example.org/x">outside link</a>.</p>
<h2 id="install">Install</h2>
<ul><li>one</li><li>two<ul><li>nested</li></ul></li></ul>
<ol><li>first</li><li>second</li></ol>
<pre><code class="language-python">def f(x):
    if x &lt; 1 and x &gt; -1:   # a &amp; b
        return "&lt;a href='/y'&gt;not a link&lt;/a&gt;"

    return <a href="/helper">helper</a>(<em>x</em>)</code></pre>
<pre>  indented   first line
```
a fence inside
```</pre>
<table><thead><tr><th>Name</th><th>Value</th></tr></thead>
<tbody><tr><td>alpha</td><td>1</td></tr><tr><td>beta</td><td>2</td></tr></tbody></table>
<p><img src="img/pic.png" alt="A picture"> <img src="//cdn.test/i.png" alt="cdn"></p>
<form action="/search"><input name="q" value="FORM VALUE"><label>FORM LABEL</label></form>
<section><p>Section text<sup><a href="#fn1">1</a></sup>.</p>
<aside class="footnote" id="fn1">FOOTNOTE TEXT</aside></section>
<noscript>NOSCRIPT TEXT</noscript>
</main>
</div>
<footer>FOOTER TEXT &copy; 2026</footer>
<div class="consent-dialog">CONSENT TEXT</div>
</body></html>"""


def test_headings_paragraphs_lists_and_emphasis():
    md = markdown(SITE)
    assert md.startswith("# Main title\n")
    assert "\n## Install\n" in md
    assert "A *first* paragraph with **bold** words" in md
    assert re.search(r"^- one$", md, re.M) and re.search(r"^- two$", md, re.M)
    assert re.search(r"^\s+[-*+] nested$", md, re.M)
    assert re.search(r"^1\. first$", md, re.M) and re.search(r"^2\. second$", md, re.M)
    assert "¶" not in md and "Permalink" not in md


def test_code_blocks_are_exact():
    blocks = fenced_blocks(markdown(SITE))
    assert blocks == [
        'def f(x):\n    if x < 1 and x > -1:   # a & b\n        return "<a href=\'/y\'>not a link</a>"\n\n'
        "    return helper(x)",
        "  indented   first line\n```\na fence inside\n```",
    ]
    assert "```python\n" in markdown(SITE)  # the language class is kept


def test_tables_are_gfm():
    md = markdown(SITE)
    rows = [line for line in md.splitlines() if line.startswith("|")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0] == ["Name", "Value"]
    assert all(set(c) <= {"-", ":"} for c in cells[1])
    assert cells[2:] == [["alpha", "1"], ["beta", "2"]]


def test_links_and_images_are_absolute():
    md = markdown(SITE)
    assert "[relative link](http://site.test/docs/other.html)" in md  # against <base href="/docs/">
    assert "[parent link](http://site.test/up.html?q=1)" in md
    assert "[jump](http://site.test/docs/guide/page.html#install)" in md  # the page, not <base href>
    assert "[outside link](https://example.org/x)" in md
    assert "a script and" in md and "go()" not in md
    assert "![A picture](http://site.test/docs/img/pic.png)" in md
    assert "![cdn](http://cdn.test/i.png)" in md
    assert all(re.match(r"https?://", t) for t in targets(md)), targets(md)


def test_boilerplate_is_dropped_and_content_kept():
    md = markdown(SITE)
    for gone in ("SCRIPT TEXT", "color: red", "SITE LOGO", "HEADER TEXT", "NAV ONE", "NAV TWO", "COOKIES", "Accept",
                 "SIDEBAR TEXT", "FORM VALUE", "FORM LABEL", "NOSCRIPT TEXT", "FOOTER TEXT", "CONSENT TEXT"):
        assert gone not in md, gone
    assert "Section text" in md
    assert "FOOTNOTE TEXT" in md  # an <aside> inside the text is the text's


def test_main_content_by_role_or_single_article():
    page = ('<html><body><nav>NAV</nav><div class="sidebar">SIDE</div><div role="main"><h1>Role main</h1>'
            "<p>Body.</p></div><footer>FOOT</footer></body></html>")
    assert markdown(page) == "# Role main\n\nBody.\n"
    page = "<html><body><div>OUTSIDE</div><article><h2>Post</h2><p>Words.</p></article></body></html>"
    assert markdown(page) == "## Post\n\nWords.\n"


def test_no_identifiable_main_content_gives_the_whole_body():
    page = """<html><head><title>Plain</title></head><body>
    <header><h1>Site name</h1><nav><a href="/">HOME</a></nav></header>
    <div class="wrap with-sidebar"><div><h1>Heading</h1><p>First <a href="x.html">para</a>.</p></div>
    <div><p>Second para.</p></div><article><p>One article.</p></article><article><p>Another.</p></article></div>
    <div id="onetrust-consent-sdk">BANNER</div>
    <footer>FOOT</footer></body></html>"""
    md = markdown(page)
    assert md == ("# Heading\n\nFirst [para](http://site.test/docs/guide/x.html).\n\nSecond para.\n\n"
                  "One article.\n\nAnother.\n")
    # without any landmark or boilerplate, every word of the body is there
    assert markdown("<p>Just <b>this</b>.</p><div>And that.</div>") == "Just **this**.\n\nAnd that.\n"


def test_markdown_key_only_when_on_and_empty_page():
    off = Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()))
    out = off.parse(ParseJob(final_url=URL, content_type="text/html", body=b"<p>x</p>", follow=False, sitemap=False))
    assert out.markdown is None
    assert markdown("") == ""
    assert markdown("   ") == ""
    assert markdown("<html><head><title>Only a title</title></head></html>") == ""
    assert markdown("<body><nav><a href='/'>Home</a></nav><footer>f</footer></body>") == ""


# --- a real crawl of the Python documentation -------------------------------------------


def docs_handler(root: Path):
    async def handler(request: web.Request) -> web.StreamResponse:
        path = (root / request.path.lstrip("/")).resolve()
        if root not in path.parents or not path.is_file():
            raise web.HTTPNotFound()
        return web.FileResponse(path)

    return handler


def _main_content(html: bytes) -> etree._Element:
    root = etree.fromstring(html, etree.HTMLParser())
    return root.find(".//*[@role='main']")


async def test_python_docs_crawl_with_the_cli(serve, tmp_path):
    assert DOCS.is_dir(), "the Python docs are missing: apt-get install python3.11-doc"
    server = await serve(docs_handler(DOCS))
    pages = ["library/pathlib.html", "tutorial/controlflow.html", "library/string.html"]
    other = ["_images/pathlib-inheritance.png", "_sources/library/pathlib.rst.txt"]
    urls = tmp_path / "urls.txt"
    urls.write_text("".join(server.url("/" + p) + "\n" for p in pages + other))
    cfg = write_config(tmp_path / "config.toml", "[fetch]\nobey_robots = false\n[parse]\nmarkdown = true\n")
    for fmt in ("jsonl", "csv"):
        out = tmp_path / fmt
        res = await run_cli(str(urls), "--config", str(cfg), "--output", str(out), "--format", fmt, "-q")
        assert res.code == 0, res.stderr
    records = {r["url"]: r for r in read_jsonl(tmp_path / "jsonl" / "pages.jsonl")}
    assert len(records) == 5 and all(r["ok"] for r in records.values())
    for p in other:  # not HTML: null
        assert records[server.url("/" + p)]["markdown"] is None

    for p in pages:
        url = server.url("/" + p)
        md = records[url]["markdown"]
        main = _main_content((DOCS / p).read_bytes())
        # every code block of the page, exact
        blocks = fenced_blocks(md)
        for pre in main.iter("pre"):
            text = "\n".join(line.rstrip() for line in "".join(pre.itertext()).split("\n")).strip("\n")
            assert text in blocks, (p, text[:80])
        assert len(blocks) == len(list(main.iter("pre")))
        # headings: the page's h1 and every h2, in order
        h2s = ["".join(h.itertext()).replace("¶", "").strip() for h in main.iter("h2")]
        md_h2s = [line[3:] for line in md.splitlines() if line.startswith("## ")]
        assert [re.sub(r"[`*]", "", re.sub(r"\[(.*?)\]\(.*?\)", r"\1", h)) for h in md_h2s] == h2s
        assert md.startswith("# ")
        # navigation, sidebar, footer: gone
        for gone in ("Previous topic", "Next topic", "This Page", "Report a Bug", "Show Source", "Quick search",
                     "Last updated on", "Please donate", "Navigation", "python logo", "py.svg", "¶"):
            assert gone not in md, (p, gone)
        # links absolute; in-page anchors point at the page itself
        assert all(re.match(r"(https?|mailto):", t) for t in targets(md)), p
        for a in main.xpath(".//a[not(ancestor::pre)]"):  # a link in a code block is its text
            href = a.get("href") or ""
            if href.startswith("#") and "headerlink" not in (a.get("class") or ""):
                assert f"({url}{href}" in md, (p, href)

    pathlib_md = records[server.url("/library/pathlib.html")]["markdown"]
    assert pathlib_md.startswith("# [`pathlib`](" + server.url("/library/pathlib.html#module-pathlib"))
    assert f"![../_images/pathlib-inheritance.png]({server.url('/_images/pathlib-inheritance.png')})" in pathlib_md
    row = next(line for line in pathlib_md.splitlines() if "os.path.abspath()" in line and line.startswith("|"))
    assert f"[`Path.absolute()`]({server.url('/library/pathlib.html#pathlib.Path.absolute')}" in row
    string_md = records[server.url("/library/string.html")]["markdown"]
    assert sum(1 for line in string_md.splitlines() if re.match(r"^[> ]*\| -{3,}", line)) == 5  # its five tables

    # the CSV holds the same Markdown in its markdown column
    with open(tmp_path / "csv" / "pages.csv", newline="", encoding="utf-8") as f:
        rows = {r["url"]: r for r in csv.DictReader(f)}
    assert "markdown" in rows[server.url("/library/pathlib.html")]
    for url, record in records.items():
        assert rows[url]["markdown"] == (record["markdown"] or "")


async def test_library_crawl_same_markdown_as_the_parser(serve, tmp_path):
    server = await serve({"/": page_route(SITE), "/data.json": page_route('{"a": 1}', "application/json")})
    c = config(tmp_path, parse={"markdown": True})
    async with Scraper(c) as s:
        got = {p.url: p async for p in s.crawl([server.url("/"), server.url("/data.json")])}
    page = got[server.url("/")]
    assert page.markdown == markdown(SITE, url=server.url("/"))
    assert page.to_dict()["markdown"].startswith("# Main title\n")
    assert got[server.url("/data.json")].markdown is None and "markdown" in got[server.url("/data.json")].to_dict()
    async with Scraper(config(tmp_path)) as s:
        plain = [p async for p in s.crawl([server.url("/")])]
    assert "markdown" not in plain[0].to_dict()


def page_route(text: str, content_type: str = "text/html"):
    async def handler(request: web.Request) -> web.Response:
        return web.Response(text=text, content_type=content_type)

    return handler


# --- bad input ---------------------------------------------------------------------------


async def test_bad_markdown_value_is_exit_2(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    cfg = write_config(tmp_path / "config.toml", '[parse]\nmarkdown = "yes"\n')
    res = await run_cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "o"))
    assert res.code == 2
    assert "parse.markdown" in res.stderr and str(cfg) in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1


async def test_missing_extra_is_one_line_exit_2_and_nothing_touched(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    out = tmp_path / "o"
    out.mkdir()
    (out / "pages.jsonl").write_text('{"url": "http://127.0.0.1:9/"}\n')
    cfg = write_config(tmp_path / "config.toml", "[parse]\nmarkdown = true\n")
    # the interpreter as a user without html-to-markdown has it
    code = ("import sys; sys.modules['html_to_markdown'] = None; from scraper.cli import main; "
            f"sys.exit(main({[str(urls), '--config', str(cfg), '--output', str(out), '--overwrite']!r}))")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", code, cwd=ROOT, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), 60)
    err = stderr.decode().strip()
    assert proc.returncode == 2, err
    assert err.splitlines() == [err] and "pip install 'scraper[markdown]'" in err and "markdown" in err
    assert (out / "pages.jsonl").read_text() == '{"url": "http://127.0.0.1:9/"}\n'  # --overwrite did not run
