"""A page's links: document order, references keyed by what they depend on, and a crawl's repeats."""

from __future__ import annotations

from scraper.parse import ParseJob, Parser
from scraper.urls import LinkFilter


def parser() -> Parser:
    return Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ()))


def job(url: str, body: str, run: int | None = None, follow: bool = True) -> ParseJob:
    return ParseJob(final_url=url, content_type="text/html", body=body.encode(), follow=follow, sitemap=False, run=run)


def test_links_of_a_and_area_in_document_order():
    body = ('<map><area href="m1"></map><p><a href="a1"><b>x</b></a></p><area href="m2"><a href="a2">y</a>'
            '<a name="no-href">z</a><a href="">self</a>')
    out = parser().parse(job("http://a.test/d/p.html", body))
    assert out.links == ["http://a.test/d/m1", "http://a.test/d/a1", "http://a.test/d/m2", "http://a.test/d/a2",
                         "http://a.test/d/p.html"]


def test_references_with_leading_whitespace_resolve_against_each_page():
    p = parser()
    body = '<a href=" ?q=1">1</a><a href="\xa0#f">2</a><a href="\n\tx.html">3</a>'
    for _ in range(2):  # the second round is answered from the cache
        assert p.parse(job("http://a.test/d/p.html", body)).links == [
            "http://a.test/d/p.html?q=1", "http://a.test/d/p.html", "http://a.test/d/x.html"]
        assert p.parse(job("http://a.test/d/o.html?z=2", body)).links == [
            "http://a.test/d/o.html?q=1", "http://a.test/d/o.html?z=2", "http://a.test/d/x.html"]


def test_a_crawl_gets_each_followed_link_from_a_worker_once():
    p = parser()
    a = p.parse(job("http://a.test/a.html", '<a href="x">x</a><a href="y">y</a><a href="http://b.test/">b</a>', run=1))
    assert a.links == ["http://a.test/x", "http://a.test/y", "http://b.test/"]
    assert a.follow == [0, 1]  # b.test is another host
    b = p.parse(job("http://a.test/b.html", '<a href="y">y</a><a href="z">z</a><a href="x">x</a>', run=1))
    assert b.links == ["http://a.test/y", "http://a.test/z", "http://a.test/x"]  # the record keeps every link
    assert b.follow == [1]  # only z is new to this worker in run 1
    # a page whose links are not followed reports none, and remembers none
    c = p.parse(job("http://a.test/c.html", '<a href="w">w</a>', run=1, follow=False))
    assert c.follow == []
    assert p.parse(job("http://a.test/d.html", '<a href="w">w</a><a href="z">z</a>', run=1)).follow == [0]
    # another run starts afresh; without a run every followed link comes back every time
    assert p.parse(job("http://a.test/b.html", '<a href="y">y</a><a href="z">z</a>', run=2)).follow == [0, 1]
    for _ in range(2):
        assert p.parse(job("http://a.test/b.html", '<a href="y">y</a><a href="z">z</a>')).follow == [0, 1]


def test_links_after_the_end_tags_are_kept():
    body = '<html><body><a href="a">a</a></body></html><a href="b">b</a></BODY ></html >'
    assert parser().parse(job("http://a.test/", body)).links == ["http://a.test/a", "http://a.test/b"]
