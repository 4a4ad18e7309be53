"""Parsing: title, description, links, fields, text, extract; run in-process here."""

from __future__ import annotations

from scraper.config import FieldSpec
from scraper.page import Page
from scraper.parse import ParseJob, Parser, decode, is_html, sitemap_urls
from scraper.urls import LinkFilter


def parser(fields=None, text=False, extract=None, same_host=True, allow=(), deny=()):
    return Parser(fields=fields or {}, text=text, extract=extract,
                  link_filter=LinkFilter(same_host, allow, deny))


def job(body, url="http://site.test/dir/page.html", content_type="text/html; charset=utf-8", follow=True):
    if isinstance(body, str):
        body = body.encode("utf-8")
    return ParseJob(final_url=url, content_type=content_type, body=body, follow=follow, sitemap=False)


PAGE = """<!doctype html><html><head>
<title>  The
 Title </title>
<meta name="Description" content=" A page. ">
</head><body>
<a href="/abs">1</a>
<a href="rel.html">2</a>
<a href="./dot.html#frag">3</a>
<a href="../up.html">4</a>
<a href="rel.html">dup</a>
<a href="#top">self</a>
<a href="mailto:x@y.z">mail</a>
<a href="javascript:void(0)">js</a>
<a href="HTTP://OTHER.test:80/x">other</a>
<map><area href="/area"></map>
<a>no href</a>
<script>var x = "<a href='/in-script'>";</script>
<p class="price"> 12 <b>EUR</b> </p>
<img src="/a.png"><img src="/b.png"><img>
</body></html>"""


def test_title_description_links_in_document_order():
    out = parser().parse(job(PAGE))
    assert out.title == "The Title"
    assert out.description == "A page."
    assert out.links == [
        "http://site.test/abs",
        "http://site.test/dir/rel.html",
        "http://site.test/dir/dot.html",
        "http://site.test/up.html",
        "http://site.test/dir/page.html",
        "http://other.test/x",
        "http://site.test/area",
    ]
    # same_host: every link but other.test is followed
    followed = [out.links[i] for i in out.follow]
    assert "http://other.test/x" not in followed and len(followed) == 6
    assert out.fields == {}
    assert out.text is None


def test_base_href_is_used_for_resolution():
    out = parser().parse(job('<html><head><base href="http://cdn.test/base/"></head>'
                             '<body><a href="x.html">x</a></body></html>'))
    assert out.links == ["http://cdn.test/base/x.html"]


def test_absent_title_and_description_are_none():
    out = parser().parse(job("<html><body><p>hi</p></body></html>"))
    assert out.title is None and out.description is None and out.links == []


def test_empty_body():
    out = parser().parse(job(b""))
    assert out.title is None and out.links == []


def test_fields_text_attr_all_and_missing():
    fields = {
        "price": FieldSpec(selector=".price"),
        "images": FieldSpec(selector="img", attr="src", all=True),
        "first_image": FieldSpec(selector="img", attr="src"),
        "missing": FieldSpec(selector=".nothing"),
        "missing_all": FieldSpec(selector=".nothing", all=True),
        "class": FieldSpec(selector="p", attr="class"),
    }
    out = parser(fields=fields).parse(job(PAGE))
    assert out.fields == {
        "price": "12 EUR",
        "images": ["/a.png", "/b.png"],
        "first_image": "/a.png",
        "missing": None,
        "missing_all": [],
        "class": "price",
    }


def test_visible_text_drops_script_and_style():
    out = parser(text=True).parse(job("<html><head><title>T</title><style>p{}</style></head>"
                                      "<body><p>Hello <b>world</b></p><script>alert(1)</script>"
                                      "<p>again</p></body></html>"))
    assert out.text == "Hello world again"


def extract_h1(soup, page):
    return {"h1": soup.h1.get_text(), "seen_title": page.title, "url": page.url}


def broken_extract(soup, page):
    raise RuntimeError("boom")


def test_extract_is_merged_into_fields():
    p = parser(fields={"price": FieldSpec(selector=".price")}, extract=extract_h1)
    j = job("<html><head><title>T</title></head><body><h1>Head</h1><p class=price>3</p></body></html>")
    out = p.parse(j)
    assert out.fields == {"price": "3", "h1": "Head", "seen_title": "T", "url": j.final_url}


def test_extract_failure_is_a_parse_error_not_a_crash():
    out = parser(extract=broken_extract).parse(job("<html><body><h1>x</h1></body></html>"))
    assert out.error is not None and out.error.kind == "parse" and "boom" in out.error.message
    assert out.links == []


def test_links_not_followed_when_depth_is_reached():
    out = parser().parse(job(PAGE, follow=False))
    assert len(out.links) == 7 and out.follow == []


def test_allow_and_deny_filter_followed_links():
    out = parser(allow=[r"\.html$"], deny=[r"up\.html"]).parse(job(PAGE))
    followed = [out.links[i] for i in out.follow]
    assert followed == ["http://site.test/dir/rel.html", "http://site.test/dir/dot.html",
                        "http://site.test/dir/page.html"]


def test_is_html_by_type_or_sniffing():
    assert is_html("text/html", b"")
    assert is_html("application/xhtml+xml", b"")
    assert not is_html("application/pdf", b"<html>")
    assert is_html(None, b"  <!DOCTYPE html><html>")
    assert not is_html(None, b"%PDF-1.4")


def test_decode_order():
    assert decode("é".encode(), None) == "é"
    assert decode(b"\x93hi\x94", "text/html; charset=iso-8859-1") == "\u201chi\u201d"
    assert decode(b"\xef\xbb\xbfcaf\xc3\xa9", "text/html; charset=windows-1252") == "café"
    assert decode(b'<meta charset="shift_jis">\x82\xa0', None).endswith("\u3042")
    assert decode(b"caf\xe9", None) == "café"  # not UTF-8: windows-1252


def test_sitemap_urls(tmp_path):
    import gzip

    xml = b"""<?xml version="1.0" encoding="UTF-8"?>
<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>http://site.test/a</loc></url><url><loc> http://site.test/b#x </loc></url>
<url><loc>http://site.test/a</loc></url></urlset>"""
    assert sitemap_urls(xml) == ["http://site.test/a", "http://site.test/b"]
    assert sitemap_urls(gzip.compress(xml)) == ["http://site.test/a", "http://site.test/b"]
    index = b"""<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<sitemap><loc>http://site.test/s1.xml</loc></sitemap></sitemapindex>"""
    assert sitemap_urls(index) == ["http://site.test/s1.xml"]
    assert sitemap_urls(b"<html><body>not a sitemap</body></html>") is None


def test_page_to_dict_key_order_and_text_key():
    page = Page(url="http://a/", with_text=False)
    assert list(page.to_dict()) == ["url", "final_url", "status", "ok", "depth", "referrer", "fetched_at",
                                   "elapsed_ms", "attempts", "content_type", "bytes", "title", "description",
                                   "links", "fields",
        "etag", "last_modified", "content_hash", "changed", "error"]
    assert "text" in Page(url="http://a/", with_text=True).to_dict()


def test_links_after_the_closing_html_tag_are_kept():
    out = parser().parse(job('<html><head><title>a\u3000b</title></head><body><a href="/in">in</a></body></html>'
                             '<a href="/after">after</a>'))
    assert out.links == ["http://site.test/in", "http://site.test/after"]
    assert out.title == "a\u3000b"  # only ASCII whitespace is collapsed, as browsers do
