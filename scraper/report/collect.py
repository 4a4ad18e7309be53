"""One pass over a crawl's records, keeping only bounded state.

A report of a 1,000,000-record output must fit in a few hundred MB, so no
record is kept: each is folded into counters as it is read, and thrown away.

* Counts (status, error kind, depth, content type) are `Counter`s over values
  that are few by nature; content types, which a server chooses freely, are
  capped at `TYPES_CAP` distinct values (the rest count as "(other)").
* Body sizes go into power-of-two bins, binned again for the chart.
* Pages over time: an `Timeline` of buckets whose width doubles whenever the
  span would need more than `Timeline.MAX_BUCKETS`; records may come in any
  order (shards, resumed runs).
* Response times per host: a `Sketch` per host (log-spaced buckets, exact up
  to 100 ms and within 1% above), so a host of a million pages costs at most
  ~700 buckets. Hosts are capped at `HOSTS_CAP`: past it the least busy half
  is dropped, and a host seen again starts over. The 20 busiest hosts of a
  crawl are never the ones dropped unless the crawl has tens of thousands of
  hosts with almost equal counts, and then the report says so.
* The 50 slowest pages: a min-heap of 50. Failures: the first 50 of each kind.
"""

from __future__ import annotations

import csv
import heapq
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import sinks
from ..sinks import output_files as record_files

__all__ = ["HOSTS_CAP", "Collector", "Failure", "Row", "Sketch", "Timeline", "iter_records", "output_files"]

#: hosts tracked in detail at once; past it the least busy half is dropped
HOSTS_CAP = 10_000
#: distinct content types counted; the rest are "(other)"
TYPES_CAP = 200
#: rows of the slowest-pages table, and failures kept per error kind
TOP = 50
#: characters of a title or a message kept for the tables (a page may have a megabyte of title)
TEXT_CAP = 500

# the host name of an http(s) URL: after any user info, before any port (urlsplit's
# `hostname`, at a tenth of its cost: it runs once per record)
_HOST = re.compile(r"https?://(?:[^/?#@]*@)?(\[[^\]/?#]*\]|[^/?#:]*)", re.IGNORECASE)
_STATS = re.compile(r"stats(-[A-Za-z0-9._-]+)?\.json")


def output_files(out_dir: Path) -> tuple[list[Path], list[Path]]:
    """The record files (every shard, JSONL or CSV) and the stats files of an output folder."""
    stats = sorted(p for p in out_dir.glob("stats*.json") if _STATS.fullmatch(p.name) and p.is_file())
    return record_files(out_dir), stats


def _cap(text: str) -> str:
    return text if len(text) <= TEXT_CAP else text[: TEXT_CAP - 1] + "\u2026"


# --- reading -------------------------------------------------------------------


def iter_records(path: Path) -> Iterator[dict[str, Any]]:
    """The whole records of one output file, streamed; a torn last record is skipped.

    JSONL is read as `--resume` and `read_pages` read it. CSV is read here, decoding
    only the columns the report shows: a row's `links` (most of its bytes) stay an
    undecoded string, which makes a million-row report ~5 s of CPU cheaper.
    """
    if path.suffix == ".csv":
        return _iter_csv(path)
    return sinks.iter_records(path)


_CSV_INT = frozenset(("status", "depth", "elapsed_ms", "attempts", "bytes"))
_CSV_BOOL = frozenset(("ok", "changed"))
_CSV_WANTED = ("url", "status", "ok", "depth", "fetched_at", "elapsed_ms", "attempts", "content_type",
               "bytes", "title", "changed", "error")


