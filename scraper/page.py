"""Page: one output record, and the error kinds it can carry."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

__all__ = ["ERROR_KINDS", "RECORD_KEYS", "Page", "PageError", "now_iso", "record_keys"]

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
    "render",
)

#: Record keys in output order. Three are optional: `text` (`[parse].text`),
#: `markdown` (`[parse].markdown`) and `rendered` (`[render].mode` not "never").
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
    "markdown",
    "etag",
    "last_modified",
    "content_hash",
    "changed",
    "rendered",
    "error",
)
OPTIONAL_KEYS = ("text", "markdown", "rendered")


def record_keys(*, text: bool = False, markdown: bool = False, rendered: bool = False) -> tuple[str, ...]:
    """The keys of a record (and CSV columns), in output order, for these settings."""
    return _KEYS[text, markdown, rendered]


def _keys(text: bool, markdown: bool, rendered: bool) -> tuple[str, ...]:
    present = {"text": text, "markdown": markdown, "rendered": rendered}
    return tuple(k for k in RECORD_KEYS if present.get(k, True))


#: the eight possible key lists, made once: every record asks for its own
_KEYS = {(t, m, r): _keys(t, m, r) for t in (False, True) for m in (False, True) for r in (False, True)}


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
    markdown: str | None = None
    etag: str | None = None
    last_modified: str | None = None
    content_hash: str | None = None
    changed: bool | None = None
    rendered: bool = False
    error: PageError | None = None
    #: whether the record carries the optional keys `text`, `markdown` and `rendered`
    with_text: bool = field(default=False, repr=False, compare=False)
    with_markdown: bool = field(default=False, repr=False, compare=False)
    with_rendered: bool = field(default=False, repr=False, compare=False)

    def keys(self) -> tuple[str, ...]:
        return record_keys(text=self.with_text, markdown=self.with_markdown, rendered=self.with_rendered)

    def to_dict(self) -> dict[str, Any]:
        """The output record, keys in output order."""
        record = {key: getattr(self, key) for key in self.keys()}
        if self.error is not None:
            record["error"] = self.error.to_dict()
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> Page:
        """Rebuild a Page from a record read back from the output."""
        values = {k: record[k] for k in RECORD_KEYS if k in record}
        error = values.pop("error", None)
        if values.get("rendered") is None:
            values.pop("rendered", None)
        page = cls(
            **values,
            with_text="text" in record,
            with_markdown="markdown" in record,
            with_rendered="rendered" in record,
        )
        if isinstance(error, dict):
            page.error = PageError(str(error.get("kind")), str(error.get("message", "")))
        return page


def now_iso() -> str:
    """The current UTC time as ISO 8601 with milliseconds and a Z."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
