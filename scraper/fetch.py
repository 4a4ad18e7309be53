"""One request: limits, redirects, caps, retries and the mapping of failures to error kinds.

Retry policy (tenacity): a status in `[retry].statuses`, a connection error,
a timeout or a `protocol` error is tried again, up to `attempts` tries in
all. The wait doubles from `backoff` with jitter, capped at `max_backoff`; a
server's `Retry-After` (seconds or an HTTP date) replaces it, under the same
cap. Other 4xx, `too_large`, `tls`, `blocked` and redirect loops are final:
trying again would only repeat them. A URL waiting out its backoff holds no
slot of any kind.

Every attempt follows redirects by hand, so that each hop is checked (only
http and https; no hop from a public host to a private address; robots.txt,
through the caller's `hop_check`) and each hop counts against its own host's limits.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from hashlib import sha256

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.resolver import DefaultResolver
from tenacity import AsyncRetrying, RetryCallState, retry_if_result, stop_after_attempt, wait_exponential, wait_random
from yarl import URL

from .config import Config
from .limits import Limiter
from .page import PageError, now_iso
from .urls import join, normalize

__all__ = ["BlockedAddressError", "ExchangeHook", "FetchResult", "Fetcher", "PublicOnlyResolver", "is_public_address"]

_REDIRECTS = frozenset((301, 302, 303, 307, 308))
_RETRYABLE_KINDS = frozenset(("dns", "connect", "timeout", "protocol"))
_CHUNK = 64 * 1024
_CONDITIONAL = frozenset(("If-None-Match", "If-Modified-Since"))


@dataclass(slots=True)
class FetchResult:
    """What came of fetching one URL (all attempts, all redirect hops)."""

    url: str
    final_url: str | None = None
    status: int | None = None
    ok: bool = False
    content_type: str | None = None  # the whole header, parameters included
    body: bytes | None = None
    size: int = 0
    attempts: int = 0
    elapsed_ms: int = 0
    fetched_at: str = ""
    error: PageError | None = None
    retry_after: float | None = None
    peer_private: bool = False  # the final hop connected to a non-public address
    etag: str | None = None  # the final response's ETag header, as sent
    last_modified: str | None = None  # the final response's Last-Modified header, as sent
    head: aiohttp.ClientResponse | None = field(default=None, repr=False)  # this hop's response, for `on_exchange`
    headers: Mapping[str, str] | None = None  # the final response's headers (a rendering browser gets them)

    @property
    def content_hash(self) -> str | None:
        """"sha256:" + the hex digest of the decoded body; None when no body was kept."""
        if self.body is None:
            return None
        return "sha256:" + sha256(self.body).hexdigest()

    @property
    def media_type(self) -> str | None:
        if not self.content_type:
            return None
        return self.content_type.split(";", 1)[0].strip().lower() or None


class BlockedAddressError(Exception):
    """A host resolved only to addresses the crawl may not connect to."""


def is_public_address(address: str) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


class PublicOnlyResolver(AbstractResolver):
    """Drops non-public addresses, so that DNS cannot point a public name at 127.0.0.1.

    The check is on the addresses the connector will actually connect to, not on
    an earlier lookup that the DNS server could answer differently. `inner`
    answers the queries (aiohttp's default resolver unless given); `is_public`
    says which addresses are public.
    """

    def __init__(
        self, inner: AbstractResolver | None = None, is_public: Callable[[str], bool] = is_public_address
    ) -> None:
        self._inner = inner if inner is not None else DefaultResolver()
        self._is_public = is_public

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        public = [r for r in results if self._is_public(r["host"])]
        if results and not public:
            raise BlockedAddressError(f"{host} resolves to a non-public address ({results[0]['host']})")
        return public

    async def close(self) -> None:
        await self._inner.close()


#: Asked before a redirect hop is requested: None to go on, else the error that ends the fetch
#: (robots.txt disallows the target, or cannot be had). robots.txt's own fetch has none.
HopCheck = Callable[[str], Awaitable[PageError | None]]

#: Called after every request that got a response head (each attempt, each redirect hop,
#: robots.txt too) with that response, its body read or abandoned, and the hop's result.
ExchangeHook = Callable[[aiohttp.ClientResponse, FetchResult], None]


class Fetcher:
    """Fetches URLs under the crawl's limits; one per run, around two shared sessions.

    One session may connect anywhere (for seeds on loopback or private
    addresses and the links found from them); the other refuses non-public
    addresses at connect time.

    The network seam: `resolver()` makes each session's DNS resolver (aiohttp's
    default unless given) and `is_public` says which addresses count as public
    (`is_public_address` unless given). Tests hand in a resolver that answers from
    a table, or a loopback address that plays a public host; nothing is patched.
    """

    def __init__(
        self,
        config: Config,
        limiter: Limiter,
        *,
        on_exchange: ExchangeHook | None = None,
        resolver: Callable[[], AbstractResolver] | None = None,
        is_public: Callable[[str], bool] = is_public_address,
    ) -> None:
        self.config = config
        self._resolver = resolver
        self._is_public = is_public
        self.limiter = limiter
        self.on_exchange = on_exchange  # the archive's hook ([output] warc)
        f = config.fetch
        self._timeout = aiohttp.ClientTimeout(total=f.timeout, connect=f.connect_timeout)
        self._headers = {"User-Agent": f.user_agent, **f.headers}
        self._ssl: bool | ssl.SSLContext = bool(f.verify_tls)
        self._proxy = f.proxy or None
        self._sessions: dict[bool, aiohttp.ClientSession] = {}
        self._private_hosts: dict[str, bool] = {}

    async def __aenter__(self) -> Fetcher:
        for allow_private in (True, False):
            connector = aiohttp.TCPConnector(
                limit=0,  # the Limiter caps requests in flight; a second cap here would only hide bugs
                ssl=self._ssl,
                # through a proxy, the proxy resolves page hosts and ours is only looked up for
                # the proxy itself, which may well be on localhost: literal addresses are still checked
                resolver=self._make_resolver(public_only=not allow_private and not self._proxy),
                ttl_dns_cache=300,
            )
            self._sessions[allow_private] = aiohttp.ClientSession(
                connector=connector,
                headers=self._headers,
                timeout=self._timeout,
                cookie_jar=aiohttp.DummyCookieJar(),
                auto_decompress=True,
            )
        return self

    def _make_resolver(self, public_only: bool) -> AbstractResolver | None:
        inner = self._resolver() if self._resolver is not None else None
        if not public_only:
            return inner  # None: aiohttp's default
        return PublicOnlyResolver(inner, self._is_public)

    async def __aexit__(self, *exc: object) -> None:
        for session in self._sessions.values():
            await session.close()

    async def is_private_host(self, host: str) -> bool:
        """Whether a seed's host is a loopback, private or link-local address (or resolves to one)."""
        cached = self._private_hosts.get(host)
        if cached is not None:
            return cached
        try:
            ipaddress.ip_address(host)
            private = not self._is_public(host)
        except ValueError:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(host, None, type=socket.SOCK_STREAM)
                private = any(not self._is_public(str(info[4][0])) for info in infos)
            except OSError:
                private = False
        if len(self._private_hosts) >= 100_000:
            self._private_hosts.clear()  # a crawl of many hosts: forget, ask the resolver again
        self._private_hosts[host] = private
        return private

    async def fetch(
        self,
        url: str,
        *,
        allow_private: bool,
        max_redirects: int | None = None,
        max_bytes: int | None = None,
        truncate: bool = False,
        headers: Mapping[str, str] | None = None,
        headers_at: str | None = None,
        hop_check: HopCheck | None = None,
    ) -> FetchResult:
        """Fetch `url` with retries. Never raises for a network or HTTP failure: see `.error`.

        `headers` go on the request to `headers_at` (default: `url`) only, not on the
        other redirect hops: a recrawl's validators belong to the URL that answered
        last time. A 304 to a request they made conditional is a success, with no body.
        """
        r = self.config.retry
        attempts = 0

        async def attempt() -> FetchResult:
            nonlocal attempts
            attempts += 1
            return await self._attempt(
                url,
                allow_private=allow_private,
                max_redirects=self.config.fetch.max_redirects if max_redirects is None else max_redirects,
                max_bytes=self.config.fetch.max_bytes if max_bytes is None else max_bytes,
                truncate=truncate,
                headers=headers,
                headers_at=url if headers_at is None else headers_at,
                hop_check=hop_check,
            )

        result = await attempt()
        if r.attempts > 1 and self._retryable(result):
            # The policy takes over from the first try, which counts as its attempt 1. That
            # first try runs without it: most URLs need one, and tenacity's bookkeeping costs
            # about 170 us of CPU a fetch, against ~250 us for a whole fetch from a fast local site.
            made = [result]

            async def replay_then_attempt() -> FetchResult:
                return made.pop() if made else await attempt()

            result = await self._retrying()(replay_then_attempt)
        result.attempts = attempts
        if result.error is not None and result.error.kind == "blocked" and result.status is None and attempts == 1:
            # refused before anything was sent: the record of a URL never requested (SPEC 5)
            result.attempts, result.final_url, result.elapsed_ms = 0, None, 0
        return result

    def _retrying(self) -> AsyncRetrying:
        """The retry policy: `attempts` tries in all, the wait doubling from `backoff` with jitter, capped."""
        r = self.config.retry
        backoff = wait_exponential(multiplier=r.backoff, max=r.max_backoff) + wait_random(0, r.backoff)

        def wait(state: RetryCallState) -> float:
            return _wait(state.outcome.result(), backoff(state), r.max_backoff)  # type: ignore[union-attr]

        return AsyncRetrying(
            stop=stop_after_attempt(r.attempts),
            wait=wait,
            retry=retry_if_result(self._retryable),
            retry_error_callback=lambda state: state.outcome.result(),  # type: ignore[union-attr]
        )

    def _retryable(self, result: FetchResult) -> bool:
        if result.error is None:
            return False
        if result.error.kind == "http":
            return result.status in self.config.retry.statuses
        return result.error.kind in _RETRYABLE_KINDS

    async def _attempt(
        self,
        url: str,
        *,
        allow_private: bool,
        max_redirects: int,
        max_bytes: int,
        truncate: bool,
        headers: Mapping[str, str] | None = None,
        headers_at: str | None = None,
        hop_check: HopCheck | None = None,
    ) -> FetchResult:
        result = FetchResult(url=url)
        current = url
        started = time.monotonic()
        try:
            for hop in range(max_redirects + 1):
                target = URL(current, encoded=True)  # normalised already: sent as it is (`%2F` stays)
                host = target.host or ""
                if not allow_private and _is_ip(host) and not self._is_public(host):
                    result.final_url = current
                    return _fail(result, "blocked", f"refused to connect to non-public address {host}")
                if hop and hop_check is not None and (refused := await hop_check(current)) is not None:
                    result.final_url = current  # never requested; `status` stays the redirect's
                    return _fail(result, refused.kind, f"redirect to {current[:200]}: {refused.message}")
                extra = headers if current == headers_at else None
                location = await self._hop(result, current, target, host, allow_private, max_bytes, truncate, extra)
                head, result.head = result.head, None
                if head is not None and self.on_exchange is not None:
                    self.on_exchange(head, result)
                if location is None:
                    return result
                nxt = _redirect_target(current, location)
                if nxt is None:
                    return _fail(result, "blocked", f"redirect to a non-http(s) URL refused: {location[:200]}")
                if hop == max_redirects:
                    break
                current = nxt
            return _fail(result, "too_many_redirects", f"more than {max_redirects} redirects")
        finally:
            result.elapsed_ms = int((time.monotonic() - started) * 1000)
            result.fetched_at = now_iso()

    async def _hop(
        self,
        result: FetchResult,
        url: str,
        target: URL,
        host: str,
        allow_private: bool,
        max_bytes: int,
        truncate: bool,
        headers: Mapping[str, str] | None = None,
    ) -> str | None:
        """One request. Returns the Location to follow, or None when `result` is final."""
        session = self._sessions[allow_private]
        result.final_url = url
        # status and content_type stay those of the last response that came (a
        # redirect's) until this hop's arrives: SPEC 5 `status`
        got_head = False
        result.body = None
        result.size = 0
        result.error = None
        result.retry_after = None
        result.ok = False
        async with self.limiter.request(host):
            try:
                async with asyncio.timeout(self.config.fetch.timeout + 1):  # a guard over aiohttp's own
                    async with session.get(target, allow_redirects=False, proxy=self._proxy, headers=headers) as resp:
                        got_head = True
                        result.head = resp
                        result.status = resp.status
                        result.content_type = resp.headers.get("Content-Type")
                        result.etag = resp.headers.get("ETag")
                        result.last_modified = resp.headers.get("Last-Modified")
                        result.headers = resp.headers
                        if resp.status in _REDIRECTS and "Location" in resp.headers:
                            return resp.headers["Location"]
                        if resp.status == 304 and headers and _CONDITIONAL.intersection(headers):
                            result.ok = True  # not modified since the validators sent: success, no body
                            return None
                        ok = 200 <= resp.status < 300
                        if not ok:
                            result.retry_after = _retry_after(resp.headers.get("Retry-After"))
                            _fail(result, "http", f"HTTP {resp.status}")
                            return None
                        declared = resp.content_length
                        if declared is not None and declared > max_bytes and not truncate:
                            _fail(result, "too_large", f"Content-Length {declared} exceeds max_bytes {max_bytes}")
                            return None
                        body = await _read_capped(resp, max_bytes, truncate)
                        if body is None:
                            _fail(result, "too_large", f"body exceeds max_bytes {max_bytes}")
                            return None
                        result.body = body
                        result.size = len(body)
                        result.ok = ok
                        return None
            except BlockedAddressError as e:
                _fail(result, "blocked", str(e))
            except aiohttp.ClientConnectorDNSError as e:
                _fail(result, "dns", f"cannot resolve {host}: {_reason(e)}")
            except (aiohttp.ClientConnectorCertificateError, aiohttp.ClientSSLError, ssl.SSLError) as e:
                _fail(result, "tls", f"TLS failure with {host}: {_reason(e)}")
            except (TimeoutError, aiohttp.ServerTimeoutError) as e:
                what = "connecting" if isinstance(e, aiohttp.ConnectionTimeoutError) else "request"
                _fail(result, "timeout", f"{what} timed out after {self._limit_for(e)} s")
            except aiohttp.ClientConnectorError as e:
                _fail(result, "connect", f"cannot connect to {host}: {_reason(e)}")
            except (aiohttp.ClientPayloadError, HttpProcessingError) as e:
                # HttpProcessingError: aiohttp's pure-Python parser raises it as is for a broken body
                _fail(result, "protocol", f"broken response body: {_reason(e)}")
            except aiohttp.ServerDisconnectedError:
                if not got_head:
                    _fail(result, "connect", f"{host} closed the connection without a response")
                else:
                    _fail(result, "protocol", "connection closed before the body was complete")
            except aiohttp.ClientResponseError as e:  # the parser rejected the response head
                _fail(result, "protocol", f"malformed response: {e.message}"[:300])
            except (aiohttp.InvalidURL, ValueError) as e:
                _fail(result, "protocol", f"unusable URL: {e}"[:300])
            except (aiohttp.ClientOSError, OSError) as e:
                if not got_head:
                    _fail(result, "connect", f"connection to {host} failed: {_reason(e)}")
                else:
                    _fail(result, "protocol", f"connection failed while reading: {_reason(e)}")
            except aiohttp.ClientError as e:
                _fail(result, "protocol", f"{type(e).__name__}: {e}"[:300])
        return None

    def _limit_for(self, e: BaseException) -> float:
        if isinstance(e, aiohttp.ConnectionTimeoutError):
            return self.config.fetch.connect_timeout
        return self.config.fetch.timeout


