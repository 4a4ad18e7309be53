"""The short ways through `normalize`, `join` and `link_host` give what the general ones give.

Plain URLs and references are normalised and resolved with a few string operations
(scraper/urls.py); everything else goes through yarl and urllib. These tests build
URLs and references from pieces that sit on both sides of every condition of the
short way (case, ports, dot segments, escapes, params, empty queries, IDNA and IPv4
hosts, network-path references, schemes) and check each against the general result.
"""

from __future__ import annotations

import random
from urllib.parse import urljoin

import pytest
from yarl import URL

from scraper.urls import _join_plain, _normalize, _plain, join, link_host, normalize

SCHEMES = ["http", "https", "HTTP", "Https", "ftp", ""]
HOSTS = ["example.com", "Example.COM", "a..b", "-a.b", "a_b.c", "ex.com.", "1.2.3.4", "01.2.3.4", "127.1", "[::1]",
         "xn--e1afmkfd.xn--p1ai", "пример.рф", "h", "", ".", "user@h", "u:p@h.com", "a.b-", "256.1.1.1"]
PORTS = ["", ":80", ":443", ":8080", ":080", ":0", ":65535", ":65536", ":99999", ":", ":1"]
SEGMENTS = ["a", "b.html", ".", "..", "", ".hidden", "%7e", "%2F", "caf%c3%a9", "café", "a b", "a;b", "a:b", "a@b",
            "~x", "A", "(x)", "x+y", "*", "'", "!", "a%", "%zz", "\\", "a|b", "^", "`", "{}", "[x]", '"']
QUERIES = [None, "", "a=1", "a=1&b=2", "q=%2f", "q=a b", "x?y", "a=/b:c", "é=1", "a==b", ";", "#"]
FRAGMENTS = [None, "", "top", "a b", "x?y#z", "é", "/x"]

# what most links on real pages look like: the short way's side of each condition
PLAIN_SCHEMES = ["http", "https"]
PLAIN_HOSTS = ["example.com", "1.2.3.4", "a..b", "ex.com.", "xn--e1afmkfd.xn--p1ai", "-a.b"]
PLAIN_PORTS = ["", ":8080", ":80", ":65536", ":1"]
PLAIN_SEGMENTS = ["a", "b.html", ".", "..", "", ".hidden", "~x", "(x)", "a:b", "a@b", "*"]
PLAIN_QUERIES = [None, None, "a=1", "x?y", "", "a=/b:c", ";"]
PLAIN_FRAGMENTS = [None, None, "top", "", "x?y#z", "/x"]


class Pieces:
    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def pick(self, pool: list, plain: list) -> object:
        return self.rng.choice(plain if self.rng.random() < 0.7 else pool)

    def path(self, absolute: bool = True) -> str:
        p = "/".join(self.pick(SEGMENTS, PLAIN_SEGMENTS) for _ in range(self.rng.randint(0, 4)))  # type: ignore[misc]
        return "/" + p if absolute and self.rng.random() < 0.95 else p

    def tail(self) -> str:
        q, f = self.pick(QUERIES, PLAIN_QUERIES), self.pick(FRAGMENTS, PLAIN_FRAGMENTS)
        return ("" if q is None else f"?{q}") + ("" if f is None else f"#{f}")

    def url(self) -> str:
        u = (f"{self.pick(SCHEMES, PLAIN_SCHEMES)}://{self.pick(HOSTS, PLAIN_HOSTS)}{self.pick(PORTS, PLAIN_PORTS)}"
             f"{self.path()}{self.tail()}")
        return " " + u if self.rng.random() < 0.05 else u

    def reference(self) -> str:
        r = self.rng.random()
        if r < 0.1:
            return self.url()
        if r < 0.15:
            return "//" + self.rng.choice(HOSTS) + self.path()
        ref = self.path(absolute=self.rng.random() < 0.3) + self.tail()
        if self.rng.random() < 0.05:
            ref = self.rng.choice(["mailto:", "javascript:", "a:", " ", "\t", "\n"]) + ref
        return ref


def _outcome(fn, *args):  # a value, or the error it raised
    try:
        return fn(*args)
    except ValueError as e:
        return f"ValueError: {e}"


@pytest.mark.parametrize("seed", range(4))
def test_normalize_short_way_matches_the_general_one(seed):
    pieces, short = Pieces(seed), 0
    for _ in range(5000):
        url = pieces.url()
        short += _plain(url) is not None
        assert normalize(url) == _normalize(url), url
    assert short > 300  # the short way was taken, many times


@pytest.mark.parametrize("seed", range(4))
def test_join_short_way_matches_urljoin(seed):
    pieces, short = Pieces(100 + seed), 0
    for _ in range(5000):
        base, ref = pieces.url().strip(), pieces.reference()
        short += _join_plain(base, ref.strip()) is not None
        assert _outcome(join, base, ref) == _outcome(urljoin, base, ref.strip()), (base, ref)
    assert short > 300


@pytest.mark.parametrize("seed", range(2))
def test_link_host_is_yarls_host(seed):
    pieces = Pieces(200 + seed)
    for _ in range(5000):
        link = normalize(pieces.url())
        if link is not None:
            assert link_host(link) == (URL(link).host or ""), link


@pytest.mark.parametrize(
    ("base", "ref", "joined"),
    [
        ("http://h.test/d/p.html", "x.html", "http://h.test/d/x.html"),
        ("http://h.test/d/p.html", "./x.html#f", "http://h.test/d/x.html#f"),
        ("http://h.test/d/e/p.html?q=1", "../../../x", "http://h.test/x"),
        ("http://h.test/d/p.html", "a//b/.", "http://h.test/d/a/b/"),
        ("http://h.test/d/p.html", "/a//b/..", "http://h.test/a//"),
        ("http://h.test:8/d/", "x?y=1&z", "http://h.test:8/d/x?y=1&z"),
        ("http://h.test", "x", "http://h.test/x"),
    ],
)
def test_join_examples(base, ref, joined):
    assert join(base, ref) == joined == urljoin(base, ref)


def test_plain_links_are_their_own_normal_form():
    assert normalize("http://h.test:8080/a/b.html?x=1&y=/z#top") == "http://h.test:8080/a/b.html?x=1&y=/z"
    assert normalize("http://h.test:80/a") == "http://h.test/a"  # a default port: the general way drops it
    assert normalize("http://h.test/a/./b") == "http://h.test/a/b"
    assert link_host("http://xn--e1afmkfd.xn--p1ai/") == "пример.рф"  # as yarl gives it, decoded


def _resolved(base: str, ref: str) -> str | None:
    return normalize(join(base, ref))


@pytest.mark.parametrize("seed", range(2))
def test_every_plain_anchor_of_a_page_is_the_page(seed):
    """The parse workers resolve "#anchor" once per page (parse._PLAIN_FRAGMENT): any plain anchor gives that."""
    from scraper.parse import _PLAIN_FRAGMENT

    pieces = Pieces(300 + seed)
    for _ in range(3000):
        base = pieces.url().strip()
        anchor = "#" + "".join(pieces.rng.choice("aZ9-._~!$&'()*+,;=:@/?") for _ in range(pieces.rng.randint(0, 6)))
        assert _PLAIN_FRAGMENT.fullmatch(anchor)
        assert _outcome(_resolved, base, anchor) == _outcome(_resolved, base, "#"), base
