"""URL normalisation, fingerprints and the link filters of `[crawl]`.

Normalisation is yarl's (lower-cased scheme and host, default port dropped,
dot segments resolved, percent-escapes upper-cased, unreserved characters
unescaped) plus rules of our own: an empty path becomes `/`, the fragment is
dropped, and in the path and the query alike an escape of a reserved character
(`%2F`, `%3F`, `%26`, `%3D`, `%40`, `%2C`, ...) stays escaped, upper-cased (yarl
would turn `y=%2f` into `y=/` and `/a%2Cb` into `/a,b`: to a server, other URLs).
Path case and query order are kept.

A URL object has been through yarl already, so its path and query may have lost
an escape: give `normalize` the text as found, and resolve a reference against
its page with `urllib.parse.urljoin`, which works on the text (`join`).

Most URLs a crawl meets are plain: a lower-case http(s) scheme, an ASCII host
name or IPv4 address, a path and query of characters that need no escape and no
dot segment. For those, normalising is the identity (less the fragment) and
resolving a reference is a few string operations, about 1 µs where yarl and
urllib take 5 to 20 (a parse worker resolves every distinct link of every page).
`normalize`, `join` and `link_host` take that short way when it applies and the
general one otherwise; tests/test_urls_fast.py checks that both give the same
result on every kind of URL and reference.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from urllib.parse import quote, urljoin, urlsplit

from yarl import URL

__all__ = [
    "MAX_URL_LENGTH", "LinkFilter", "fingerprint", "host_key", "is_sitemap_url", "join", "link_host", "normalize",
    "raw_query",
]

#: Links longer than this are skipped: a common crawler trap.
MAX_URL_LENGTH = 2048



_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
#: what yarl leaves as it is in a query
_QUERY_SAFE = _UNRESERVED | frozenset("!$&'()*+,;=:@/?")
#: what a path may hold unescaped (RFC 3986 pchar and "/")
_PATH_SAFE_CHARS = "!$&'()*+,;=:@/"
_PATH_SAFE = _UNRESERVED | frozenset(_PATH_SAFE_CHARS)
_ESCAPE = re.compile(r"%([0-9A-Fa-f]{2})")


def raw_query(text: str) -> str | None:
    """The query of a URL or reference as written (None: it has no `?`)."""
    before_fragment = text.strip().split("#", 1)[0]
    if "?" not in before_fragment:
        return None
    return before_fragment.split("?", 1)[1]


def _normal_query(raw: str) -> str:
    """`raw` with escapes upper-cased, unreserved ones unescaped, reserved ones kept; the rest as yarl quotes it."""
    return _normal_escapes(raw, _quoted_run)


def _normal_escapes(raw: str, quote_run: Callable[[str], str]) -> str:
    parts: list[str] = []
    pos = 0
    for m in _ESCAPE.finditer(raw):
        parts.append(quote_run(raw[pos:m.start()]))
        char = chr(int(m.group(1), 16))
        parts.append(char if char in _UNRESERVED else "%" + m.group(1).upper())
        pos = m.end()
    parts.append(quote_run(raw[pos:]))
    return "".join(parts)


def _quoted_path_run(run: str) -> str:
    if all(c in _PATH_SAFE for c in run):
        return run
    return quote(run, safe=_PATH_SAFE_CHARS)


def _normal_path(raw: str) -> str:
    """A path as written, its escapes normalised as in the query, its dot segments resolved."""
    plain = "%" not in raw and all(c in _PATH_SAFE for c in raw)
    path = raw if plain else _normal_escapes(raw, _quoted_path_run)
    if not path.startswith("/"):
        path = "/" + path
    if "/." in path:
        # yarl resolves the dot segments; every escape goes through it as "%25..", which it keeps as it is
        path = URL("http://h" + path.replace("%", "%25")).raw_path.replace("%25", "%")
    return path


def join(base: str, reference: str) -> str:
    """`reference` resolved against `base` (RFC 3986), on the text: escapes stay as written.

    Exactly `urllib.parse.urljoin`'s result; a plain base and a plain relative
    reference (`_join_plain`) are resolved without it.
    """
    reference = reference.strip()
    joined = _join_plain(base, reference)
    return joined if joined is not None else urljoin(base, reference)


#: a base URL `_join_plain` can take apart on its own: `http(s)://netloc` and a path without params
_PLAIN_BASE = re.compile(r"(https?://[A-Za-z0-9.\-]+(?::[0-9]*)?)(/[A-Za-z0-9\-._~!$&'()*+,=:@/%]*)?(?:[?#]|$)")
#: a relative reference of path characters (no ":" that could make a scheme, no ";" params,
#: no escapes), then an optional non-empty query and fragment of plain characters
_PLAIN_REF = re.compile(
    r"([A-Za-z0-9\-._~!$&'()*+,=@/]+)(?:\?([A-Za-z0-9\-._~!$&'()*+,;=:@/?]+))?(?:#([A-Za-z0-9\-._~!$&'()*+,;=:@/?]*))?"
)


def _join_plain(base: str, reference: str) -> str | None:
    """`urljoin(base, reference)` for a plain base and a plain path reference; None for any other.

    The steps are urljoin's own (RFC 3986 5.2, with its one liberty: empty segments
    of a relative path are dropped), on the parts the two expressions above found.
    """
    ref = _PLAIN_REF.fullmatch(reference)
    if ref is None:
        return None
    path = ref.group(1)
    if path.startswith("//"):  # a network-path reference: another host
        return None
    b = _PLAIN_BASE.match(base)
    if b is None:
        return None
    if path[0] == "/":
        segments = path.split("/")
    else:
        base_parts = (b.group(2) or "").split("/")
        if base_parts[-1] != "":
            del base_parts[-1]
        segments = base_parts + path.split("/")
        segments[1:-1] = filter(None, segments[1:-1])
    resolved: list[str] = []
    for seg in segments:
        if seg == "..":
            if resolved:
                resolved.pop()
        elif seg != ".":
            resolved.append(seg)
    if segments[-1] in (".", ".."):
        resolved.append("")
    joined = "/".join(resolved) or "/"
    if joined[0] != "/":
        joined = "/" + joined
    query, fragment = ref.group(2), ref.group(3)
    return b.group(1) + joined + ("?" + query if query else "") + ("#" + fragment if fragment else "")


def _quoted_run(run: str) -> str:
    if all(c in _QUERY_SAFE for c in run):
        return run
    return str(URL("http://h/?" + run)).split("?", 1)[1]  # yarl's quoting, the same as for a whole URL


#: a URL already in normal form but for its fragment: a lower-case scheme, an ASCII host name or
#: IPv4 address, a port without a leading zero, a path (no dot segment, no "//": checked after)
#: and a non-empty query of characters that need no escape, an optional fragment of such characters
_PLAIN_URL = re.compile(
    r"(https?)://([a-z0-9.\-]+)(?::([1-9][0-9]{0,4}))?(/[A-Za-z0-9\-._~!$&'()*+,;=:@/]*)"
    r"(?:\?[A-Za-z0-9\-._~!$&'()*+,;=:@/?]+)?(?:#[A-Za-z0-9\-._~!$&'()*+,;=:@/?]*)?"
)
_DEFAULT_PORTS = {"http": "80", "https": "443"}
#: characters no host name holds (WHATWG's forbidden host code points that yarl lets through): "exa mple.com"
_BAD_HOST = re.compile(r"[\x00-\x20\x7f<>^|\\\"`{}%]")


def _plain(url: str) -> re.Match[str] | None:
    """The match of `url` when it is plain (its normal form is itself, less the fragment), else None."""
    m = _PLAIN_URL.fullmatch(url)
    if m is None:
        return None
    port = m.group(3)
    if port is not None and (int(port) > 65535 or port == _DEFAULT_PORTS[m.group(1)]):
        return None
    path = m.group(4)
    if "/." in path or "//" in path:
        return None
    return m


def normalize(url: str | URL, *, query: str | None = None) -> str | None:
    """The normalised form of an absolute http(s) URL, or None when it is not one.

    Give the URL as text: a URL object has lost the escapes yarl decodes (then
    `query` is its query as written, and the path is yarl's). A plain URL
    (`_plain`) is its own normal form, less the fragment.
    """
    if type(url) is str and _plain(url) is not None:
        return url if "#" not in url else url[: url.index("#")]
    return _normalize(url, query=query)


def _normalize(url: str | URL, *, query: str | None = None) -> str | None:
    """`normalize` by the general rules, for any URL."""
    path: str | None = None
    try:
        if isinstance(url, URL):
            u = url
        else:
            url = url.strip()
            u = URL(url)
            query = raw_query(url)
            path = urlsplit(url).path
        if u.scheme not in ("http", "https") or not u.host or _BAD_HOST.search(u.host):
            return None
        if u.fragment or u.raw_fragment:
            u = u.with_fragment(None)
        text = str(u)
    except (ValueError, TypeError, UnicodeError):
        return None
    head, sep, tail = text.partition("?")
    if query is not None and sep:
        tail = _normal_query(query)
    if path is not None:
        yarl_path = u.raw_path
        if yarl_path and head.endswith(yarl_path):
            head = head[: len(head) - len(yarl_path)]
        elif head.count("/") > 2:
            head = head[: head.index("/", head.index("//") + 2)]
        head += _normal_path(path)
    elif head.count("/") == 2:  # "http://a" or "http://a?q": yarl keeps it so; the normal form has a path
        head += "/"
    return head + sep + tail


def fingerprint(url: str) -> int:
    """A 64-bit fingerprint of a normalised URL: what the seen set stores.

    Eight bytes instead of the whole string keep the seen set at a fixed size
    per URL; a collision is about 1 in 10**7 at a billion URLs.
    """
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def link_host(url: str) -> str:
    """The host of a normalised URL, as yarl's `URL(url).host` gives it (an IDNA name decoded)."""
    m = _plain(url)
    if m is not None and "xn--" not in m.group(2):
        return m.group(2)
    try:
        return URL(url).host or ""
    except ValueError:
        return ""


def host_key(url: str) -> str:
    """The host name that per-host limits apply to (port and scheme ignored): yarl's `URL(url).host`."""
    return link_host(url)


class LinkFilter:
    """Decides which discovered links a crawl follows (`same_host`, `allow`, `deny`, length)."""

    def __init__(self, same_host: bool, allow: Iterable[str], deny: Iterable[str]) -> None:
        self.same_host = same_host
        # compiled once, here: nothing is compiled per link
        self._allow = tuple(re.compile(p) for p in allow)
        self._deny = tuple(re.compile(p) for p in deny)

    def follows(self, link: str, link_host: str, page_host: str) -> bool:
        """Whether a crawl follows `link` (on `link_host`) found on a page of `page_host`."""
        if len(link) > MAX_URL_LENGTH:
            return False
        if self.same_host and link_host != page_host:
            return False
        if self._allow and not any(p.search(link) for p in self._allow):
            return False
        return not any(p.search(link) for p in self._deny)


def is_sitemap_url(url: str) -> bool:
    """A seed whose URL names a sitemap is expanded into its URLs."""
    name = url.rsplit("?", 1)[0].rsplit("/", 1)[-1].lower()
    return "sitemap" in name and name.endswith((".xml", ".xml.gz"))
