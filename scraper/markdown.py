"""A page's main content as Markdown (`[parse] markdown = true`). Runs in the parse workers.

Two steps, each by the cheapest thing that measured right on real pages (README,
"Main content as Markdown"):

- **Main content** is picked on the lxml tree the parser already built: the
  page's `<main>`, else its `[role=main]`, else its only `<article>`, else the
  whole `<body>`. Sites mark their content that way far more reliably than a
  scoring heuristic guesses it, and a heuristic (readability, trafilatura) costs
  10-50 ms a page and mangles code blocks. Inside the pick, what is never
  content goes: navigation, sidebars, forms, scripts and styles, cookie banners,
  the site's own header and footer, Sphinx-style ¶ permalinks. Links and images
  are made absolute in the tree, where `<base href>` is known.
- **HTML to Markdown** is html-to-markdown (a Rust converter: ~2 ms for a large
  docs page, code blocks byte-exact, GFM tables). It is the `scraper[markdown]`
  extra, imported only when the setting is on.

The tree is changed in place: the parser calls this last, when nothing else
reads the tree.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urljoin, urlsplit

from lxml import etree

from .errors import UsageError

__all__ = ["converter", "page_markdown", "require"]

_MISSING = "[parse] markdown = true needs the html-to-markdown package: pip install 'scraper[markdown]'"


def require() -> None:
    """Raise UsageError, naming the extra to install, when html-to-markdown is missing.

    Checked when a run starts, before any file is touched, without importing it.
    """
    if importlib.util.find_spec("html_to_markdown") is None:
        raise UsageError(_MISSING)


def converter() -> Callable[[str], str]:
    """html-to-markdown's `convert`, set up for content this module has already cleaned."""
    try:
        import html_to_markdown
        from html_to_markdown import ConversionOptions, PreprocessingOptions
    except ImportError:
        raise UsageError(_MISSING) from None
    # the boilerplate is dropped here, on the chosen node; the converter's own cleaning
    # would second-guess it (and it removes things by class names inside the content)
    options = ConversionOptions(
        extract_metadata=False,
        autolinks=False,
        preprocessing=PreprocessingOptions(enabled=False),
    )

    def convert(html: str) -> str:
        return html_to_markdown.convert(html, options).content

    return convert


# never content, wherever they are
_DROP_TAGS = (
    "script", "style", "noscript", "template", "nav", "form", "button", "input", "select",
    "textarea", "iframe", "object", "embed", "dialog", "svg", "canvas", "link", "meta",
)
_DROP_ROLES = frozenset(("navigation", "search", "complementary", "banner", "contentinfo", "dialog", "alertdialog"))
# cookie and consent banners, sidebars: by an id or class token, as sites name them
# ("cookie-banner", "sphinxsidebar", "onetrust-consent-sdk"), but not a layout's
# modifier on a wrapper ("has-sidebar", "no-sidebar"), which may hold everything
_DROP_NAMES = re.compile(r"cookie|consent|gdpr|sidebar|skip-?link", re.I)
_MODIFIER = re.compile(r"^(?:has|with|no|without|show|hide)[-_]", re.I)
# an <aside> (or a "sidebar") outside these is the site's (inside, the text's: a footnote,
# a pull quote); so is a <header>/<footer>, when no main content was found
_SECTIONING = frozenset(("article", "section"))
_PERMALINK_TEXT = frozenset(("¶", "§", "#", "🔗"))
# What marks boilerplate by an attribute, as it reads in lxml's serialization (lower-cased).
# Most pages' content has none of them: a substring test over the HTML (0.1 ms) spares
# them a Python walk over every element (3 ms on a large docs page).
_MARKS = ("cookie", "consent", "gdpr", "sidebar", "skip", "hidden")
_ROLE_MARKS = tuple(f'role="{r}"' for r in sorted(_DROP_ROLES))


def page_markdown(root: Any, final_url: str, convert: Callable[[str], str]) -> str:
    """The main content of a parsed page (an lxml root) as Markdown, links absolute."""
    body = root.find("body")
    node = _main(root)
    if node is None:
        if body is None:  # only a <head>: no content
            return ""
        node = body
    whole_body = node is body
    for el in list(node.iter(*_DROP_TAGS, "aside", "header", "footer", etree.PI, etree.Comment)):
        if _boilerplate(el, node, whole_body):
            _drop(el)
    for el in [a for a in node.iter("a") if _permalink(a)]:
        _drop(el)
    for pre in node.iter("pre"):
        _plain(pre)
    _absolute(node, _base(root, final_url), final_url.split("#", 1)[0])
    html = _serialize(node)
    lowered = html.lower()
    if any(mark in lowered for mark in _MARKS) or ('role="' in lowered and any(r in lowered for r in _ROLE_MARKS)):
        for el in [el for el in node.iterdescendants() if _boilerplate(el, node, whole_body)]:
            _drop(el)
        html = _serialize(node)
    markdown = convert(html).strip("\n")
    return markdown + "\n" if markdown else ""