def _iter_csv(path: Path) -> Iterator[dict[str, Any]]:
    with open(path, "rb") as f:  # a file that does not end in a newline ends in a torn row
        whole = f.seek(0, os.SEEK_END) == 0 or (f.seek(-1, os.SEEK_END) >= 0 and f.read(1) == b"\n")
    csv.field_size_limit(2**31 - 1)  # a page's text may be far longer than csv's default 128 KiB
    with open(path, encoding="utf-8", errors="replace", newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return
        width = len(header)
        index = [(key, header.index(key)) for key in _CSV_WANTED if key in header]
        previous: dict[str, Any] | None = None
        try:
            for row in reader:
                if previous is not None:
                    yield previous
                previous = _csv_row(row, index) if len(row) == width else None
        except csv.Error:
            return
        if previous is not None and whole:
            yield previous


def _csv_row(row: list[str], index: list[tuple[str, int]]) -> dict[str, Any] | None:
    record: dict[str, Any] = {}
    try:
        for key, i in index:
            cell = row[i]
            if cell == "" and key != "url":
                record[key] = None
            elif key in _CSV_INT:
                record[key] = int(cell)
            elif key in _CSV_BOOL:
                record[key] = cell == "true"
            elif key == "error":
                record[key] = json.loads(cell)
            else:
                record[key] = cell
    except ValueError:
        return None
    return record if record.get("url") is not None else None


# --- bounded summaries ---------------------------------------------------------


class Sketch:
    """Percentiles of non-negative millisecond values in bounded space.

    Values up to `EXACT` ms get a bucket each (exact); above, with g = `GAMMA`,
    bucket i holds (EXACT * g**(i-1), EXACT * g**i] and stands for the value
    2 * EXACT * g**i / (g + 1), so every percentile above `EXACT` is within
    (g - 1) / (g + 1) < 1% of the true one (and never outside the values' own
    least and greatest). From 100 ms to 24 h that is ~690 buckets, whatever the
    number of values.
    """

    EXACT = 100
    GAMMA = 1.02
    _LOG_GAMMA = math.log(GAMMA)

    __slots__ = ("buckets", "count", "high", "low")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.count = 0
        self.low = math.inf
        self.high = -math.inf  # a percentile never leaves [low, high]: all-equal values come out exact

    def add(self, ms: int | float) -> None:
        if ms < self.low:
            self.low = ms
        if ms > self.high:
            self.high = ms
        if ms <= self.EXACT:
            key = max(0, math.ceil(ms))
        else:
            key = self.EXACT + math.ceil(math.log(ms / self.EXACT) / self._LOG_GAMMA)
        self.buckets[key] = self.buckets.get(key, 0) + 1
        self.count += 1

    def _value(self, key: int) -> float:
        if key <= self.EXACT:
            return float(key)
        return 2 * self.EXACT * self.GAMMA ** (key - self.EXACT) / (self.GAMMA + 1)

    def quantiles(self, *qs: float) -> list[float]:
        """Nearest-rank percentiles (q in 0..1): the value at rank ceil(q·n)."""
        if not self.count:
            return [math.nan for _ in qs]
        ranks = [max(1, math.ceil(q * self.count)) for q in qs]
        out: list[float] = [math.nan] * len(qs)
        order = sorted(range(len(qs)), key=lambda i: ranks[i])
        seen = 0
        keys = iter(sorted(self.buckets))
        key = -1
        for i in order:
            while seen < ranks[i]:
                key = next(keys)
                seen += self.buckets[key]
            out[i] = min(max(self._value(key), self.low), self.high)
        return out


class Timeline:
    """Records per time bucket; the bucket width doubles to keep at most MAX_BUCKETS."""

    MAX_BUCKETS = 1000

    def __init__(self) -> None:
        self.width = 1.0  # seconds
        self.counts: Counter[int] = Counter()
        self.failed: Counter[int] = Counter()
        self._low: int | None = None
        self._high = 0

    def add(self, t: float, ok: bool) -> None:
        key = math.floor(t / self.width)
        if self._low is None:
            self._low = self._high = key
        elif key < self._low or key > self._high:
            self._low, self._high = min(self._low, key), max(self._high, key)
            while self._high - self._low >= self.MAX_BUCKETS:
                self._coarsen()
            key = math.floor(t / self.width)
        self.counts[key] += 1
        if not ok:
            self.failed[key] += 1

    def _coarsen(self) -> None:
        # floor(t / 2w) == floor(floor(t / w) / 2): the buckets merge exactly
        self.width *= 2
        for name in ("counts", "failed"):
            merged: Counter[int] = Counter()
            for key, n in getattr(self, name).items():
                merged[key // 2] += n
            setattr(self, name, merged)
        assert self._low is not None
        self._low //= 2
        self._high //= 2

    def series(self) -> tuple[list[float], list[int], list[int]]:
        """Bucket start times (epoch seconds), records and failed records per bucket, gaps as 0."""
        if self._low is None:
            return [], [], []
        keys = range(self._low, self._high + 1)
        return [k * self.width for k in keys], [self.counts[k] for k in keys], [self.failed[k] for k in keys]


class HostTally:
    """What the report keeps per host."""

    __slots__ = ("errors", "pages", "times")

    def __init__(self) -> None:
        self.pages = 0
        self.errors: Counter[str] | None = None  # made on the host's first failure
        self.times = Sketch()


@dataclass(frozen=True)
class Row:
    """A row of the slowest-pages table."""

    elapsed_ms: int
    url: str
    status: int | None
    attempts: int | None
    title: str | None
    error_kind: str | None


@dataclass(frozen=True)
class Failure:
    """A row of a failed-pages table."""

    url: str
    status: int | None
    message: str


@dataclass
class Collector:
    """Everything the report shows, folded from records one at a time (`add`)."""

    pages: int = 0
    ok: int = 0
    bytes: int = 0
    #: records whose `changed` is true, false, null
    changed: int = 0
    unchanged: int = 0
    new: int = 0
    by_status: Counter[int | None] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    by_depth: Counter[int | None] = field(default_factory=Counter)
    by_type: Counter[str | None] = field(default_factory=Counter)
    #: body sizes by bit length (0 for no body kept)
    by_size_bits: Counter[int] = field(default_factory=Counter)
    timeline: Timeline = field(default_factory=Timeline)
    hosts: dict[str, HostTally] = field(default_factory=dict)
    #: hosts dropped to stay under HOSTS_CAP (0: every host's figures are exact)
    hosts_dropped: int = 0
    #: records without a readable `fetched_at` (not on the timeline)
    untimed: int = 0
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    _slowest: list[tuple[int, int, Row]] = field(default_factory=list)
    _first_t: float = math.inf
    _last_t: float = -math.inf

    def add(self, r: dict[str, Any]) -> None:
        """Fold one record in."""
        self.pages += 1
        ok = r.get("ok") is True
        self.ok += ok
        size = r.get("bytes")
        size = size if isinstance(size, int) and size > 0 else 0
        self.bytes += size
        self.by_size_bits[size.bit_length()] += 1
        changed = r.get("changed")
        if changed is True:
            self.changed += 1
        elif changed is False:
            self.unchanged += 1
        else:
            self.new += 1
        status = r.get("status")
        status = status if isinstance(status, int) else None
        self.by_status[status] += 1
        depth = r.get("depth")
        self.by_depth[depth if isinstance(depth, int) else None] += 1
        ctype = r.get("content_type")
        ctype = ctype if isinstance(ctype, str) and ctype else None
        if ctype in self.by_type or len(self.by_type) < TYPES_CAP:
            self.by_type[ctype] += 1
        else:
            self.by_type["(other)"] += 1

        stamp = r.get("fetched_at")
        try:
            t = datetime.fromisoformat(stamp).timestamp()  # type: ignore[arg-type]
        except (TypeError, ValueError):
            self.untimed += 1
        else:
            self.timeline.add(t, ok)
            if t < self._first_t:
                self._first_t = t
            if t > self._last_t:
                self._last_t = t

        url = r["url"] if isinstance(r["url"], str) else str(r["url"])
        host = self._host(url)
        error = r.get("error")
        kind = None
        if isinstance(error, dict):
            kind = str(error.get("kind"))
            self.by_error[kind] += 1
            if host.errors is None:
                host.errors = Counter()
            host.errors[kind] += 1
            kept = self.failures.setdefault(kind, [])
            if len(kept) < TOP:
                kept.append(Failure(url, status, _cap(str(error.get("message") or ""))))

        attempts = r.get("attempts")
        elapsed = r.get("elapsed_ms")
        if isinstance(elapsed, int) and elapsed >= 0 and attempts != 0:  # attempts 0: never requested
            host.times.add(elapsed)
            slowest = self._slowest
            if len(slowest) < TOP or elapsed > slowest[0][0]:
                title = r.get("title")
                row = Row(elapsed, url, status, attempts if isinstance(attempts, int) else None,
                          _cap(title) if isinstance(title, str) else None, kind)
                # the record's position breaks ties: the earlier record ranks first
                item = (elapsed, -self.pages, row)
                if len(slowest) < TOP:
                    heapq.heappush(slowest, item)
                else:
                    heapq.heappushpop(slowest, item)

    def _host(self, url: str) -> HostTally:
        match = _HOST.match(url)
        name = (match.group(1).lower() or "(no host)") if match else "(invalid URL)"
        tally = self.hosts.get(name)
        if tally is None:
            if len(self.hosts) >= HOSTS_CAP:
                self._drop_hosts()
            tally = self.hosts[name] = HostTally()
        tally.pages += 1
        return tally

    def _drop_hosts(self) -> None:
        keep = sorted(self.hosts.items(), key=lambda item: item[1].pages, reverse=True)[: HOSTS_CAP // 2]
        self.hosts_dropped += len(self.hosts) - len(keep)
        self.hosts = dict(keep)

    # --- results ---------------------------------------------------------------

    @property
    def failed(self) -> int:
        return self.pages - self.ok

    @property
    def span_s(self) -> float:
        """Seconds from the first to the last `fetched_at`."""
        return max(0.0, self._last_t - self._first_t) if self._first_t <= self._last_t else 0.0

    def slowest(self) -> list[Row]:
        """The slowest pages, slowest first."""
        return [row for _, _, row in sorted(self._slowest, reverse=True)]

    def busiest(self, n: int = 20) -> list[tuple[str, HostTally]]:
        """The n hosts with the most records, busiest first (ties by name)."""
        return sorted(self.hosts.items(), key=lambda item: (-item[1].pages, item[0]))[:n]


def read_stats(paths: list[Path]) -> tuple[list[dict[str, Any]], list[str]]:
    """The stats files that parse as JSON objects, and a note for each that does not."""
    stats: list[dict[str, Any]] = []
    notes: list[str] = []
    for path in paths:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            notes.append(f"{path.name} is unreadable ({e.__class__.__name__}); its run times are left out")
            continue
        if isinstance(data, dict):
            stats.append(data)
        else:
            notes.append(f"{path.name} is not a JSON object; its run times are left out")
    return stats, notes
