"""robots.txt (RFC 9309) per origin, parsed by protego and kept for the run.

An origin is (scheme, host, port): one host name on two ports has two
robots.txt. Each is fetched once, through the same limits and retries as a
page; concurrent pages of a new origin wait on that one fetch.

What a response means: 2xx, the rules (first 500 KiB); 4xx, or a redirect
chain longer than 5, everything allowed; 5xx, everything disallowed; no
response at all (dns, connect, tls, timeout), the origin's pages are not
requested and carry that error kind.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections import OrderedDict
from dataclasses import dataclass

from protego import Protego
from yarl import URL

from .fetch import Fetcher
from .limits import Limiter
from .page import PageError

__all__ = ["MAX_CRAWL_DELAY", "RobotsCache"]

MAX_ROBOTS_BYTES = 500 * 1024
MAX_CRAWL_DELAY = 30.0


@dataclass(frozen=True, slots=True)
class _Verdict:
    text: bytes | None = None  # robots.txt, zlib-compressed; None with no error: everything allowed
    error: PageError | None = None  # every URL of the origin gets this


class RobotsCache:
    """Every origin's verdict for the whole run; parsed rules for the most recent origins.

    A parsed robots.txt costs ~3.5 KB even when small, so a crawl over a
    million origins keeps each one's text compressed (~200 bytes) and only the
    `parsed` most recently used origins parsed; an origin that falls out is
    parsed again from its text, never fetched again.
    """

    def __init__(self, fetcher: Fetcher, limiter: Limiter, user_agent: str, parsed: int = 1024) -> None:
        self._fetcher = fetcher
        self._limiter = limiter
        self._token = product_token(user_agent)
        self._origins: dict[str, asyncio.Future[_Verdict]] = {}
        self._parsed: OrderedDict[str, Protego] = OrderedDict()
        self._parsed_max = parsed

    async def check(self, url: str, *, allow_private: bool) -> PageError | None:
        """None when `url` may be fetched, else the error its record carries."""
        u = URL(url)
        origin = _origin_key(u)
        future = self._origins.get(origin)
        if future is None:
            future = self._origins[origin] = asyncio.get_running_loop().create_future()
            try:
                verdict = await self._load(u, allow_private)
            except BaseException:
                del self._origins[origin]  # cancelled mid-fetch: let the next page try again
                future.cancel()
                raise
            future.set_result(verdict)
        verdict = await asyncio.shield(future)
        if verdict.error is not None:
            return verdict.error
        if verdict.text is not None and not self._rules(origin, verdict.text).can_fetch(url, self._token):
            return PageError("robots", f"disallowed by {origin_url(u)}robots.txt")
        return None

    def _rules(self, origin: str, text: bytes) -> Protego:
        rules = self._parsed.get(origin)
        if rules is None:
            robots_txt = exact_groups(zlib.decompress(text).decode("utf-8", "replace"), self._token)
            rules = self._parsed[origin] = Protego.parse(robots_txt)
            if len(self._parsed) > self._parsed_max:
                self._parsed.popitem(last=False)
        else:
            self._parsed.move_to_end(origin)
        return rules

    async def _load(self, u: URL, allow_private: bool) -> _Verdict:
        robots_url = f"{origin_url(u)}robots.txt"
        result = await self._fetcher.fetch(
            robots_url, allow_private=allow_private, max_redirects=5, max_bytes=MAX_ROBOTS_BYTES, truncate=True
        )
        if result.error is None and result.body is not None:
            text = zlib.compress(result.body)
            rules = self._rules(_origin_key(u), text)
            delay = rules.crawl_delay(self._token)
            if delay:
                self._limiter.raise_delay(u.host or "", min(float(delay), MAX_CRAWL_DELAY))
            return _Verdict(text=text)
        kind = result.error.kind if result.error else "http"
        if kind == "http" and result.status is not None and result.status >= 500:
            return _Verdict(error=PageError("robots", f"{robots_url} answered {result.status}: all disallowed"))
        if kind in ("dns", "connect", "tls", "timeout", "protocol"):
            message = f"robots.txt unreachable ({robots_url}): {result.error.message}"  # type: ignore[union-attr]
            return _Verdict(error=PageError(kind, message))
        return _Verdict()  # 4xx, too many redirects, blocked: treated as no robots.txt


def product_token(user_agent: str) -> str:
    """RFC 9309 matches the product token: "scraper/0.1 (+https://...)" -> "scraper"."""
    words = user_agent.split("/", 1)[0].split()
    return words[0] if words else "*"  # "" or "/1.0" has none: only the * group applies


_UA_LINE = re.compile(r"^([ \t]*user-agent[ \t]*:[ \t]*)([^\r\n#]*)", re.I | re.M)


def exact_groups(robots_txt: str, token: str) -> str:
    """Keep only the `User-agent` lines that name our product token exactly (or `*`).

    RFC 9309 matches the whole product token, case-insensitively; protego would
    also let `User-agent: scrap` match `scraper`. The other lines get a prefix
    that matches nothing, so their groups stay groups but never apply to us.
    """
    wanted = token.lower()

    def mark(m: re.Match[str]) -> str:
        value = m.group(2).strip()
        if value == "*" or value.lower() == wanted:
            return m.group(0)
        return f"{m.group(1)}~{value}"

    return _UA_LINE.sub(mark, robots_txt)


def _origin_key(u: URL) -> str:
    return f"{u.scheme}://{u.host}:{u.port}"


def origin_url(u: URL) -> str:
    return str(u.origin()) + "/"
