"""JSONL and CSV out, whole lines at a time; and read back for `--resume`.

The file is opened unbuffered and every write hands the kernel whole records
(a batch of lines in one `write`), so a stopped run leaves only whole lines,
and a killed one at most one torn last line, which `read_back` finds and
`truncate_torn` cuts before a resumed run appends. A write that fails (a full
disk) is cut back to the last whole record, and the sink refuses all later ones.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiofiles

from .errors import OutputError
from .page import Page, record_keys

# a page's text or Markdown may be far longer than the csv module's default field limit (128 KiB)
csv.field_size_limit(2**31 - 1)

__all__ = ["RecordFormat", "Sink", "columns", "csv_header", "read_back", "sink_path", "truncate_torn"]


def sink_path(out_dir: str | Path, fmt: str, shard: str | None = None) -> Path:
    name = "pages" if shard is None else f"pages-{shard}"
    return Path(out_dir) / f"{name}.{fmt}"


def columns(keys: tuple[str, ...]) -> list[str]:
    return list(keys)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _csv_line(row: list[str]) -> str:
    out = io.StringIO()
    # "\r\n" as the terminator makes csv quote a field holding "\r" too (with "\n" alone
    # a bare "\r" in a title would end the row for every reader); the line still ends in "\n"
    csv.writer(out, lineterminator="\r\n").writerow(row)
    return out.getvalue()[:-2] + "\n"


class RecordFormat:
    """A record as one line of DIR/pages.jsonl or DIR/pages.csv (CSV: the columns of `keys`)."""

    def __init__(self, fmt: str, keys: tuple[str, ...] = record_keys()) -> None:
        self.fmt = fmt
        self._columns = columns(keys)
        #: the file's first line (CSV's header row), None for JSONL
        self.header: str | None = _csv_line(self._columns) if fmt == "csv" else None

    def encode(self, page: Page) -> str:
        record = page.to_dict()
        if self.fmt == "jsonl":
            return json.dumps(record, ensure_ascii=False) + "\n"
        return _csv_line([_cell(record.get(k)) for k in self._columns])


class Sink:
    """Appends records to DIR/pages.jsonl or DIR/pages.csv.

    `header` replaces the format's first line (a file of lines made elsewhere: `write_line`).
    """

    #: records kept before a write, at most; `flush` writes sooner
    BATCH = 64
    #: bytes kept before a write, at most (a record with thousands of links is large)
    BATCH_BYTES = 256 * 1024

    def __init__(
        self, path: Path, fmt: str = "jsonl", keys: tuple[str, ...] = record_keys(), *, header: str | None = None
    ) -> None:
        self.path = path
        self.fmt = fmt
        self.format = RecordFormat(fmt, keys)
        self._header = header if header is not None else self.format.header
        self._buffer: list[str] = []
        self._buffered = 0  # characters in `_buffer`
        self._file: Any = None
        self._size = 0  # bytes of whole records in the file
        self._lock = asyncio.Lock()
        self._failed: str | None = None

    async def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = await aiofiles.open(self.path, "ab", buffering=0)
            self._size = await self._file.tell()
            if self._header and self._size == 0:
                self._buffer.append(self._header)
                await self.flush()
        except OSError as e:
            raise OutputError(f"cannot write {self.path}: {e.strerror or e}") from None

    def encode(self, page: Page) -> str:
        return self.format.encode(page)

    async def write(self, page: Page) -> None:
        await self.write_line(self.format.encode(page))

    async def write_line(self, line: str) -> None:
        if self._failed is not None:  # the output is gone: every writer learns it, and the run stops
            raise OutputError(self._failed)
        self._buffer.append(line)
        self._buffered += len(line)
        if len(self._buffer) >= self.BATCH or self._buffered >= self.BATCH_BYTES:
            await self.flush()

    async def flush(self) -> None:
        if self._buffer and self._file is not None:
            data = "".join(self._buffer).encode("utf-8", "replace")
            self._buffer.clear()
            self._buffered = 0
            # shielded: a writer cancelled by an interrupt must not leave half a batch behind
            await asyncio.shield(self._append(data))
        if self._failed is not None:
            raise OutputError(self._failed)

    async def _append(self, data: bytes) -> None:
        async with self._lock:  # one batch at a time, so a failed one can be cut off whole
            if self._failed is not None:
                return
            try:
                view = memoryview(data)
                while view:
                    n = await self._file.write(view)
                    view = view[n:]
                self._size += len(data)
            except OSError as e:
                self._failed = f"cannot write {self.path}: {e.strerror or e}"
                try:  # a full disk may take part of a record: cut back to the last whole one
                    await self._file.truncate(self._size)
                except OSError:
                    pass

    async def close(self) -> None:
        try:
            await self.flush()
        finally:
            if self._file is not None:
                async with self._lock:  # after a batch still being written
                    await self._file.close()
                self._file = None


# --- reading back --------------------------------------------------------------


def read_back(path: Path, fmt: str) -> tuple[list[dict[str, Any]], int]:
    """The whole records in an output file, and the byte offset where they end.

    Anything after that offset is a torn last record (a killed run).
    """
    with open(path, "rb") as f:
        data = f.read()
    if fmt == "jsonl":
        return _read_jsonl(data)
    return _read_csv(data)


def iter_jsonl(data: bytes) -> Iterator[tuple[dict[str, Any] | None, int]]:
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            yield None, pos  # no newline: torn
            return
        line = data[pos:end]
        pos = end + 1
        try:
            record = json.loads(line)
        except ValueError:
            record = None
        yield (record if isinstance(record, dict) and "url" in record else None), pos


def _read_jsonl(data: bytes) -> tuple[list[dict[str, Any]], int]:
    records: list[dict[str, Any]] = []
    good_end = 0
    for record, end in iter_jsonl(data):
        if record is None:
            continue  # a torn or foreign line; only a tail of them is cut
        records.append(record)
        good_end = end
    return records, good_end


def _read_csv(data: bytes) -> tuple[list[dict[str, Any]], int]:
    text = data.decode("utf-8", "replace")
    # records end in "\n" only: splitlines() would also cut at \u2028, \x85, \x0c... inside a title
    lines = io.StringIO(text, newline="\n")
    records: list[dict[str, Any]] = []
    header: list[str] | None = None
    offset = 0
    good_end = 0
    it = iter(lines)
    consumed: list[str] = []

    def feed() -> Iterator[str]:
        for line in it:
            consumed.append(line)
            yield line

    reader = csv.reader(feed())
    while True:
        consumed.clear()
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            break
        chunk = "".join(consumed)
        offset += len(chunk.encode("utf-8"))
        if not chunk.endswith("\n"):
            break  # torn
        if header is None:
            header = row
            good_end = offset
            continue
        if len(row) != len(header):
            continue
        record = _csv_record(header, row)
        if record is not None:
            records.append(record)
            good_end = offset
    return records, good_end


_INT_KEYS = ("status", "depth", "elapsed_ms", "attempts", "bytes")
_BOOL_KEYS = ("ok", "changed", "rendered")
_JSON_KEYS = ("links", "fields", "error")


def _csv_record(header: list[str], row: list[str]) -> dict[str, Any] | None:
    record: dict[str, Any] = {}
    try:
        for key, cell in zip(header, row, strict=True):  # the caller checked the lengths
            if cell == "" and key not in ("url", "text", "markdown"):
                record[key] = None
            elif key in _INT_KEYS:
                record[key] = int(cell)
            elif key in _BOOL_KEYS:
                record[key] = cell == "true"
            elif key in _JSON_KEYS:
                record[key] = json.loads(cell)
            else:
                record[key] = cell
    except ValueError:
        return None
    record.setdefault("links", [])
    if record.get("links") is None:
        record["links"] = []
    if record.get("fields") is None:
        record["fields"] = {}
    return record if record.get("url") is not None else None


def csv_header(path: Path) -> list[str] | None:
    """The header row of a CSV output, or None when it has none yet."""
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        line = f.readline()
    if not line.endswith("\n"):
        return None
    return next(csv.reader([line]))


def truncate_torn(path: Path, good_end: int) -> bool:
    """Cut a torn tail after the last whole record; True when something was cut."""
    size = path.stat().st_size
    if size <= good_end:
        return False
    with open(path, "r+b") as f:
        f.truncate(good_end)
        f.flush()
        os.fsync(f.fileno())
    return True


def output_files(out_dir: Path) -> list[Path]:
    """Every records file of an output folder: pages.jsonl/.csv and each worker's shard, in name order."""
    return sorted(p for p in out_dir.glob("pages*") if p.suffix in (".jsonl", ".csv") and p.is_file()
                  and (p.stem == "pages" or p.stem.startswith("pages-")))


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The whole records of a JSONL or CSV output file, streamed; a torn last record is skipped."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        whole = f.tell() == 0 or (f.seek(-1, os.SEEK_END) >= 0 and f.read(1) == b"\n")
    if path.suffix == ".jsonl":
        with open(path, "rb") as f:
            for line in f:
                if not line.endswith(b"\n"):
                    return  # torn
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if isinstance(record, dict) and "url" in record:
                    yield record
        return
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            return
        previous: dict[str, Any] | None = None
        try:
            for row in rows:
                if previous is not None:
                    yield previous
                previous = _csv_record(header, row) if len(row) == len(header) else None
        except csv.Error:
            return
        if previous is not None and whole:
            yield previous
