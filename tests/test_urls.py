"""URL normalisation and link filters."""

from __future__ import annotations

import pytest

from scraper.urls import LinkFilter, fingerprint, normalize


@pytest.mark.parametrize(
    ("raw", "normal"),
    [
        ("HTTP://Example.COM", "http://example.com/"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("http://example.com/a/./b/../c", "http://example.com/a/c"),
        ("http://example.com/a#frag", "http://example.com/a"),
        ("http://example.com/%7euser/%2f", "http://example.com/~user/%2F"),
        ("http://example.com/caf%c3%a9", "http://example.com/caf%C3%A9"),
        ("http://example.com/Path/CASE", "http://example.com/Path/CASE"),
        ("http://example.com/?b=2&a=1", "http://example.com/?b=2&a=1"),
        ("http://example.com?q=1", "http://example.com/?q=1"),
        ("  http://example.com/x  ", "http://example.com/x"),
    ],
)
def test_normalize(raw, normal):
    assert normalize(raw) == normal


@pytest.mark.parametrize("raw", ["ftp://example.com/", "mailto:a@b.c", "javascript:void(0)", "http://", "example.com",
                                 "http://exa mple.com:99999/", ""])
def test_not_http_urls_are_none(raw):
    assert normalize(raw) is None


def test_two_spellings_one_fingerprint():
    a = normalize("HTTP://Example.com:80/a/../b#x")
    b = normalize("http://example.com/b")
    assert a == b
    assert fingerprint(a) == fingerprint(b)
    assert fingerprint(a) != fingerprint(normalize("http://example.com/c"))


def test_link_filter():
    f = LinkFilter(same_host=True, allow=[r"/docs/"], deny=[r"\.pdf$", r"logout"])
    assert f.follows("http://a.com/docs/x", "a.com", "a.com")
    assert not f.follows("http://b.com/docs/x", "b.com", "a.com")  # other host
    assert not f.follows("http://a.com/blog/x", "a.com", "a.com")  # not allowed
    assert not f.follows("http://a.com/docs/x.pdf", "a.com", "a.com")  # denied
    assert not f.follows("http://a.com/docs/" + "x" * 2100, "a.com", "a.com")  # overlong
    loose = LinkFilter(same_host=False, allow=[], deny=[])
    assert loose.follows("http://b.com/", "b.com", "a.com")
