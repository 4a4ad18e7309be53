"""`--since DIR`: the index of an earlier crawl, read once, that a recrawl asks per URL.

A recrawl needs, for each URL the earlier crawl fetched ok, only three things at
request time: its validators (`etag`, `last_modified`) for the conditional
request, its `content_hash` to tell whether a new body changed, and, when the
server answers 304, the earlier record itself (title, links, fields...) to carry
over. The first two are kept in memory in a compact form; the record stays on
disk and is read back from its file when a 304 needs it. So the index holds, per
URL and without one Python object per record:

* the URL's 64-bit fingerprint (`urls.fingerprint`), in an `array('Q')`;
* the first 16 bytes of its content hash (equality is all that is asked of it);
* where the record sits: file number and byte offset, packed into one integer,
  with a flag for a record whose final URL differs from its URL (a redirect);
* its validators, packed into one `bytearray` (an IMF-fixdate `Last-Modified`,
  the form servers send, as a 4-byte timestamp; anything else byte for byte);
* an open-addressing hash table (`array('I')`, linear probing on the
  fingerprint, at most 70 % full) from fingerprint to record number.

That is about 60 bytes per record plus the length of its ETag (77 measured with
18-character ETags, see the README): a 10-million-record earlier crawl costs
under a gigabyte, where its records as Python dicts would cost tens.

Only ok records are indexed: a URL whose earlier record failed is "new" to the
recrawl. Two URLs with the same fingerprint (about one chance in 400,000 in a
crawl of ten million URLs) would share an entry; a 304 is carried over only after the record
read back is checked to be the URL's own.
"""

from __future__ import annotations

import csv
import json
import re
import threading
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import UsageError
from .sinks import _csv_record
from .urls import fingerprint

__all__ = ["Earlier", "EarlierCrawl", "output_files"]

_HASH_BYTES = 16
_OFFSET_BITS = 48
_OFFSET_MASK = (1 << _OFFSET_BITS) - 1
_FILE_BITS = 14  # up to 16384 shards
_REDIRECTED = 1 << 62
_NO_HASH = 1 << 63
_LOAD = 0.7

# validators' encoding: one flag byte, then the ETag, then Last-Modified
_HAS_ETAG, _LM_TEXT, _LM_STAMP = 1, 2, 4
_FIXDATE = re.compile(
    r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), (\d\d) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) (\d{4}) "
    r"(\d\d):(\d\d):(\d\d) GMT"
)
_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, slots=True)
class Earlier:
    """What the index holds of one URL's ok earlier record."""

    etag: str | None
    last_modified: str | None
    hash16: bytes | None  # the first 16 bytes of its content hash; None when it had none
    redirected: bool  # its final URL was another URL: the validators belong to that one
    location: int  # file number and offset, for `EarlierCrawl.record`

    def headers(self) -> dict[str, str]:
        """The conditional request's headers (empty when the record had no validators)."""
        headers = {}
        if self.etag is not None:
            headers["If-None-Match"] = self.etag
        if self.last_modified is not None:
            headers["If-Modified-Since"] = self.last_modified
        return headers


def output_files(folder: Path) -> list[Path]:
    """The output files of a crawl folder: `pages.jsonl`/`.csv` and every shard `pages-*.jsonl`/`.csv`."""
    found: list[Path] = []
    for fmt in ("jsonl", "csv"):
        one = folder / f"pages.{fmt}"
        if one.is_file():
            found.append(one)
        found.extend(sorted(p for p in folder.glob(f"pages-*.{fmt}") if p.is_file()))
    return found


def hash16(content_hash: str | None) -> bytes | None:
    """The first 16 bytes of a `"sha256:<hex>"` content hash, or None."""
    if not content_hash or not content_hash.startswith("sha256:"):
        return None
    try:
        return bytes.fromhex(content_hash[7 : 7 + 2 * _HASH_BYTES])
    except ValueError:
        return None