async def _read_capped(resp: aiohttp.ClientResponse, max_bytes: int, truncate: bool) -> bytes | None:
    """The decoded body, or None when it passes `max_bytes` (cut to `max_bytes` when `truncate`)."""
    chunks: list[bytes] = []
    size = 0
    with _fail_body_on_disconnect(resp):
        async for chunk in resp.content.iter_chunked(_CHUNK):
            size += len(chunk)
            if size > max_bytes:
                if truncate:
                    chunks.append(chunk[: len(chunk) - (size - max_bytes)])
                    break
                return None
            chunks.append(chunk)
    return b"".join(chunks)


@contextmanager
def _fail_body_on_disconnect(resp: aiohttp.ClientResponse) -> Iterator[None]:
    """Fail the body stream if the connection goes before the body is complete.

    aiohttp's C parser, on broken chunking after the head, closes the connection
    but drops the body stream without failing it: the read would wait for the
    timeout and the error would pass for a `timeout`, not a `protocol` error.
    """
    conn = resp.connection
    protocol = conn.protocol if conn is not None else None  # None: the body is all in already

    def lost(_: object = None) -> None:
        if not resp.content.is_eof() and resp.content.exception() is None:
            resp.content.set_exception(aiohttp.ClientPayloadError("connection closed before the body was complete"))

    closed = protocol.closed if protocol is not None else None
    if protocol is not None and closed is None:  # lost already
        lost()
    if closed is None:
        yield
        return
    # asking for `closed` creates it, and makes its failure ours to read: exactly one reader per connection
    closed.remove_done_callback(_read_failure)
    closed.add_done_callback(_read_failure)
    closed.add_done_callback(lost)
    try:
        yield
    finally:
        closed.remove_done_callback(lost)  # a kept-alive connection must not collect callbacks


def _read_failure(closed: asyncio.Future[None]) -> None:
    """Mark a lost connection's error read: a reset kept-alive connection is no error of ours."""
    if not closed.cancelled():
        closed.exception()


def _fail(result: FetchResult, kind: str, message: str) -> FetchResult:
    result.ok = False
    result.error = PageError(kind, " ".join(message.split()))  # parser errors span lines: a record's is one
    result.body = None
    result.size = 0
    return result


def _reason(e: BaseException) -> str:
    inner = getattr(e, "os_error", None) or e.__cause__ or e
    text = getattr(inner, "strerror", None) or str(inner) or type(inner).__name__
    return str(text)[:200]


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


def _wait(result: FetchResult, backoff: float, max_backoff: float) -> float:
    """Seconds before the next try: the server's Retry-After when it sent one, else `backoff`; capped."""
    if result.retry_after is not None:
        return min(result.retry_after, max_backoff)
    return min(backoff, max_backoff)


def _redirect_target(current: str, location: str) -> str | None:
    try:
        return normalize(join(current, location))
    except (ValueError, TypeError, UnicodeError):
        return None


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header: delta-seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - time.time())

