"""`[parse.fields]` on the lxml tree give exactly what BeautifulSoup's select gave.

The reference is bs4 itself, run here on the same decoded text: `select_one` /
`select`, `get_text(" ", strip=True)` for text, `get(attr)` for attributes (a
list attribute joined by a space), on made pages with every awkward case and on
real pages (the Python documentation).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from scraper.config import FieldSpec, ParseConfig
from scraper.errors import ConfigError
from scraper.parse import ParseJob, Parser, decode
from scraper.urls import LinkFilter

DOCS = Path("/usr/share/doc/python3.11/html")

AWKWARD = """<!doctype html><html><head><title>t</title>
<script>var inHead = 1;</script><style>p { color: red }</style></head><body>
<div id="main" class="  box   wide
 card ">  Intro <b>bold</b>&nbsp;and <i> italic </i>
<script>var hidden = "<p>no</p>";</script><style>.x{}</style><template><p>tpl <b>inner</b></p></template>
<ruby>漢<rp>(</rp><rt>kan</rt><rp>)</rp></ruby> tail <?php echo 1; ?> after-pi
<!-- a comment --> after-comment
<noscript>noscript text</noscript><textarea> area </textarea>
</div>
<p class="price" data-x=" raw  value "> 12 <b>EUR</b> </p>
<p class="">empty class</p>
<a href=" /x " rel=" nofollow  noopener ">link</a><a href="/y" rev="a b">y</a><a name="n">no href</a>
<link rel="stylesheet  preload" href="/s.css">
<table><tr><td headers=" h1  h2 ">cell</td><th headers="h3">head</th></tr></table>
<form accept-charset="utf-8  latin1"><output for="a  b">out</output></form>
<iframe sandbox=" allow-forms  allow-scripts " src="/f"></iframe>
<span accesskey="k  l">key</span><span dropzone="copy  move">dz</span>
<ul><li>one</li><li>two <span>2</span></li><li></li><li>   </li></ul>
<img src="/a.png"><img src="/b.png"><img>
</body></html>"""

SELECTORS = [
    "div", "#main", ".box", ".wide.card", "div b", "p", "p.price", "p:nth-of-type(2)", "a", "a[href]",
    "a[rel~=nofollow]", "a[href^='/']", "link", "td", "th", "form", "output", "iframe", "span", "li",
    "ul > li:first-child", "li + li", "li ~ li", "script", "style", "template", "template p", "template b",
    "rt", "rp", "ruby", "noscript", "textarea", "img", "img[src$='.png']", "head", "title", "html", "body",
    "body *", ":root", "h1", ".nothing", "div, p", "p, div", "a:not([href])", "li:empty", "*",
]
SPHINX = ["h1", "h2", "title", "a", "a.reference.internal", "div.body p", "pre", "code", "dt", "dd", "table td",
          "li > a", "[href]", "script", "style", "meta[name=description]", "span.pre", "p:nth-of-type(2)",
          "a[href^=http]", "h2 + p", "h1 ~ p", "div.highlight", "section > section", ".headerlink", "link",
          "div.sphinxsidebar", "div.footer", "dl.function > dt", "em", ":root > body > div"]
ATTRS = [None, "class", "href", "rel", "rev", "headers", "accept-charset", "for", "sandbox", "accesskey",
         "dropzone", "data-x", "src", "id", "name", "missing"]


def reference(soup: BeautifulSoup, spec: FieldSpec):
    """The value as BeautifulSoup gives it."""

    def value(el):
        if spec.attr is None:
            return el.get_text(" ", strip=True)
        v = el.get(spec.attr)
        return " ".join(v) if isinstance(v, list) else v

    if spec.all:
        values = [value(el) for el in soup.select(spec.selector)]
        return [v for v in values if v is not None] if spec.attr else values
    el = soup.select_one(spec.selector)
    return None if el is None else value(el)


def ours(body: bytes, fields: dict[str, FieldSpec]) -> dict:
    parser = Parser(fields=fields, text=False, extract=None, link_filter=LinkFilter(True, (), ()))
    out = parser.parse(ParseJob(final_url="http://site.test/", content_type="text/html; charset=utf-8", body=body,
                                follow=False, sitemap=False))
    assert out.error is None, out
    return out.fields


def specs(selectors: list[str], attrs: list[str | None]) -> dict[str, FieldSpec]:
    return {f"{i}-{j}-{every}": FieldSpec(selector=sel, attr=attr, all=every)
            for i, sel in enumerate(selectors) for j, attr in enumerate(attrs) for every in (False, True)}


def check_page(body: bytes, selectors: list[str] = SELECTORS, attrs: list[str | None] = ATTRS) -> int:
    fields = specs(selectors, attrs)
    got = ours(body, fields)
    soup = BeautifulSoup(decode(body, "text/html; charset=utf-8"), "lxml")
    for name, spec in fields.items():
        assert got[name] == reference(soup, spec), (spec, got[name])
    return sum(1 for v in got.values() if v not in (None, []))


def test_awkward_page_same_values_as_beautifulsoup():
    assert check_page(AWKWARD.encode()) > 150  # most selectors matched something


def test_known_values():
    got = ours(AWKWARD.encode(), {
        "div": FieldSpec(selector="#main"),
        "class": FieldSpec(selector="#main", attr="class"),
        "raw": FieldSpec(selector="p.price", attr="data-x"),
        "rel": FieldSpec(selector="a", attr="rel"),
        "href": FieldSpec(selector="a", attr="href"),
        "script": FieldSpec(selector="body script"),
        "items": FieldSpec(selector="li", all=True),
        "srcs": FieldSpec(selector="img", attr="src", all=True),
        "none": FieldSpec(selector=".nothing"),
        "none_all": FieldSpec(selector=".nothing", all=True),
    })
    assert got == {
        "div": "Intro bold and italic 漢 tail after-pi after-comment noscript text area",
        "class": "box wide card",
        "raw": " raw  value ",
        "rel": "nofollow noopener",
        "href": " /x ",
        "script": 'var hidden = "<p>no</p>";',
        "items": ["one", "two 2", "", ""],
        "srcs": ["/a.png", "/b.png"],
        "none": None,
        "none_all": [],
    }


@pytest.mark.parametrize("page", ["tutorial/controlflow.html", "library/string.html",
                                  "index.html", "glossary.html"])
def test_real_pages_same_values_as_beautifulsoup(page):
    assert DOCS.is_dir(), "the Python docs are missing: apt-get install python3.11-doc"
    assert check_page((DOCS / page).read_bytes(), SPHINX, [None, "class", "href", "id", "rel"]) > 40


@pytest.mark.parametrize("selector", ["a[[", "p:nope", "", "a >", "::text"])
def test_bad_selector_is_a_config_error(selector):
    with pytest.raises(ConfigError, match=r"^parse\.fields\.price has a bad CSS selector: \S"):
        ParseConfig(fields={"price": FieldSpec(selector=selector)})