class EarlierCrawl:
    """The compact index of an earlier crawl's output folder (see the module docstring).

    Built once by `EarlierCrawl.read(folder)`, which streams every output file of
    the folder (JSONL or CSV, all shards, a torn last line skipped) and never
    writes to it. After that it is read only: `lookup` is safe from any thread.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._files: list[tuple[Path, str, list[str] | None]] = []  # path, format, CSV header
        self._fps = array("Q")
        self._hashes = bytearray()
        self._locations = array("Q")
        self._validators = array("Q")  # offset of each record's validators in `_pool`
        self._pool = bytearray()
        self._slots = array("I")  # record number + 1; 0: empty
        #: records read, and ok records indexed
        self.records = 0
        self.indexed = 0

    def __len__(self) -> int:
        return self.indexed

    # --- building ----------------------------------------------------------------------

    @classmethod
    def read(
        cls, folder: str | Path, *, output_dir: str | Path | None = None, stop: threading.Event | None = None
    ) -> EarlierCrawl:
        """Check `folder` as a `--since` folder, and index it.

        Raises `UsageError` (exit 2) for a missing folder, a folder with no output
        (no output file, or not one whole record in them), the output folder
        itself, or an output written without `content_hash`. `stop` set (an
        interrupt) ends the reading early: the run that asked stops too.
        """
        path = Path(folder)
        if not path.is_dir():
            why = "is not a folder" if path.exists() else "does not exist"
            raise UsageError(f"--since / [crawl] since: {folder} {why}")
        if output_dir is not None and path.resolve() == Path(output_dir).resolve():
            raise UsageError(
                f"--since / [crawl] since: {folder} is the output folder; the recrawl writes to a folder of its own"
            )
        files = output_files(path)
        if not files:
            raise UsageError(f"--since / [crawl] since: {folder} holds no crawl output (no pages.jsonl or pages.csv)")
        index = cls(path)
        for file in files:
            if stop is not None and stop.is_set():
                break
            index._read_file(file, stop)
        if not index.records and not (stop is not None and stop.is_set()):
            names = ", ".join(f.name for f in files)
            raise UsageError(f"--since / [crawl] since: {folder} holds no crawl output (no record in {names})")
        index._build_table()
        return index

    def _read_file(self, path: Path, stop: threading.Event | None) -> None:
        fmt = path.suffix[1:]
        number = len(self._files)
        if number >= 1 << _FILE_BITS:
            raise UsageError(f"--since / [crawl] since: {self.folder} holds more than {1 << _FILE_BITS} shards")
        try:
            with open(path, "rb") as f:
                if fmt == "jsonl":
                    self._files.append((path, fmt, None))
                    records = _jsonl_records(f, path)
                else:
                    header = _csv_header(f, path)
                    self._files.append((path, fmt, header))
                    records = _csv_records(f, header)
                for offset, record in records:
                    self.records += 1
                    if stop is not None and not self.records % 4096 and stop.is_set():
                        return
                    if record.get("ok") is True and isinstance(record.get("url"), str):
                        self._add(record, number, offset)
        except OSError as e:
            raise UsageError(f"--since / [crawl] since: cannot read {path}: {e.strerror or e}") from None

    def _add(self, record: dict[str, Any], number: int, offset: int) -> None:
        url = record["url"]
        h = hash16(record.get("content_hash"))
        location = offset | number << _OFFSET_BITS
        if h is None:
            location |= _NO_HASH
        final = record.get("final_url")
        if final and final != url:
            location |= _REDIRECTED
        self._fps.append(fingerprint(url))
        self._hashes += h or bytes(_HASH_BYTES)
        self._locations.append(location)
        self._validators.append(len(self._pool))
        _pack_validators(self._pool, _text(record.get("etag")), _text(record.get("last_modified")))

    def _slot(self, fp: int) -> int:
        """The table's slot for fingerprint `fp`: the one holding it, else the empty one it would take."""
        slots, fps = self._slots, self._fps
        mask = len(slots) - 1
        i = fp & mask
        while (held := slots[i]) != 0 and fps[held - 1] != fp:
            i = (i + 1) & mask
        return i

    def _insert(self, fp: int, slot_value: int) -> bool:
        """Put record `slot_value - 1` in the table; False when its URL was there already (it replaces it)."""
        i = self._slot(fp)
        new = self._slots[i] == 0
        self._slots[i] = slot_value
        return new

    def _build_table(self) -> None:
        """The hash table over every record read, sized once: at most 70 % full."""
        size = 1024
        while size * _LOAD < len(self._fps):
            size *= 2
        if len(self._fps) >= 1 << 32:
            raise UsageError(f"--since / [crawl] since: {self.folder} holds more than 2**32 records")
        self._slots = array("I", [0]) * size
        self.indexed = sum(self._insert(fp, n) for n, fp in enumerate(self._fps, 1))

    # --- asking ----------------------------------------------------------------------------

    def lookup(self, url: str) -> Earlier | None:
        """What the earlier crawl's ok record of `url` left for a recrawl; None when it has none."""
        if not self.indexed:
            return None
        held = self._slots[self._slot(fingerprint(url))]
        if held == 0:
            return None
        n = held - 1
        location = self._locations[n]
        etag, last_modified = _unpack_validators(self._pool, self._validators[n])
        return Earlier(
            etag=etag,
            last_modified=last_modified,
            hash16=None if location & _NO_HASH else bytes(self._hashes[n * _HASH_BYTES : (n + 1) * _HASH_BYTES]),
            redirected=bool(location & _REDIRECTED),
            location=location & ~(_NO_HASH | _REDIRECTED),
        )

    def record(self, earlier: Earlier) -> dict[str, Any] | None:
        """The whole earlier record, read back from its file (blocking: call it off the event loop)."""
        path, fmt, header = self._files[earlier.location >> _OFFSET_BITS]
        offset = earlier.location & _OFFSET_MASK
        try:
            with open(path, "rb") as f:
                f.seek(offset)
                if fmt == "jsonl":
                    record = json.loads(f.readline())
                else:
                    assert header is not None
                    row = next(csv.reader(line.decode("utf-8", "replace") for line in f))
                    record = _csv_record(header, row) if len(row) == len(header) else None
        except (OSError, ValueError, StopIteration, csv.Error):
            return None  # the folder changed under the crawl: the page is fetched again
        return record if isinstance(record, dict) else None

    def changed(self, url: str, ok: bool, content_hash: str | None) -> bool | None:
        """`changed` for a record that did not come of a 304: None when the URL is new (SPEC 9)."""
        earlier = self.lookup(url)
        if earlier is None:
            return None
        if not ok or earlier.hash16 is None:
            return True
        return hash16(content_hash) != earlier.hash16