def _main(root: Any) -> Any | None:
    """`<main>`, else `[role=main]`, else the only `<article>`; None when none of them.

    Plain walks, not XPath: libxml2's XPath costs ~2 ms on a large page, a walk by
    tag name almost nothing, and the `[role=main]` walk stops at the first.
    """
    for el in root.iter("main"):
        if not _hidden(el):
            return el
    for el in root.iter():
        if el.get("role") == "main" and not _hidden(el):
            return el
    articles = [el for el in root.iter("article") if not _hidden(el)]
    return articles[0] if len(articles) == 1 else None


def _hidden(el: Any) -> bool:
    return el.get("hidden") is not None or el.get("aria-hidden") == "true"


def _base(root: Any, final_url: str) -> str:
    base_el = root.find(".//base[@href]")
    if base_el is not None:
        joined = urljoin(final_url, base_el.get("href").strip())
        if urlsplit(joined).scheme in ("http", "https"):
            return joined
    return final_url


def _boilerplate(el: Any, node: Any, whole_body: bool) -> bool:
    tag = el.tag
    if not isinstance(tag, str) or tag in _DROP_TAGS or el.get("role") in _DROP_ROLES or _hidden(el):
        return True
    named = _named(el.get("id")) or _named(el.get("class"))
    if named == "banner":
        return True
    if tag == "aside" or named == "sidebar":
        return not _in_section(el, node)
    if tag in ("header", "footer"):
        return whole_body and not _in_section(el, node)
    return False


def _named(names: str | None) -> str | None:
    """"banner" or "sidebar" when an id or class token names one, else None."""
    if not names or not _DROP_NAMES.search(names):
        return None
    for name in names.split():
        m = _DROP_NAMES.search(name)
        if m and not _MODIFIER.match(name):
            return "sidebar" if m.group().lower() == "sidebar" else "banner"
    return None


def _in_section(el: Any, top: Any) -> bool:
    parent = el.getparent()
    while parent is not None and parent is not top:
        if parent.tag in _SECTIONING:
            return True
        parent = parent.getparent()
    return False


def _permalink(a: Any) -> bool:
    """A heading's permalink marker: Sphinx's `<a class="headerlink">¶</a>` and its kin."""
    if "headerlink" in (a.get("class") or ""):
        return True
    if not (a.get("href") or "").startswith("#") or len(a) > 1 or len(a.text or "") > 3:
        return False
    return "".join(a.itertext()).strip() in _PERMALINK_TEXT


def _plain(pre: Any) -> None:
    """Keep only a code block's text: a link or emphasis inside it would become Markdown
    syntax in the fence. A `<code>` stays, for its language class."""
    inner = {el.tag for el in pre.iterdescendants() if el.tag != "code"}
    if inner:
        etree.strip_tags(pre, *inner)


def _drop(el: Any) -> None:
    """Remove an element but keep the text that follows it."""
    parent = el.getparent()
    if parent is None:
        return
    if el.tail:
        prev = el.getprevious()
        if prev is not None:
            prev.tail = (prev.tail or "") + el.tail
        else:
            parent.text = (parent.text or "") + el.tail
    parent.remove(el)


def _absolute(node: Any, base: str, page: str) -> None:
    """Resolve every link and image target; an in-page `#anchor` goes to this page."""
    joined: dict[str, str] = {}  # a page links the same few documents many times
    for el in node.iter("a", "area", "img", "source"):
        attr = "src" if el.tag in ("img", "source") else "href"
        value = el.get(attr)
        if not value:
            continue
        value = value.strip()
        if value.startswith("#"):  # in-page: this page, not <base href>
            el.set(attr, page + value)
            continue
        if value.startswith(("https://", "http://")):
            continue
        if value[:11].lower() == "javascript:":  # a script, not a target: the link's text stays
            del el.attrib[attr]
            continue
        path, hashmark, fragment = value.partition("#")
        target = joined.get(path)
        if target is None:
            try:
                target = joined[path] = urljoin(base, path)
            except ValueError:  # a malformed URL stays as written
                continue
        el.set(attr, target + hashmark + fragment)


def _serialize(node: Any) -> str:
    return etree.tostring(node, method="html", encoding="unicode", with_tail=False)
