"""Bytes -> record fields. Runs in the parse worker processes; imports little.

The fast path is lxml alone: title, description, links and `[parse.fields]`
(CSS selectors compiled to XPath, see fields.py) come straight from libxml2's
tree (~0.7 ms for a 30 KB page). A BeautifulSoup tree costs ten times that, so
one is built only for an `extract` function. Pages arrive as bytes and leave
as a small frozen `Parsed`, so little crosses the process boundary, and what
comes back is typed the same way from every path (a page, a sitemap, a failure).
"""

from __future__ import annotations

import gzip
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from lxml import etree
from yarl import URL

from .fields import FieldReader, Selection
from .page import Page, PageError
from .urls import LinkFilter, join, link_host, normalize

if TYPE_CHECKING:
    from .config import FieldSpec

__all__ = ["Extract", "ParseJob", "Parsed", "Parser", "decode", "is_html", "parse_failure"]

#: `extract(soup, page) -> dict`: the user's own fields, merged into `page.fields`
Extract = Callable[[Any, Page], dict]


@dataclass(frozen=True, slots=True)
class ParseJob:
    """One fetched page to parse: what the worker needs and nothing more."""

    final_url: str
    content_type: str  # the whole Content-Type header, charset included
    body: bytes
    follow: bool  # whether the crawl may follow this page's links
    sitemap: bool  # a seed that looks like a sitemap: expand it
    page: Page | None = None  # only when an `extract` function wants it
    #: the crawl this page belongs to, when its `follow` may leave out the links this worker
    #: already gave back in it (see `Parsed.follow`); None: every followed link, every time
    run: int | None = None


@dataclass(frozen=True, slots=True)
class Parsed:
    """What parsing one page gives back to the main process."""

    title: str | None = None
    description: str | None = None
    links: list[str] = field(default_factory=list)
    #: indices into `links` of those the crawl follows; with `ParseJob.run`, less those this
    #: worker already gave back in that run (the engine has added them to its frontier then)
    follow: list[int] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    #: the visible text, with `[parse] text`
    text: str | None = None
    #: the main content as Markdown, with `[parse] markdown`
    markdown: str | None = None
    #: a sitemap: `links` are its URLs, which are seeds of the crawl
    seeds: bool = False
    #: the parse (or `extract`) failed: the record's error
    error: PageError | None = None


_HTML_TYPES = ("text/html", "application/xhtml+xml")


# WHATWG MIME sniffing: what an HTML document without a Content-Type may start with
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<script", b"<iframe", b"<h1", b"<div", b"<font",
                b"<table", b"<a", b"<style", b"<title", b"<b", b"<body", b"<br", b"<p")
_TAG_ENDS = (b" ", b">", b"\t", b"\n", b"\r", b"\x0c")


def is_html(media_type: str | None, body: bytes) -> bool:
    """Whether a body is HTML: by its media type, or by sniffing when it has none."""
    if media_type:
        return media_type in _HTML_TYPES
    head = body[:512].lstrip(b"\t\n\x0c\r ").lower()
    if head.startswith(b"<!--"):
        return True
    # a tag name must end there: "<a " or "<a>" is HTML, "<abc>" or "<bogus" is not
    return any(head.startswith(tag) and head[len(tag):len(tag) + 1] in _TAG_ENDS for tag in _HTML_STARTS)


# --- decoding (WHATWG order) -------------------------------------------------


def decode(body: bytes, content_type: str | None) -> str:
    """Decode an HTML body as browsers do: BOM, then Content-Type charset, then <meta>, then detection.

    w3lib does the BOM, the labels (with browsers' aliases and supersets:
    `iso-8859-1` is cp1252, Shift_JIS is cp932 with NEC's characters) and the
    decoding. The <meta> prescan is ours on two points where w3lib differs from
    browsers (tests/test_decoding.py): only the first 1024 bytes are looked at,
    and a <meta> naming UTF-16 means UTF-8 (it was read as ASCII). Without any
    declaration: UTF-8 when the body is valid UTF-8, else cp1252.
    """
    from w3lib.encoding import html_body_declared_encoding, http_content_type_encoding, read_bom, to_unicode

    bom_encoding, bom = read_bom(body)
    if bom_encoding is not None:
        return to_unicode(body[len(bom):], bom_encoding)
    encoding = http_content_type_encoding(content_type) if content_type else None
    if encoding is None:
        encoding = html_body_declared_encoding(body[:1024])
        if encoding is not None and encoding.replace("_", "-").startswith("utf-16"):
            encoding = "utf-8"
    if encoding is not None:
        return to_unicode(body, encoding)
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return to_unicode(body, "cp1252")


# --- the worker --------------------------------------------------------------

_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_END_TAGS = re.compile(r"</(?:html|body)\s*>", re.I)  # libxml2 drops what follows them; browsers keep it
_ASCII_SPACE = re.compile(r"[ \t\n\r\f]+")  # what browsers collapse in a title
_SPACE = re.compile(r"\s+")


