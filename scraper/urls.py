"""URL normalisation, fingerprints and the link filters of `[crawl]`.

Normalisation is yarl's (lower-cased scheme and host, default port dropped,
dot segments resolved, percent-escapes upper-cased, unreserved characters
unescaped) plus two rules of our own: an empty path becomes `/`, and the
fragment is dropped. Path case and query order are kept.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable

from yarl import URL

__all__ = ["MAX_URL_LENGTH", "LinkFilter", "fingerprint", "host_key", "is_sitemap_url", "normalize"]

#: Links longer than this are skipped: a common crawler trap.
MAX_URL_LENGTH = 2048



def normalize(url: str | URL) -> str | None:
    """The normalised form of an absolute http(s) URL, or None when it is not one."""
    try:
        u = url if isinstance(url, URL) else URL(url.strip())
        if u.scheme not in ("http", "https") or not u.host:
            return None
        if u.fragment or u.raw_fragment:
            u = u.with_fragment(None)
        text = str(u)
    except (ValueError, TypeError, UnicodeError):
        return None
    head, sep, tail = text.partition("?")
    if head.count("/") == 2:  # "http://a" or "http://a?q": yarl keeps it so; the normal form has a path
        text = head + "/" + sep + tail
    return text


def fingerprint(url: str) -> int:
    """A 64-bit fingerprint of a normalised URL: what the seen set stores.

    Eight bytes instead of the whole string keep the seen set at a fixed size
    per URL; a collision is about 1 in 10**7 at a billion URLs.
    """
    return int.from_bytes(hashlib.blake2b(url.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "big")


def host_key(url: str) -> str:
    """The host name that per-host limits apply to (port and scheme ignored)."""
    try:
        return URL(url).host or ""
    except ValueError:
        return ""


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
