"""The crawl's WARC archive (`[output] warc`): every HTTP exchange, written off the event loop; and read back.

Writing. The fetcher calls `Archive.add` with each response head it gets (every
attempt, every redirect hop, every robots.txt fetch), once the body is read or
abandoned. `add` only copies the head's fields and queues them; a thread of the
archive's own builds the WARC 1.1 records with warcio, compresses each into a
gzip member of its own and appends what has piled up in one `write` to an
unbuffered file. zlib and the file write release the GIL, so the event loop
keeps running while the archive is compressed.

The records' guarantee (SPEC 10): the engine awaits `Archive.synced()` before
it writes a page's record, so an ok record's final response is always on disk
before the record is. That wait is also the archive's backpressure: the queue
never holds more than the exchanges of the fetch tasks alive, which the
dispatcher bounds.

Crash safety: members are whole when handed to the kernel in one `write`, so
SIGINT/SIGTERM (which let the writer finish) leave only whole members; a SIGKILL
during a write leaves at most one torn member at the end, which `whole_length`
finds and `Archive.open(append=True)` cuts off before appending.

What is stored: the request as sent (its line and headers), and the response's
status line, headers and body with the content coding undone (aiohttp decodes
it): `Content-Encoding` and `Transfer-Encoding` are dropped and `Content-Length`
set to the stored body's length, the original values kept as
`X-Crawler-Content-Encoding` etc. (Common Crawl's convention), so
`WARC-Payload-Digest` is right for what is stored. A body the crawl did not keep
(a redirect, a non-2xx status, a body cut short) is stored empty, the record
marked `WARC-Truncated`; a body dropped as `too_large` is not archived at all.

A page rendered by the browser (`[render]`) also gets a `conversion` record:
the DOM its scripts built, which is what the crawl parsed for it.

Reading (re-extraction): `index_archives` makes one streaming pass over the
archives and keeps, per target URI (a 64-bit hash), the offsets of its 2xx
responses and of its renderings; `read_body` reads one member at an offset. The
whole archive is never in memory.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import os
import threading
import uuid
import zlib
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from hashlib import blake2b, sha256
from pathlib import Path
from typing import Any

from .errors import ConfigError, OutputError
from .version import __version__

__all__ = [
    "Archive",
    "ArchiveIndex",
    "Exchange",
    "ResponseIndex",
    "archive_paths",
    "index_archives",
    "read_body",
    "require_warcio",
    "warc_path",
    "whole_length",
]

#: zlib level of each member: on 30 KB pages level 1 takes 60% of the CPU of level 6, for 6% more bytes
COMPRESS_LEVEL = 1
#: WARC-Truncated reason of a body the crawl did not keep, by the error that cut it
_TRUNCATED = {"timeout": "time", "protocol": "disconnect", "connect": "disconnect"}
#: the Content-Type of a rendered DOM (as the crawl parsed it)
RENDERED_TYPE = "text/html; charset=utf-8"
#: headers that describe the bytes on the wire, not the body stored
_WIRE_HEADERS = ("content-encoding", "transfer-encoding", "content-length")


def require_warcio() -> None:
    """Fail with one line naming the extra when warcio is not installed."""
    try:
        import warcio  # noqa: F401
    except ImportError:
        raise ConfigError("[output] warc needs warcio: pip install 'scraper[warc]'") from None


def warc_path(out_dir: str | Path, shard: str | None = None) -> Path:
    """DIR/pages.warc.gz, or DIR/pages-<worker>.warc.gz for a worker of a shared crawl."""
    name = "pages" if shard is None else f"pages-{shard}"
    return Path(out_dir) / f"{name}.warc.gz"


def archive_paths(out_dir: str | Path) -> list[Path]:
    """Every archive of an output folder (one per worker of a shared crawl), in name order."""
    folder = Path(out_dir)
    paths = [folder / "pages.warc.gz"] if (folder / "pages.warc.gz").is_file() else []
    return paths + sorted(p for p in folder.glob("pages-*.warc.gz") if p.is_file())


@dataclass(frozen=True, slots=True)
class Exchange:
    """One request and the response head (and kept body) it got: what two WARC records hold."""

    url: str
    date: str  # WARC-Date: when the response was complete
    request_line: str  # "GET /path?q HTTP/1.1"
    request_headers: tuple[tuple[str, str], ...]
    status_line: str  # "200 OK"
    protocol: str  # "HTTP/1.1"
    response_headers: tuple[tuple[str, str], ...]  # as received
    body: bytes | None  # decoded; None: not kept
    truncated: str | None  # WARC-Truncated reason when a body was sent but not kept


def _exchange(resp: Any, url: str, body: bytes | None, error_kind: str | None) -> Exchange:
    info = resp.request_info
    version = f"HTTP/{resp.version.major}.{resp.version.minor}" if resp.version else "HTTP/1.1"
    headers = tuple((k.decode("latin-1"), v.decode("utf-8", "replace")) for k, v in resp.raw_headers)
    truncated = None
    if body is None and _has_body(resp.status, headers):
        truncated = _TRUNCATED.get(error_kind or "", "unspecified")
    return Exchange(
        url=url,
        date=_now(),
        request_line=f"{info.method} {info.url.raw_path_qs or '/'} HTTP/1.1",  # what aiohttp sends
        request_headers=tuple(info.headers.items()),
        status_line=f"{resp.status} {resp.reason or ''}".rstrip(),
        protocol=version,
        response_headers=headers,
        body=body,
        truncated=truncated,
    )


def _has_body(status: int, headers: Iterable[tuple[str, str]]) -> bool:
    """Whether a response sent a body (that a crawl which did not keep it leaves out)."""
    if status < 200 or status in (204, 304):
        return False
    return not any(k.lower() == "content-length" and v.strip() == "0" for k, v in headers)


def stored_headers(headers: Iterable[tuple[str, str]], body_length: int) -> list[tuple[str, str]]:
    """The response headers to store with a decoded body of `body_length` bytes.

    The wire headers are replaced by one `Content-Length`, in place of the first
    of them; their values as received are kept under an `X-Crawler-` prefix.
    """
    out: list[tuple[str, str]] = []
    placed = False
    for name, value in headers:
        if name.lower() in _WIRE_HEADERS:
            if not placed:
                out.append(("Content-Length", str(body_length)))
                placed = True
            if name.lower() != "content-length" or value.strip() != str(body_length):
                out.append(("X-Crawler-" + name, value))
        else:
            out.append((name, value))
    if not placed:
        out.append(("Content-Length", str(body_length)))
    return out


def _member(data: bytes) -> bytes:
    c = zlib.compressobj(COMPRESS_LEVEL, zlib.DEFLATED, 16 + zlib.MAX_WBITS)  # 16+: gzip framing
    return c.compress(data) + c.flush()


def _record_bytes(record: Any) -> bytes:
    from warcio.warcwriter import WARCWriter

    buf = io.BytesIO()
    WARCWriter(buf, gzip=False, warc_version="1.1").write_record(record)
    return buf.getvalue()


def _builder() -> Any:
    from warcio.warcwriter import WARCWriter

    return WARCWriter(io.BytesIO(), gzip=False, warc_version="1.1")


def _record_id() -> str:
    return f"<urn:uuid:{uuid.uuid4()}>"


def exchange_members(ex: Exchange, builder: Any = None) -> bytes:
    """The request and response records of one exchange, each its own gzip member."""
    from warcio.statusandheaders import StatusAndHeaders

    builder = builder or _builder()
    req_id, resp_id = _record_id(), _record_id()
    request = builder.create_warc_record(
        ex.url,
        "request",
        http_headers=StatusAndHeaders(ex.request_line, list(ex.request_headers), is_http_request=True),
        warc_headers_dict={"WARC-Record-ID": req_id, "WARC-Date": ex.date, "WARC-Concurrent-To": resp_id},
    )
    body = ex.body or b""
    warc_headers = {"WARC-Record-ID": resp_id, "WARC-Date": ex.date, "WARC-Concurrent-To": req_id}
    if ex.truncated:
        warc_headers["WARC-Truncated"] = ex.truncated
    response = builder.create_warc_record(
        ex.url,
        "response",
        payload=io.BytesIO(body),
        length=len(body),
        http_headers=StatusAndHeaders(
            ex.status_line, stored_headers(ex.response_headers, len(body)), protocol=ex.protocol
        ),
        warc_headers_dict=warc_headers,
    )
    return _member(_record_bytes(request)) + _member(_record_bytes(response))


@dataclass(frozen=True, slots=True)
class Rendition:
    """A page as the browser left it (its DOM, UTF-8): a `conversion` record."""

    url: str
    date: str
    body: bytes


def rendition_member(r: Rendition, builder: Any = None) -> bytes:
    record = (builder or _builder()).create_warc_record(
        r.url,
        "conversion",
        payload=io.BytesIO(r.body),
        length=len(r.body),
        warc_content_type=RENDERED_TYPE,
        warc_headers_dict={"WARC-Record-ID": _record_id(), "WARC-Date": r.date},
    )
    return _member(_record_bytes(record))


def _members(item: Exchange | Rendition, builder: Any) -> bytes:
    return exchange_members(item, builder) if isinstance(item, Exchange) else rendition_member(item, builder)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def warcinfo_member(filename: str) -> bytes:
    builder = _builder()
    record = builder.create_warcinfo_record(
        filename,
        {"software": f"scraper/{__version__}", "format": "WARC File Format 1.1",
         "conformsTo": "https://iipc.github.io/warc-specifications/specifications/warc-format/warc-1.1/"},
    )
    return _member(_record_bytes(record))


# --- writing ---------------------------------------------------------------------------


class Archive:
    """Appends a crawl's exchanges to one .warc.gz, from a writer thread of its own.

    `open` (before the run), `add` (the fetcher's hook, on the event loop),
    `synced` (before a record is written), `close` (after the run).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._queue: deque[Exchange | Rendition] = deque()
        self._wake = threading.Condition()
        self._closing = False
        self._queued = 0  # exchanges handed to the writer (event loop only)
        self._written = 0  # exchanges on disk, as the event loop has heard (event loop only)
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._failed: str | None = None
        self._fd: int | None = None
        self._size = 0  # bytes of whole members in the file
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def open(self, *, append: bool) -> None:
        """Open the file (after cutting a torn tail when appending), then start the writer."""
        require_warcio()
        try:
            if append and self.path.exists():
                size = whole_length(self.path)
                with open(self.path, "r+b") as f:
                    f.truncate(size)
                self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
                self._size = size
            else:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o644)
            if self._size == 0:
                self._write(warcinfo_member(self.path.name))
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._work, name="scraper.archive", daemon=True)
        self._thread.start()

    def add(self, resp: Any, result: Any) -> None:
        """Queue one exchange: `resp` is aiohttp's response, `result` the fetch's FetchResult so far."""
        error = result.error.kind if result.error is not None else None
        if error == "too_large":
            return  # a dropped body is not archived (SPEC 10)
        body = result.body if result.ok else None
        self._put(_exchange(resp, result.final_url or str(resp.url), body, error))

    def add_rendered(self, url: str, dom: bytes) -> None:
        """Queue the DOM the browser built for `url` (what the crawl parses for that page)."""
        self._put(Rendition(url=url, date=_now(), body=dom))

    def _put(self, item: Exchange | Rendition) -> None:
        self._queue.append(item)
        self._queued += 1
        with self._wake:
            self._wake.notify()

    async def synced(self) -> None:
        """Return once every exchange queued so far is on disk; OutputError when the archive failed."""
        mark = self._queued
        if self._written < mark and self._failed is None:
            future = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiters, (mark, id(future), future))
            await future
        if self._failed is not None:
            raise OutputError(self._failed)

    async def close(self) -> None:
        """Write what is queued, stop the writer and close the file."""
        if self._thread is not None:
            with self._wake:
                self._closing = True
                self._wake.notify()
            thread, self._thread = self._thread, None
            await asyncio.get_running_loop().run_in_executor(None, thread.join)
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._failed is not None:
            raise OutputError(self._failed)

    def _work(self) -> None:
        builder = _builder()
        while True:
            with self._wake:
                while not self._queue and not self._closing:
                    self._wake.wait()
                if not self._queue:
                    return
            batch: list[Exchange | Rendition] = []
            while self._queue:
                batch.append(self._queue.popleft())
            if self._failed is None:
                try:
                    self._write(b"".join(_members(item, builder) for item in batch))
                except OSError as e:
                    self._failed = f"cannot write {self.path}: {e.strerror or e}"
                except Exception as e:  # a record warcio cannot build: the archive would lie
                    self._failed = f"cannot archive to {self.path}: {type(e).__name__}: {e}"
            assert self._loop is not None
            try:
                self._loop.call_soon_threadsafe(self._advance, len(batch))
            except RuntimeError:  # the loop is closed: nobody waits any more
                return

    def _write(self, data: bytes) -> None:
        """Append whole members; on failure cut the file back to the last whole one."""
        assert self._fd is not None
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self._fd, view):]
        except OSError:
            try:
                os.ftruncate(self._fd, self._size)
            except OSError:
                pass
            raise
        self._size += len(data)

    def _advance(self, n: int) -> None:
        self._written += n
        while self._waiters and (self._waiters[0][0] <= self._written or self._failed is not None):
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():
                future.set_result(None)