class Parser:
    """What the parse processes do; sent to each of them once (see `pool`)."""

    def __init__(
        self,
        fields: dict[str, FieldSpec] | dict[str, Selection],
        text: bool,
        extract: Extract | None,
        link_filter: LinkFilter,
        markdown: bool = False,
    ) -> None:
        self.fields = {name: Selection.of(spec) for name, spec in fields.items()}  # plain tuples: see Selection
        self.text = text
        self.markdown = markdown
        self._to_markdown: Callable[[str], str] | None = None  # html-to-markdown, loaded in the worker
        self.extract = extract
        self.link_filter = link_filter
        self.needs_soup = extract is not None  # fields are read from the lxml tree
        self._html_parser: etree.HTMLParser | None = None  # made in the worker: it does not pickle
        self._field_reader: FieldReader | None = None  # compiled selectors, made in the worker too
        self._run: int | None = None  # the crawl `_reported` belongs to
        self._reported: set[str] = set()  # links given back as followed in that crawl

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_html_parser"] = None
        state["_field_reader"] = None
        state["_to_markdown"] = None
        state["_run"], state["_reported"] = None, set()
        return state

    def parse(self, job: ParseJob) -> Parsed:
        """The record fields of one page: title, description, links (and those followed), fields, text."""
        try:
            if job.sitemap:
                urls = sitemap_urls(job.body)
                if urls is not None:
                    return Parsed(links=urls, seeds=True)
            return Parsed(**self._parse_html(job))
        except Exception as e:  # a bug or a pathological page must not lose the record
            return parse_failure(f"{type(e).__name__}: {e}"[:300])

    def _parse_html(self, job: ParseJob) -> dict[str, Any]:
        """`Parsed`'s values, gathered by the readers below."""
        text = decode(job.body, job.content_type)
        text = _XML_DECL.sub("", text, count=1)
        text = _END_TAGS.sub("", text)
        out: dict[str, Any] = {"title": None, "description": None, "links": [], "follow": [], "fields": {}}
        if self._html_parser is None:
            # comments stay: removing them would merge the text around them, which
            # [parse.fields] must see as separate strings, as BeautifulSoup does
            self._html_parser = etree.HTMLParser(recover=True)
        root = etree.fromstring(text, self._html_parser) if text.strip() else None
        if root is not None:
            self._read_head(root, out)
            self._read_links(root, job, out)
        if self.fields:
            if self._field_reader is None:
                self._field_reader = FieldReader(self.fields)
            out["fields"] = self._field_reader.read(root)
        if self.needs_soup:
            from bs4 import BeautifulSoup

            soup = BeautifulSoup(text, "lxml")
            if self.extract is not None:
                page = job.page or Page(url=job.final_url, final_url=job.final_url)
                page.title, page.description = out["title"], out["description"]
                page.links, page.fields = out["links"], dict(out["fields"])
                try:
                    extra = self.extract(soup, page)
                except Exception as e:
                    out["error"] = PageError("parse", f"extract raised {type(e).__name__}: {e}"[:300])
                    extra = None
                if extra is not None and not isinstance(extra, dict):
                    out["error"] = PageError("parse", f"extract returned {type(extra).__name__}, not dict")
                elif extra:
                    out["fields"].update(extra)
        if self.text:
            out["text"] = visible_text(root) if root is not None else ""
        if self.markdown:  # last: it prunes the tree
            out["markdown"] = self._markdown(root, job.final_url)
        return out

    def _markdown(self, root: Any, final_url: str) -> str:
        from .markdown import converter, page_markdown

        if root is None:
            return ""
        if self._to_markdown is None:
            self._to_markdown = converter()
        return page_markdown(root, final_url, self._to_markdown)

    @staticmethod
    def _read_head(root: Any, out: dict[str, Any]) -> None:
        title = root.find(".//title")
        if title is not None:
            out["title"] = _ASCII_SPACE.sub(" ", "".join(title.itertext())).strip(" \t\n\r\f")
        for meta in root.iter("meta"):
            if (meta.get("name") or "").strip().lower() == "description":
                content = meta.get("content")
                if content is not None:
                    out["description"] = _SPACE.sub(" ", content).strip()
                    break

    def _read_links(self, root: Any, job: ParseJob, out: dict[str, Any]) -> None:
        """The page's links, resolved and normalised, each once, and the indices of those followed.

        Per link this is a look-up in the worker's cache of resolved links and a
        check of the crawl's filter. In a crawl (`job.run`), a link this worker gave
        back as followed earlier in the same run is not given back again: the
        engine added it to its frontier then, where it is seen now, so the main
        process, the busier one, does not check it again. Each worker remembers
        what it gave back, so a link found by two workers still comes back twice,
        and the frontier's seen set stays what decides.
        """
        base_text = job.final_url  # normalised already: it keeps its escapes
        base_el = _BASE(root)
        if base_el:
            try:
                joined_text = join(base_text, base_el[0])
                joined = URL(joined_text)
                if joined.scheme in ("http", "https") and joined.host:
                    base_text = joined_text
            except (ValueError, TypeError, UnicodeError):
                pass
        page_host = link_host(job.final_url)
        directory = _directory(base_text)
        seen: set[str] = set()
        links: list[str] = out["links"]
        follow: list[int] = out["follow"]
        resolved = _RESOLVED
        follows = self.link_filter.follows if job.follow else None
        reported = None
        if job.run is not None:
            if self._run != job.run or len(self._reported) >= _REPORTED_MAX:
                self._run, self._reported = job.run, set()
            reported = self._reported
        for raw in _HREFS(root):
            # whitespace, "?" or "#" first: resolved against the whole base (see `_directory`);
            # "#anchor" is the page itself, whatever the anchor: one resolution for all of them
            if raw and raw[0] == "#" and _PLAIN_FRAGMENT.fullmatch(raw):
                key = (base_text, "#")
            else:
                key = (base_text if not raw or raw[0] in "?#" or raw[0].isspace() else directory, raw)
            hit = resolved.get(key)
            if hit is None:
                if len(resolved) >= _RESOLVED_MAX:
                    resolved.clear()
                hit = resolved[key] = _resolve(base_text, _HREF_WS.sub("", raw.strip()))
            link, host = hit
            if link is None or link in seen:
                continue
            seen.add(link)
            if follows is not None and follows(link, host, page_host):
                if reported is None:
                    follow.append(len(links))
                elif link not in reported:
                    reported.add(link)
                    follow.append(len(links))
            links.append(link)


