"""Pages that need JavaScript: a headless Chromium, only where needed, under the crawl's rules.

How a page is rendered. Every page is first fetched by the crawl's `Fetcher`, as
any other; a page that `[render] mode` selects (`always`, or `auto` with a `match`
or a script-built shell) is then opened in a browser tab at its final URL. The tab's
own document is served from that fetch, so the server sees one request per page,
and `status`, `final_url` and the header keys are those of the response the tab got
(another one only when a script navigates the tab elsewhere). The DOM after `wait`
goes to the parse processes as the page's body: title, links, fields, text and
Markdown come from it through the same parse path.

How the browser obeys the crawl. Nothing leaves Chromium by itself: every request
it makes is intercepted (Playwright's context routing; service workers are blocked
so none escapes through one) and answered by us, and its own network stack points
at a dead proxy, so a request that slipped past the routing would fail rather than
break a rule. For each request:

* a resource type in `block` is aborted before anything else: never requested;
* robots.txt is asked through the crawl's `RobotsCache`; a disallowed request is
  aborted (robots.txt of a new origin is fetched like any other);
* a GET (scripts, stylesheets, XHR/fetch, frames: nearly everything) is fetched by
  the crawl's own `Fetcher` and the browser is given its answer. So the per-host
  and global slots (`per_host`, `delay`, `concurrency`), the private-address rule
  checked on the address actually connected to, every redirect hop's checks, the
  body cap and the retries all hold, with no second implementation of any of them;
* another method (a POST to an API) cannot go through the GET-only `Fetcher`: it is
  checked against the private-address rule on its host's addresses, then sent by
  Playwright (`route.fetch`, redirects not followed: the browser asks again, routed
  again) while it holds a slot of the crawl's `Limiter`;
* WebSockets are refused.

A refused or failed sub-request is aborted and the page goes on rendering without it.
When the run stops (SIGINT/SIGTERM), the limiter refuses new requests, but a render
under way runs in its page's fetch task, which gets the interrupt's grace, and its
requests are marked (`limits.FINISHING`) as belonging to a page under way: they may
still start, so the page can finish and be recorded within the grace, as a request in
flight can. When the grace runs out the render is cancelled with its task, and the
page is fetched again by a resumed run.

Failures. A render that fails or exceeds `timeout` is retried with the fetch's
policy (`[retry]`: attempts, backoff doubling with jitter, `max_backoff`), then the
page is recorded from its fetched HTML with the error kind `render`. A browser
that crashed is started again for the next try. After `RECYCLE_AFTER` pages a
browser is replaced (the old one closes once its last tab is done), so its memory
stays flat however long the crawl. Each render has a browser context of its own
(cookies and storage do not leak between pages).

Lifetime. Playwright's driver process owns Chromium through a pipe: when the crawl
ends, `close()` stops both; when the main process is killed (even SIGKILL), the
driver sees its stdin close and closes the browser, and Chromium also exits when
its debugging pipe closes, so no browser outlives the run.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

from lxml import etree
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random
from yarl import URL

from .config import Config, RenderConfig
from .errors import UsageError
from .fetch import Fetcher, FetchResult
from .limits import FINISHING, Limiter, LimiterClosed
from .page import PageError
from .parse import decode, visible_text
from .urls import normalize

if TYPE_CHECKING:
    from playwright.async_api import Browser, Playwright, Route

    from .robots import RobotsCache

__all__ = [
    "RECYCLE_AFTER",
    "SHELL_TEXT",
    "RenderFailed",
    "Rendered",
    "Renderer",
    "find_browser",
    "is_shell",
    "require_playwright",
]

#: pages a browser renders before it is replaced by a fresh one
RECYCLE_AFTER = 200
#: a page with scripts and fewer visible characters than this in its body is a script-built shell
SHELL_TEXT = 200

_INSTALL = "pip install 'scraper[browser]'"
# The flags that keep a headless Chromium to the page: no updates, sync, first-run or
# background traffic of its own, no GPU; its own network stack points at a dead proxy.
_ARGS = (
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
    "--proxy-server=http://127.0.0.1:9",
    "--proxy-bypass-list=<-loopback>",
)
# not forwarded from the browser's request: the crawl's own user agent and transport headers apply, and
# the browser is given whole 200s (a fresh context has no cache to revalidate, nor a range to complete)
_DROP_REQUEST = frozenset(("user-agent", "accept-encoding", "host", "connection", "content-length", "keep-alive",
                           "transfer-encoding", "upgrade", "te", "proxy-authorization", "if-none-match",
                           "if-modified-since", "if-match", "if-unmodified-since", "if-range", "range"))
# not passed back to the browser: the body it gets is already decoded and whole
_DROP_RESPONSE = frozenset(("content-encoding", "content-length", "transfer-encoding", "connection", "keep-alive"))
_XML_DECL = re.compile(r"^\s*<\?xml[^>]*\?>")
_SCRIPT = re.compile(rb"<script[\s>]", re.IGNORECASE)


def require_playwright(config: RenderConfig) -> None:
    """Raise UsageError naming the extra when a mode other than "never" has no Playwright."""
    if config.mode == "never":
        return
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        raise UsageError(f'[render] mode = "{config.mode}" needs Playwright: {_INSTALL}') from None


async def find_browser(config: RenderConfig) -> str:
    """The Chromium to run: `[render] executable`, else Playwright's own, else `chromium` on PATH.

    Raises UsageError (exit 2, before any request) when there is none.
    """
    require_playwright(config)
    if config.executable:
        found = shutil.which(config.executable)
        if found is None:
            raise UsageError(f"[render] executable: {config.executable} is not an executable file")
        return found
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        own = p.chromium.executable_path
    if own and os.access(own, os.X_OK):
        return own
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise UsageError("[render] found no Chromium: set [render] executable, or install one "
                     "(apt-get install chromium, or playwright install chromium)")


def is_shell(body: bytes, content_type: str | None) -> bool:
    """Whether an HTML page is a script-built shell: it has scripts, and under SHELL_TEXT
    visible characters in its body (script, style, noscript and template text left out)."""
    if _SCRIPT.search(body) is None:
        return False
    text = _XML_DECL.sub("", decode(body, content_type), count=1)
    if not text.strip():
        return False
    root = etree.fromstring(text, etree.HTMLParser(recover=True, remove_comments=True))
    if root is None or not root.xpath("boolean(//script)"):
        return False
    return len(visible_text(root)) < SHELL_TEXT


@dataclass(slots=True)
class Rendered(FetchResult):
    """A page as the browser left it: `body` is the rendered DOM (UTF-8), the rest is the response's.

    `content_hash` and `media_type` stay those of the response's own body, so a page
    rendered twice compares by what the server sent, not by what its scripts built.
    """

    response_hash: str | None = None
    response_media_type: str | None = None

    @property
    def content_hash(self) -> str | None:
        return self.response_hash

    @property
    def media_type(self) -> str | None:
        return self.response_media_type


class RenderFailed(Exception):
    """One try at rendering a page failed (the browser's error, a crash, the timeout)."""


@dataclass(slots=True)
class _Main:
    """The last response the tab's main frame got: what the record's status and headers say."""

    url: str
    status: int | None
    etag: str | None
    last_modified: str | None


class _Tab:
    """One render's state: its page's fetch, the requests it has under way, how it ended."""

    def __init__(self, result: FetchResult, allow_private: bool) -> None:
        self.result = result
        self.allow_private = allow_private
        self.served_own = False  # the page's own document, served from `result`
        self.main = _Main(result.final_url or result.url, result.status, result.etag, result.last_modified)
        self.tasks: set[asyncio.Task[None]] = set()
        self.refused_by_stop = False  # a request refused because the run is stopping


class _Browser:
    """One Chromium process, its tabs open and the pages it has rendered."""

    def __init__(self, browser: Browser) -> None:
        self.browser = browser
        self.open = 0
        self.used = 0
        self.crashed = False
        browser.on("disconnected", lambda _: setattr(self, "crashed", True))


class Renderer:
    """The pool of browser tabs beside the fetchers: at most `[render] pages` renders at once.

    A render runs in its page's fetch task, so it holds that task's place among the
    fetchers, and its sub-requests take the limiter's slots one by one like fetches;
    it holds no limiter slot while it waits on them, so renders cannot starve each
    other of slots or deadlock.
    """

    def __init__(
        self,
        config: Config,
        fetcher: Fetcher,
        limiter: Limiter,
        robots: RobotsCache | None,
        executable: str,
    ) -> None:
        self.config = config
        self.render = config.render
        self._fetcher = fetcher
        self._limiter = limiter
        self._robots = robots
        self._executable = executable
        self._match = [re.compile(p) for p in self.render.match]
        self._block = frozenset(self.render.block)
        self._slots = asyncio.Semaphore(self.render.pages)
        self._launch_lock = asyncio.Lock()
        self._playwright: Playwright | None = None
        self._current: _Browser | None = None
        self._retired: set[_Browser] = set()
        self._closing: set[asyncio.Task[None]] = set()
        self.renders = 0  # renders tried, all attempts counted
        self.launches = 0  # browsers started

    # --- which pages ----------------------------------------------------------------

    async def wanted(self, url: str, result: FetchResult) -> bool:
        """Whether this fetched HTML page is to be rendered, by `[render] mode` and `match`."""
        mode = self.render.mode
        if mode == "always":
            return True
        if mode != "auto":
            return False
        final = result.final_url or url
        if any(p.search(url) or p.search(final) for p in self._match):
            return True
        # lxml releases the GIL while it parses: a large page does not stall the fetchers
        return await asyncio.to_thread(is_shell, result.body or b"", result.content_type)

    # --- rendering ------------------------------------------------------------------------

    async def visit(self, result: FetchResult, *, allow_private: bool) -> FetchResult:
        """Render a fetched page, retried like a fetch: a `Rendered`, or `result` with a `render` error.

        Raises LimiterClosed when the run stopped under it (the page is fetched again on resume).
        """
        r = self.config.retry
        retrying = AsyncRetrying(
            stop=stop_after_attempt(r.attempts),
            wait=wait_exponential(multiplier=r.backoff, max=r.max_backoff) + wait_random(0, r.backoff),
            retry=retry_if_exception_type(RenderFailed),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    async with self._slots:
                        return await self._render(result, allow_private)
        except RenderFailed as e:
            failed = _copy(result)
            failed.error = PageError("render", " ".join(str(e).split())[:300])
            return failed
        raise AssertionError("unreachable")  # tenacity either returns or re-raises

    async def _render(self, result: FetchResult, allow_private: bool) -> Rendered:
        self.renders += 1
        browser = await self._take_browser()
        tab = _Tab(result, allow_private)
        timeout = self.render.timeout
        context = None
        try:
            async with asyncio.timeout(timeout):
                context = await browser.browser.new_context(service_workers="block")
                context.set_default_timeout(timeout * 1000)
                await context.route("**/*", lambda route: self._route(route, tab))
                await context.route_web_socket("**/*", lambda ws: ws.close())
                page = await context.new_page()
                await page.goto(tab.main.url, wait_until=self.render.wait)  # type: ignore[arg-type]
                dom = await page.content()
                at = page.url
        except TimeoutError:
            if tab.refused_by_stop:
                raise LimiterClosed from None
            raise RenderFailed(f"render timed out after {timeout:g} s") from None
        except LimiterClosed:
            raise
        except Exception as e:  # Playwright's errors, a crashed browser or tab
            if tab.refused_by_stop:
                raise LimiterClosed from None
            if browser.crashed or not browser.browser.is_connected():
                raise RenderFailed("the browser crashed") from None
            raise RenderFailed(_playwright_message(e)) from None
        finally:
            for task in tab.tasks:
                task.cancel()
            if tab.tasks:
                await asyncio.wait(set(tab.tasks), timeout=5)  # each aborts its request first
            if context is not None:
                await self._close_context(context, browser)
            self._give_back(browser)
        if tab.refused_by_stop:
            raise LimiterClosed
        final = normalize(at) if at.startswith(("http://", "https://")) else None
        rendered = Rendered(
            **{f.name: getattr(result, f.name) for f in fields(FetchResult)},
            response_hash=result.content_hash,
            response_media_type=result.media_type,
        )
        rendered.body = dom.encode("utf-8", "surrogatepass")
        rendered.content_type = "text/html; charset=utf-8"
        rendered.headers = None
        rendered.final_url = final or tab.main.url
        rendered.status = tab.main.status
        rendered.etag = tab.main.etag
        rendered.last_modified = tab.main.last_modified
        return rendered

    async def _close_context(self, context: Any, browser: _Browser) -> None:
        try:
            async with asyncio.timeout(5):
                await context.close()
        except Exception:
            # a tab that will not close (a script in an endless loop) takes its browser down with it
            browser.crashed = True

    # --- the browser's requests --------------------------------------------------------

    async def _route(self, route: Route, tab: _Tab) -> None:
        """Answer one request of the browser (see the module docstring), in a task the render can cancel."""
        task = asyncio.create_task(self._answer(route, tab))
        tab.tasks.add(task)
        task.add_done_callback(tab.tasks.discard)
        try:
            await task
        except asyncio.CancelledError:
            if not task.cancelled():
                raise  # the handler itself was cancelled, not just its request

    async def _answer(self, route: Route, tab: _Tab) -> None:
        FINISHING.set(True)  # this task's own context: the page is under way, it gets an interrupt's grace
        request = route.request
        try:
            if request.resource_type in self._block or not request.url.startswith(("http://", "https://")):
                await route.abort("blockedbyclient")
                return
            main = request.is_navigation_request() and request.frame.parent_frame is None
            if main and not tab.served_own and request.method == "GET":
                tab.served_own = True  # the page's own document: the crawl fetched it already
                await _fulfil(route, tab.result)
                return
            url = normalize(request.url) or request.url
            if self._robots is not None:
                refusal = await self._robots.check(url, allow_private=tab.allow_private)
                if refusal is not None:
                    await route.abort("blockedbyclient")
                    return
            if request.method == "GET":
                headers = {k: v for k, v in request.headers.items() if k.lower() not in _DROP_REQUEST}
                result = await self._fetcher.fetch(url, allow_private=tab.allow_private, headers=headers)
                if result.status is None:
                    await route.abort("blockedbyclient" if result.error and result.error.kind == "blocked"
                                      else "failed")
                    return
                if main:
                    tab.main = _Main(result.final_url or url, result.status, result.etag, result.last_modified)
                await _fulfil(route, result)
                return
            await self._send(route, url, tab)
        except LimiterClosed:
            tab.refused_by_stop = True
            await _abort_quietly(route)
        except asyncio.CancelledError:
            # the render is over: answer the request anyway, or Playwright waits on it for good
            await _abort_quietly(route)
            raise
        except Exception:
            await _abort_quietly(route)  # the tab or its context went away under us

    async def _send(self, route: Route, url: str, tab: _Tab) -> None:
        """A request other than GET: the address rule on its host, then Playwright sends it under a slot."""
        host = URL(url).host or ""
        if not tab.allow_private and await self._fetcher.is_private_host(host):
            await route.abort("blockedbyclient")
            return
        f = self.config.fetch
        headers = {**route.request.headers, "user-agent": f.user_agent}
        async with self._limiter.request(host):
            response = await route.fetch(headers=headers, max_redirects=0, timeout=f.timeout * 1000)
        await route.fulfill(response=response)

    # --- browsers ------------------------------------------------------------------------------

    async def _take_browser(self) -> _Browser:
        async with self._launch_lock:
            b = self._current
            if b is None or b.crashed or b.used >= RECYCLE_AFTER:
                if b is not None:
                    self._retire(b)
                b = self._current = _Browser(await self._launch())
            b.used += 1
            b.open += 1
            return b

    def _give_back(self, b: _Browser) -> None:
        b.open -= 1
        if b is self._current and b.crashed:
            self._retire(b)
            self._current = None
        elif b in self._retired and b.open == 0:
            self._retired.discard(b)
            self._close_later(b)

    def _retire(self, b: _Browser) -> None:
        if b.open == 0:
            self._close_later(b)
        else:
            self._retired.add(b)

    def _close_later(self, b: _Browser) -> None:
        task = asyncio.create_task(_close_browser(b))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _launch(self) -> Browser:
        if self._playwright is None:
            from playwright.async_api import async_playwright

            self._playwright = await async_playwright().start()
        args = list(_ARGS)
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.append("--no-sandbox")  # Chromium refuses to start its sandbox as root
        env = None
        if len(tempfile.gettempdir()) > 60:  # Chromium's socket there must have a path under 108 bytes
            env = {**os.environ, "TMPDIR": "/tmp"}
        self.launches += 1
        try:
            return await self._playwright.chromium.launch(
                executable_path=self._executable, args=args, headless=True, timeout=60_000, env=env
            )
        except Exception as e:
            raise RenderFailed(f"cannot start the browser: {_playwright_message(e)}") from None

    async def close(self) -> None:
        """Close every browser and Playwright's driver; bounded, whatever state they are in."""
        browsers = [b for b in (self._current, *self._retired) if b is not None]
        self._current = None
        self._retired.clear()
        await asyncio.gather(*(_close_browser(b) for b in browsers), *self._closing, return_exceptions=True)
        if self._playwright is not None:
            playwright, self._playwright = self._playwright, None
            try:
                async with asyncio.timeout(10):
                    await playwright.stop()
            except Exception:
                pass  # the driver exits anyway once its pipe closes with this process


async def _close_browser(b: _Browser) -> None:
    try:
        async with asyncio.timeout(10):
            await b.browser.close()
    except Exception:
        pass  # already gone (crashed), or stuck: the driver kills it when it stops


async def _fulfil(route: Route, result: FetchResult) -> None:
    headers = {}
    if result.headers is not None:
        for name, value in result.headers.items():
            if name.lower() not in _DROP_RESPONSE:
                # Playwright takes one value a name: repeated headers are joined as HTTP allows
                key = name.lower()
                headers[key] = f"{headers[key]}\n{value}" if key == "set-cookie" and key in headers else (
                    f"{headers[key]}, {value}" if key in headers else value)
    if result.content_type and "content-type" not in headers:
        headers["content-type"] = result.content_type
    await route.fulfill(status=result.status or 200, headers=headers, body=result.body or b"")


async def _abort_quietly(route: Route) -> None:
    try:
        async with asyncio.timeout(5):
            await route.abort("failed")
    except Exception:
        pass  # the tab is gone already, or answered


def _copy(result: FetchResult) -> FetchResult:
    return FetchResult(**{f.name: getattr(result, f.name) for f in fields(FetchResult)})


def _playwright_message(e: BaseException) -> str:
    message = getattr(e, "message", None) or str(e) or type(e).__name__
    return str(message).strip().split("\n", 1)[0]
