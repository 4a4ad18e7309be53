"""Resolved links are cached per worker by (base directory, href): the cache never mixes pages up."""

from __future__ import annotations

from scraper.parse import ParseJob, Parser
from scraper.urls import LinkFilter

BODY = ('<a href="x.html">1</a><a href="/r">2</a><a href="?q=1">3</a><a href="#f">4</a><a href="">5</a>'
        '<a href="../u">6</a>')


def links(url: str, body: str = BODY) -> list[str]:
    parser = Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()))
    out = parser.parse(ParseJob(final_url=url, content_type="text/html", body=body.encode(), follow=True,
                                sitemap=False))
    return out.links


def test_same_hrefs_on_other_pages_resolve_against_each_page():
    for _ in range(2):  # the second round is answered from the cache
        assert links("http://a.test/d/p.html") == [
            "http://a.test/d/x.html", "http://a.test/r", "http://a.test/d/p.html?q=1", "http://a.test/d/p.html",
            "http://a.test/u",
        ]
        assert links("http://a.test/d/other.html?z=2") == [
            "http://a.test/d/x.html", "http://a.test/r", "http://a.test/d/other.html?q=1",
            "http://a.test/d/other.html?z=2", "http://a.test/u",
        ]
        assert links("http://b.test/e/f/p.html") == [
            "http://b.test/e/f/x.html", "http://b.test/r", "http://b.test/e/f/p.html?q=1", "http://b.test/e/f/p.html",
            "http://b.test/e/u",
        ]
        assert links("https://a.test") == [
            "https://a.test/x.html", "https://a.test/r", "https://a.test/?q=1", "https://a.test/", "https://a.test/u",
        ]
        assert links("http://a.test/d/p.html", '<base href="http://c.test/k/">' + BODY) == [
            "http://c.test/k/x.html", "http://c.test/r", "http://c.test/k/?q=1", "http://c.test/k/", "http://c.test/u",
        ]
