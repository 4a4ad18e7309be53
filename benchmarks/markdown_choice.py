"""How `[parse] markdown` was chosen: candidate libraries on real pages, quality and time.

    python -m benchmarks.markdown_choice [--docs DIR] [--every N] [--only a,b]

Runs each candidate in this process on the Python 3.11 documentation that Debian
ships (`python3.11-doc`, /usr/share/doc/python3.11/html), every Nth page, and
prints per candidate:

- ms/page: the candidate's own time, the page already decoded (ours: from the
  lxml tree the parser has built anyway, as in the parse workers);
- code exact: `<pre>` blocks of the main content whose text (trailing spaces
  aside) is a fenced code block of the Markdown, container prefixes removed;
- tables: `<table>`s of the main content that came out as GFM tables;
- nav left: pages whose Markdown still holds Sphinx's navigation, sidebar or
  footer text ("Previous topic", "Show Source", "Last updated on", ...);
- relative links: link and image targets that are not absolute URLs.
"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lxml import etree

DOCS = Path("/usr/share/doc/python3.11/html")
BASE = "http://127.0.0.1:8000/"
NAV_TEXT = ("Previous topic", "Next topic", "This Page", "Report a Bug", "Show Source", "Quick search",
            "Last updated on", "Please donate", "Created using")
_FENCE = re.compile(r"^(?P<prefix>[ >]*)(?P<fence>`{3,}|~{3,})[^`]*$")
_TARGET = re.compile(r"\]\(([^)\s]+)")
_CODE_SPAN = re.compile(r"(`+)[^`].*?\1", re.S)  # `[^b]..|.[^a]` in a code span is no link
_SCHEME = re.compile(r"[a-z][a-z0-9+.-]*:")
_TABLE_RULE = re.compile(r"^[ >]*\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$", re.M)


def fenced_blocks(md: str) -> set[str]:
    """The text of every fenced code block, with its container prefix (quote, list indent) removed."""
    blocks: set[str] = set()
    lines = md.split("\n")
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        prefix, fence = m["prefix"], m["fence"]
        body: list[str] = []
        i += 1
        while i < len(lines):
            line = lines[i]
            rest = line[len(prefix):] if line.startswith(prefix) else line.lstrip(" >")
            if rest.startswith(fence) and not rest.strip(fence[0]).strip():
                break
            body.append(rest)
            i += 1
        blocks.add(_norm("\n".join(body)))
        i += 1
    return blocks


def _norm(text: str) -> str:
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


def _main_of(html: str) -> Any:
    root = etree.fromstring(html, etree.HTMLParser(remove_comments=True))
    main = root.find(".//*[@role='main']")
    return main if main is not None else root


# --- the candidates ----------------------------------------------------------------


def trafilatura_md(html: str, url: str) -> str:
    import trafilatura

    return trafilatura.extract(
        html, url=url, output_format="markdown", include_links=True, include_images=True, include_tables=True,
        include_formatting=True, favor_recall=True,
    ) or ""


def readability_markdownify(html: str, url: str) -> str:
    import markdownify
    from readability import Document

    return markdownify.markdownify(Document(html, url=url).summary(html_partial=True), heading_style="ATX")


def readability_h2m(html: str, url: str) -> str:
    import html_to_markdown
    from readability import Document

    return html_to_markdown.convert(Document(html, url=url).summary(html_partial=True)).content


def h2m_whole(html: str, url: str) -> str:
    import html_to_markdown

    return html_to_markdown.convert(html).content


def markdownify_whole(html: str, url: str) -> str:
    import markdownify

    return markdownify.markdownify(html, heading_style="ATX")


@functools.cache
def _converter() -> Callable[[str], str]:
    from scraper.markdown import converter

    return converter()


def ours(html: str, url: str) -> str:
    from scraper.markdown import page_markdown

    root = _PARSED[url]  # the parse worker has this tree already: parsing it is not markdown's cost
    return page_markdown(root, url, _converter())


_PARSED: dict[str, Any] = {}

CANDIDATES: dict[str, Callable[[str, str], str]] = {
    "trafilatura": trafilatura_md,
    "readability+markdownify": readability_markdownify,
    "readability+html-to-markdown": readability_h2m,
    "markdownify (whole page)": markdownify_whole,
    "html-to-markdown (whole page)": h2m_whole,
    "ours: landmarks + html-to-markdown": ours,
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=Path, default=DOCS)
    ap.add_argument("--every", type=int, default=4, help="take every Nth page (default 4)")
    ap.add_argument("--only", default="", help="comma-separated candidate names (prefixes)")
    args = ap.parse_args(argv)
    files = sorted(p for p in args.docs.rglob("*.html") if p.name != "genindex-all.html")[:: args.every]
    if not files:
        print(f"no pages under {args.docs} (apt-get install python3.11-doc)", file=sys.stderr)
        return 2
    pages = [(BASE + str(p.relative_to(args.docs)), p.read_text("utf-8")) for p in files]
    truth = []
    for _url, html in pages:
        main = _main_of(html)
        pres = {_norm("".join(pre.itertext())) for pre in main.iter("pre")} - {""}
        truth.append((pres, len(main.findall(".//table"))))
    chosen = [n for n in CANDIDATES if not args.only or any(n.startswith(o) for o in args.only.split(","))]
    print(f"{len(pages)} pages of {args.docs}\n")
    print("| candidate | ms/page | code exact | tables | nav left | relative links |\n|---|---|---|---|---|---|")
    for name in chosen:
        fn = CANDIDATES[name]
        elapsed = 0.0
        code_ok = code_n = tables_ok = tables_n = nav = relative = 0
        for (url, html), (pres, n_tables) in zip(pages, truth, strict=True):
            if fn is ours:
                _PARSED[url] = etree.fromstring(html, etree.HTMLParser(remove_comments=True))
            t = time.perf_counter()
            md = fn(html, url)
            elapsed += time.perf_counter() - t
            blocks = fenced_blocks(md)
            code_n += len(pres)
            code_ok += sum(p in blocks for p in pres)
            tables_n += n_tables
            tables_ok += min(n_tables, len(_TABLE_RULE.findall(md)))
            nav += any(text in md for text in NAV_TEXT)
            prose = _CODE_SPAN.sub("", "\n".join(line for line in md.split("\n") if not line.startswith("    ")))
            relative += sum(not _SCHEME.match(t) for t in _TARGET.findall(prose))
        print(f"| {name} | {1000 * elapsed / len(pages):.1f} | {code_ok}/{code_n} | {tables_ok}/{tables_n} "
              f"| {nav}/{len(pages)} | {relative} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
