"""Page: one output record, and the error kinds it can carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ERROR_KINDS", "Page", "PageError", "now_iso"]

#: Every `error.kind` a record can carry (SPEC section 5).
ERROR_KINDS = (
    "invalid_url",
    "dns",
    "connect",
    "timeout",
    "tls",
    "protocol",
    "http",
    "too_large",
    "too_many_redirects",
    "robots",
    "blocked",
    "parse",
)

#: Record keys in output order (`text` only when `[parse].text` is on).
RECORD_KEYS = (
    "url",
    "final_url",
    "status",
    "ok",
    "depth",
    "referrer",
    "fetched_at",
    "elapsed_ms",
    "attempts",
    "content_type",
    "bytes",
    "title",
    "description",
    "links",
    "fields",
    "text",
    "error",
)


@dataclass(frozen=True, slots=True)
class PageError:
    kind: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(slots=True, kw_only=True)
class Page:
    """One URL the crawl decided to visit, and what came of it (one output record)."""

    url: str
    final_url: str | None = None
    status: int | None = None
    ok: bool = False
    depth: int = 0
    referrer: str | None = None
    fetched_at: str = ""
    elapsed_ms: int = 0
    attempts: int = 0
    content_type: str | None = None
    bytes: int = 0
    title: str | None = None
    description: str | None = None
    links: list[str] = field(default_factory=list)
    fields: dict[str, Any] = field(default_factory=dict)
    text: str | None = None
    error: PageError | None = None
    #: whether the record carries the `text` key (`[parse].text`)
    with_text: bool = field(default=False, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The output record, keys in output order."""
        record: dict[str, Any] = {}
        for key in RECORD_KEYS:
            if key == "text" and not self.with_text:
                continue
            record[key] = getattr(self, key)
        if self.error is not None:
            record["error"] = self.error.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Page:
        """Rebuild a Page from a record read back from the output."""
        values = {k: record[k] for k in RECORD_KEYS if k in record}
        error = values.pop("error", None)
        page = cls(**values, with_text="text" in record)
        if isinstance(error, dict):
            page.error = PageError(str(error.get("kind")), str(error.get("message", "")))
        return page


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