# --- reading the earlier files, streamed ---------------------------------------------------------


def _jsonl_records(f: Any, path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    offset = 0
    for line in f:
        start = offset
        offset += len(line)
        if not line.endswith(b"\n"):
            return  # a torn last line (a killed run)
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict) or "url" not in record:
            continue
        if "content_hash" not in record:
            raise UsageError(_too_old(path))
        yield start, record


def _csv_header(f: Any, path: Path) -> list[str]:
    line = f.readline()
    if not line.endswith(b"\n"):
        return []  # an empty CSV output: nothing to index
    header = next(csv.reader([line.decode("utf-8", "replace")]))
    if "content_hash" not in header:
        raise UsageError(_too_old(path))
    return header


_CSV_KEYS = ("url", "ok", "final_url", "etag", "last_modified", "content_hash")


def _csv_records(f: Any, header: list[str]) -> Iterator[tuple[int, dict[str, Any]]]:
    if not header:
        return
    where = [(key, header.index(key)) for key in _CSV_KEYS if key in header]
    offset = f.tell()
    consumed: list[int] = []
    torn = False

    def lines() -> Iterator[str]:
        nonlocal torn
        for line in f:
            consumed.append(len(line))
            if not line.endswith(b"\n"):
                torn = True
            yield line.decode("utf-8", "replace")

    reader = csv.reader(lines())
    while True:
        consumed.clear()
        try:
            row = next(reader)
        except (StopIteration, csv.Error):
            return
        if torn:
            return
        start = offset
        offset += sum(consumed)
        if len(row) != len(header):
            continue
        # only the cells the index needs; an empty cell is null, as the sink writes it
        record = {key: row[i] or None for key, i in where}
        record["ok"] = record.get("ok") == "true"
        yield start, record


def _too_old(path: Path) -> str:
    return (f"--since / [crawl] since: {path} has no content_hash: it was written by an earlier version "
            "of scraper, and cannot tell a recrawl what changed")


# --- validators, packed --------------------------------------------------------------------------


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _pack_text(out: bytearray, text: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    if len(data) < 255:
        out.append(len(data))
    else:
        out.append(255)
        out += len(data).to_bytes(4, "big")
    out += data


def _unpack_text(pool: bytearray, pos: int) -> tuple[str, int]:
    n = pool[pos]
    pos += 1
    if n == 255:
        n = int.from_bytes(pool[pos : pos + 4], "big")
        pos += 4
    return pool[pos : pos + n].decode("utf-8", "surrogatepass"), pos + n


def _fixdate_stamp(value: str) -> int | None:
    """The timestamp of an IMF-fixdate that formats back to exactly `value`, else None."""
    m = _FIXDATE.fullmatch(value)
    if m is None:
        return None
    day, dd, mon, yyyy, hh, mi, ss = m.groups()
    try:
        when = datetime(int(yyyy), _MONTHS.index(mon) + 1, int(dd), int(hh), int(mi), int(ss), tzinfo=UTC)
    except ValueError:
        return None  # a 31st of June, a leap second: kept as sent
    stamp = int(when.timestamp())
    if _DAYS[when.weekday()] != day or not 0 <= stamp < 1 << 32:
        return None
    return stamp


def _format_fixdate(stamp: int) -> str:
    t = time.gmtime(stamp)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")


def _pack_validators(out: bytearray, etag: str | None, last_modified: str | None) -> None:
    """Append one record's validators to `out`."""
    at = len(out)
    out.append(0)
    if etag is not None:
        out[at] |= _HAS_ETAG
        _pack_text(out, etag)
    if last_modified is not None:
        stamp = _fixdate_stamp(last_modified)
        if stamp is not None:
            out[at] |= _LM_STAMP
            out += stamp.to_bytes(4, "big")
        else:
            out[at] |= _LM_TEXT
            _pack_text(out, last_modified)


def _unpack_validators(pool: bytearray, pos: int) -> tuple[str | None, str | None]:
    flags = pool[pos]
    pos += 1
    etag = last_modified = None
    if flags & _HAS_ETAG:
        etag, pos = _unpack_text(pool, pos)
    if flags & _LM_STAMP:
        last_modified = _format_fixdate(int.from_bytes(pool[pos : pos + 4], "big"))
    elif flags & _LM_TEXT:
        last_modified, _ = _unpack_text(pool, pos)
    return etag, last_modified
