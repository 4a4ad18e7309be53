"""Run statistics: what stats.json holds and `Scraper.run` returns."""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Stats", "Tally"]


@dataclass(frozen=True, kw_only=True)
class Stats:
    #: records in the output (after `--resume`, the whole crawl so far)
    pages: int = 0
    #: records with `ok` true
    ok: int = 0
    #: records with `ok` false
    failed: int = 0
    #: final HTTP status -> records (records without a status are not counted here)
    by_status: dict[str, int] = field(default_factory=dict)
    #: error kind -> records
    by_error: dict[str, int] = field(default_factory=dict)
    #: body bytes of all records
    bytes: int = 0
    #: seconds this run took
    elapsed_s: float = 0.0
    #: records written by this run, per second of this run
    pages_per_s: float = 0.0
    #: ISO 8601 UTC start and end of this run
    started_at: str = ""
    finished_at: str = ""
    #: the run was stopped by a signal before it finished
    interrupted: bool = False
    #: records written by this run
    run_pages: int = 0
    #: 99th percentile of the event loop's lag during this run, in ms
    loop_lag_p99_ms: float = 0.0
    #: with `--since` (else None, and absent from stats.json): records whose `changed`
    #: is true, false, and null (a URL the earlier crawl has no ok record of)
    changed: int | None = None
    unchanged: int | None = None
    new: int | None = None

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        for key in ("changed", "unchanged", "new"):
            if record[key] is None:
                del record[key]
        return record

    def write(self, path: Path) -> None:
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self.to_dict(), f, indent=2)
            f.write("\n")
        os.replace(tmp, path)  # never a half-written stats.json


class Tally:
    """Running counts over records."""

    def __init__(self) -> None:
        self.pages = 0
        self.ok = 0
        self.bytes = 0
        self.by_status: Counter[str] = Counter()
        self.by_error: Counter[str] = Counter()
        self.by_changed: Counter[bool | None] = Counter()  # `changed` -> records

    def add(
        self, status: int | None, ok: bool, size: int, error_kind: str | None, changed: bool | None = None
    ) -> None:
        self.pages += 1
        self.by_changed[changed] += 1
        self.ok += bool(ok)
        self.bytes += size or 0
        if status is not None:
            self.by_status[str(status)] += 1
        if error_kind is not None:
            self.by_error[error_kind] += 1

    def add_record(self, record: dict[str, Any]) -> None:
        error = record.get("error")
        changed = record.get("changed")
        self.add(record.get("status"), bool(record.get("ok")), record.get("bytes") or 0,
                 error.get("kind") if isinstance(error, dict) else None,
                 changed if isinstance(changed, bool) else None)

    def changes(self) -> dict[str, int]:
        """The `--since` counts: records whose `changed` is true, false, null."""
        c = self.by_changed
        return {"changed": c[True], "unchanged": c[False], "new": c[None]}

    @property
    def failed(self) -> int:
        return self.pages - self.ok

    def stats(self, *, elapsed: float, run_pages: int, started_at: str, finished_at: str, interrupted: bool,
              since: bool = False, loop_lag_p99_ms: float = 0.0) -> Stats:
        """The Stats of a run: these counts (the whole output), and this run's times and rate."""
        return Stats(
            pages=self.pages,
            ok=self.ok,
            failed=self.failed,
            by_status=dict(sorted(self.by_status.items())),
            by_error=dict(sorted(self.by_error.items())),
            bytes=self.bytes,
            elapsed_s=round(elapsed, 3),
            pages_per_s=round(run_pages / elapsed, 2) if elapsed > 0 else 0.0,
            started_at=started_at,
            finished_at=finished_at,
            interrupted=interrupted,
            run_pages=run_pages,
            loop_lag_p99_ms=loop_lag_p99_ms,
            **(self.changes() if since else {}),
        )