#: hrefs of <a> and <area>, in document order; <base href>: plain strings, no lxml "smart" ones
_HREFS = etree.XPath("//a/@href | //area/@href", smart_strings=False)
_BASE = etree.XPath("(//base[@href])[1]/@href", smart_strings=False)
_HREF_WS = re.compile(r"[\t\n\r]")
#: a fragment-only reference whose anchor cannot change how the URL parses (what `urls.normalize` drops)
_PLAIN_FRAGMENT = re.compile(r"#[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*")
# (base directory, href as written) -> (normalised URL, host). A site's pages repeat the same
# links (menus, footers, pagination): resolving and normalising a plain one costs a few us
# (an unusual one ~20 us in yarl), a look-up well under 1. Bounded: cleared when full.
_RESOLVED: dict[tuple[str, str], tuple[str | None, str]] = {}
_RESOLVED_MAX = 50_000
#: links a worker remembers having given back in one crawl; past this it starts afresh
_REPORTED_MAX = 200_000


def _directory(base: str) -> str:
    """What resolving a reference with a path depends on: `base` up to its path's last "/".

    Scheme, authority and the path's directory; not the last segment, the query or
    the fragment. A reference that is empty or starts with "?" or "#" depends on
    all of `base` (the cache keys it so). A base without a path is its root.
    """
    end = len(base)
    for c in "?#":
        i = base.find(c, 0, end)
        if i >= 0:
            end = i
    slash = base.rfind("/", 0, end)
    authority = base.find("//") + 2
    if slash < authority:
        return base[:end] + "/"
    return base[: slash + 1]


def _resolve(base: str, href: str) -> tuple[str | None, str]:
    """The normalised absolute URL of an href (whitespace already removed), and its host."""
    try:
        link = normalize(join(base, href))
        return link, link_host(link) if link is not None else ""
    except (ValueError, TypeError, UnicodeError):
        return None, ""


_INVISIBLE = ("script", "style", "noscript", "template", "head", "title")


def visible_text(root: Any) -> str:
    body = root.find(".//body")
    node = body if body is not None else root
    parts: list[str] = []

    def walk(el: Any) -> None:
        if isinstance(el.tag, str) and el.tag in _INVISIBLE:
            return
        if el.text and isinstance(el.tag, str):
            parts.append(el.text)
        for child in el:
            walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(node)
    return _SPACE.sub(" ", " ".join(parts)).strip()


def sitemap_urls(body: bytes) -> list[str] | None:
    """The `<loc>` URLs of a sitemap or sitemap index (gzipped or not); None when not one."""
    if body[:2] == b"\x1f\x8b":
        try:
            # capped like any body: a sitemap may hold 50,000 URLs, about 10 MB
            body = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(body, 64 * 1024 * 1024)
        except (zlib.error, gzip.BadGzipFile):
            return None
    try:
        parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=True)
        root = etree.fromstring(body, parser)
    except etree.XMLSyntaxError:
        return None
    if root is None or etree.QName(root).localname not in ("urlset", "sitemapindex"):
        return None
    urls: list[str] = []
    seen: set[str] = set()
    for loc in root.iter("{*}loc"):
        url = normalize((loc.text or "").strip())
        if url and url not in seen:
            seen.add(url)
            urls.append(url)
    return urls


def parse_failure(message: str) -> Parsed:
    """The result of a page whose parsing failed (in `Parser.parse`, or a worker that died)."""
    return Parsed(error=PageError("parse", message))