# --- reading ---------------------------------------------------------------------------


def whole_length(path: Path) -> int:
    """Bytes of whole gzip members at the start of `path` (what follows is a torn member).

    Streams the file once through zlib; nothing but a read buffer is held.
    """
    end = pos = 0
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            data = chunk
            while data:
                try:
                    d.decompress(data, 1 << 20)
                    while d.unconsumed_tail and not d.eof:
                        d.decompress(d.unconsumed_tail, 1 << 20)
                except zlib.error:
                    return end
                if d.eof:
                    used = len(data) - len(d.unused_data)
                    pos += used
                    end = pos
                    data = d.unused_data
                    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
                else:
                    pos += len(data)
                    data = b""
    return end


def url_key(url: str) -> int:
    """A 64-bit key for a target URI: the index holds keys, not URLs."""
    return int.from_bytes(blake2b(url.encode("utf-8", "surrogateescape"), digest_size=8).digest(), "little")


class ResponseIndex:
    """Where each URL's 2xx responses are: (archive number, offset) pairs, in archive order.

    About 110 bytes a URL (measured for 1,000,000): a 64-bit hash of the URL as the
    key and the pair packed into one int (a list only for a URL archived more than
    once), where the URLs themselves would take their own length again.
    """

    _SHIFT = 44  # offsets up to 16 TiB

    def __init__(self) -> None:
        self._where: dict[int, int | list[int]] = {}

    def __len__(self) -> int:
        return len(self._where)

    def add(self, url: str, number: int, offset: int) -> None:
        key, packed = url_key(url), number << self._SHIFT | offset
        old = self._where.get(key)
        if old is None:
            self._where[key] = packed
        elif isinstance(old, list):
            old.append(packed)
        else:
            self._where[key] = [old, packed]

    def get(self, url: str) -> tuple[tuple[int, int], ...]:
        """The (archive number, offset) of each 2xx response to `url`, oldest first; () when none."""
        found = self._where.get(url_key(url))
        if found is None:
            return ()
        mask = (1 << self._SHIFT) - 1
        return tuple((p >> self._SHIFT, p & mask) for p in (found if isinstance(found, list) else [found]))


@dataclass(frozen=True, slots=True)
class ArchiveIndex:
    """Where each URL's whole 2xx responses, and its renderings, are in a crawl's archives."""

    responses: ResponseIndex
    renditions: ResponseIndex


def index_archives(paths: list[Path]) -> ArchiveIndex:
    """Index `paths` (archive number = position in `paths`): one streaming pass with warcio's reader.

    A torn last member ends that archive's pass.
    """
    from warcio.archiveiterator import ArchiveIterator
    from warcio.exceptions import ArchiveLoadFailed

    index = ArchiveIndex(ResponseIndex(), ResponseIndex())
    for number, path in enumerate(paths):
        with open(path, "rb") as f:
            records = ArchiveIterator(f)
            try:
                for record in records:
                    if record.rec_type == "conversion":
                        uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                        index.renditions.add(uri, number, records.get_record_offset())
                        continue
                    if record.rec_type != "response" or record.http_headers is None:
                        continue
                    if record.rec_headers.get_header("WARC-Truncated"):
                        continue
                    status = record.http_headers.get_statuscode() or ""
                    if not (status.isdigit() and 200 <= int(status) < 300):
                        continue
                    uri = record.rec_headers.get_header("WARC-Target-URI") or ""
                    index.responses.add(uri, number, records.get_record_offset())
            except (ArchiveLoadFailed, EOFError, zlib.error, ValueError, OSError):
                pass  # a torn last member: the records before it are whole
    return index


@dataclass(frozen=True, slots=True)
class Archived:
    """A response read back from the archive."""

    content_type: str  # the whole Content-Type header, charset included ("" when none)
    body: bytes


def read_body(path: Path, offset: int) -> Archived:
    """The response (or conversion) record at `offset`: its Content-Type and body."""
    from warcio.archiveiterator import ArchiveIterator

    with open(path, "rb") as f:
        f.seek(offset)
        record = next(iter(ArchiveIterator(f)))
        headers = record.http_headers if record.http_headers is not None else record.rec_headers
        return Archived(content_type=headers.get_header("Content-Type") or "", body=record.content_stream().read())


def find_body(paths: list[Path], candidates: Iterable[tuple[int, int]], content_hash: str | None) -> Archived | None:
    """The newest candidate whose body has `content_hash` (any, when None); None when none has."""
    for number, offset in reversed(list(candidates)):
        try:
            archived = read_body(paths[number], offset)
        except Exception:  # a damaged member: try the others
            continue
        if content_hash is None or "sha256:" + sha256(archived.body).hexdigest() == content_hash:
            return archived
    return None
