"""config.toml -> frozen dataclasses that check themselves when built.

Every key is optional. A bad value never half-works: an unknown key, a wrong
type or an impossible value raises `ConfigError`, whose message names the key
(`fetch.per_host must be at least 1, not 0`). A section checks itself when it is
constructed, so `Config(fetch=FetchConfig(per_host=0))` in code fails exactly as
`per_host = 0` in config.toml does; `load_config` only adds the file's name in
front (the CLI prints the message on one line and exits 2).

Why pydantic dataclasses. They are standard dataclasses (`dataclasses.fields`,
`dataclasses.replace`, frozen), validated in `__init__` and so in `replace`
too, and pydantic reports each failure as data (the field, the kind of failure,
the limit, the input), which `_why` turns into our messages in one table. Strict
mode: `1` is not `true`, `"3"` is not a number, `2.5` is not a whole number;
an int where a float is expected is taken. Measured on the package as imported
by the CLI (~210 ms): pydantic adds ~50 ms, msgspec ~3 ms; but msgspec checks a
dataclass only when it converts data into one, not when code builds it, and
reports failures as text, and attrs classes are not dataclasses. The rules
that are ours (a regex compiles, a CSS selector parses, a status is an HTTP
status) are `AfterValidator`s next to their field.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, ValidationError
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from .errors import ConfigError
from .version import __version__

__all__ = [
    "Config",
    "ConfigError",
    "CrawlConfig",
    "FetchConfig",
    "FieldSpec",
    "FrontierConfig",
    "OutputConfig",
    "ParseConfig",
    "RenderConfig",
    "RetryConfig",
    "load_config",
]

_C = TypeVar("_C")


class _Invalid(ConfigError):
    """A value a section refused: which field, and why (`why` None: the key is unknown)."""

    def __init__(self, section: str, field: str, why: str | None, *, type_error: bool = False) -> None:
        self.section, self.field, self.why, self.type_error = section, field, why, type_error
        super().__init__(self.named(f"{section}.{field}" if section else field))

    def named(self, key: str) -> str:
        return f"unknown key {key}" if self.why is None else f"{key} {self.why}"


def _fail(why: str, field: str | None = None) -> PydanticCustomError:
    """An error of our own rules, to raise in a validator: the message's end, and the field when not the one checked."""
    return PydanticCustomError("config", "{why}", {"why": why} if field is None else {"why": why, "field": field})


def _why(error: Any, given: dict[str, Any]) -> tuple[str, str | None, bool]:
    """(field, why, a type error) of pydantic's first error; why None: an unknown key."""
    loc, kind, value = error["loc"], error["type"], error["input"]
    field = str(loc[0]) if loc else "?"
    ctx = error.get("ctx") or {}
    whole = given.get(field, value)
    if kind == "unexpected_keyword_argument":
        return field, None, False
    if kind == "config":
        return ctx.get("field", field), ctx["why"], False
    if kind == "missing":
        return field, "is missing", True
    if kind == "greater_than_equal":
        limit = ctx["ge"]
        return field, (f"must be at least {limit}" if limit else "must not be negative") + f", not {value}", False
    if kind == "greater_than":
        return field, f"must be greater than {ctx['gt']:g}, not {value}", False
    if kind == "dataclass_exact_type":
        where = ".".join(str(part) for part in loc)
        return where, f"must be a {ctx['class_name']}, not {value!r}", True
    if kind == "dict_type" or (len(loc) > 1 and isinstance(whole, dict)):
        return field, f"must be a table of strings, not {whole!r}", True
    if kind == "tuple_type":
        return field, f"must be a list, not {whole!r}", True
    if len(loc) > 1:  # an item of a list
        kind_of = "whole numbers" if kind == "int_type" else "strings"
        return field, f"must be a list of {kind_of}, not {whole!r}", True
    messages = {
        "bool_type": "must be true or false",
        "int_type": "must be a whole number",
        "float_type": "must be a number",
        "string_type": "must be a string",
    }
    return field, f"{messages.get(kind, error['msg'])}, not {value!r}", True


def _section(name: str) -> Callable[[type[_C]], type[_C]]:
    """Make a frozen, keyword-only, strictly validated dataclass whose errors are `ConfigError`s."""

    def make(cls: type[_C]) -> type[_C]:
        made: Any = dataclass(frozen=True, kw_only=True, config=_STRICT)(cls)
        init = made.__init__

        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            try:
                init(self, *args, **kwargs)
            except ValidationError as e:
                field, why, type_error = _why(e.errors()[0], kwargs)
                raise _Invalid(name, field, why, type_error=type_error) from None

        made.__init__ = __init__
        return made

    return make


_STRICT = ConfigDict(strict=True, extra="forbid")


def _regexes(patterns: tuple[str, ...]) -> tuple[str, ...]:
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as e:
            raise _fail(f"has a bad regex {pattern!r}: {e}") from None
    return patterns


def _one_of(*choices: str) -> AfterValidator:
    said = " or ".join((", ".join(choices[:-1]), choices[-1])) if len(choices) > 1 else choices[0]

    def check(value: str) -> str:
        if value not in choices:
            raise _fail(f"must be {said}, not {value!r}")
        return value

    return AfterValidator(check)


def _not_empty(value: str) -> str:
    if not value.strip():
        raise _fail("must not be empty")
    return value


def _proxy(value: str) -> str:
    if value and not value.startswith(("http://", "https://")):
        raise _fail(f"must be an http(s) URL, not {value!r}")
    return value


def _redis_url(value: str) -> str:
    # redis-py's own schemes; anything else would only fail later, at connect, without naming the key
    if not value.startswith(("redis://", "rediss://", "unix://")):
        raise _fail(f"must be a redis://, rediss:// or unix:// URL, not {value!r}")
    return value


def _statuses(statuses: tuple[int, ...]) -> tuple[int, ...]:
    for status in statuses:
        if not 100 <= status <= 599:
            raise _fail(f"holds {status}, which is not an HTTP status")
    return statuses


_RESOURCE_TYPES = ("document", "stylesheet", "image", "media", "font", "script", "texttrack", "xhr", "fetch",
                   "eventsource", "websocket", "manifest", "other")


def _resource_types(kinds: tuple[str, ...]) -> tuple[str, ...]:
    for kind in kinds:
        if kind not in _RESOURCE_TYPES:
            raise _fail(f"holds {kind!r}, which is not one of {', '.join(_RESOURCE_TYPES)}")
    return kinds


def _nan_is_negative(value: Any) -> Any:
    # NaN passes no comparison, so `ge=0` alone would let it through as "not negative"
    if isinstance(value, float) and value != value:
        raise _fail("must not be negative, not nan")
    return value


def _finite(value: float) -> float:
    # inf seconds would never elapse: a delay or a backoff that stalls the run forever,
    # a timeout that no longer caps a hostile server
    if value == float("inf"):
        raise _fail("must be a finite number of seconds, not inf")
    return value


# a header name is an RFC 9110 token; a value holds no CR, LF or NUL (they would split the request)
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _headers(headers: dict[str, str]) -> dict[str, str]:
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name):
            raise _fail(f"has a bad header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise _fail(f"has a bad value for header {name!r}: it holds a line break or NUL")
    return headers


def _no_line_break(value: str) -> str:
    if any(c in value for c in "\r\n\0"):
        raise _fail(f"must not hold a line break or NUL, not {value!r}")
    return value


# the kinds of value config.toml has: a list (any sequence in code) of strings or whole numbers
Strings = Annotated[tuple[Annotated[str, Strict()], ...], Field(strict=False)]
Regexes = Annotated[Strings, AfterValidator(_regexes)]
Wholes = Annotated[tuple[Annotated[int, Strict()], ...], Field(strict=False)]
AtLeast1 = Annotated[int, Field(ge=1)]
NotNegative = Annotated[int, Field(ge=0)]
Seconds = Annotated[float, BeforeValidator(_nan_is_negative), Field(ge=0), AfterValidator(_finite)]
Positive = Annotated[float, Field(gt=0), AfterValidator(_finite)]


@_section("fetch")
class FetchConfig:
    concurrency: AtLeast1 = 32
    per_host: AtLeast1 = 4
    delay: Seconds = 0.0
    timeout: Positive = 30.0
    connect_timeout: Positive = 10.0
    max_bytes: AtLeast1 = 10_000_000
    max_redirects: NotNegative = 10
    user_agent: Annotated[str, AfterValidator(_not_empty), AfterValidator(_no_line_break)] = f"scraper/{__version__}"
    headers: Annotated[dict[str, str], AfterValidator(_headers)] = dataclasses.field(default_factory=dict)
    proxy: Annotated[str, AfterValidator(_proxy)] = ""
    verify_tls: bool = True
    obey_robots: bool = True


@_section("retry")
class RetryConfig:
    attempts: AtLeast1 = 3
    backoff: Seconds = 0.5
    max_backoff: Seconds = 60.0
    statuses: Annotated[Wholes, AfterValidator(_statuses)] = (429, 500, 502, 503, 504)


@_section("crawl")
class CrawlConfig:
    depth: NotNegative = 0
    since: str = ""
    same_host: bool = True
    allow: Regexes = ()
    deny: Regexes = ()
    max_pages: NotNegative = 0


@_section("FieldSpec")
class FieldSpec:
    """One `[parse.fields]` entry: the first match's text, or an attribute, or all matches.

    Its selector is checked by the `ParseConfig` that holds it, which knows its name.
    """

    selector: str
    attr: str | None = None
    all: bool = False


def _selectors(fields: dict[str, FieldSpec]) -> dict[str, FieldSpec]:
    from .fields import compile_selector  # the parse processes' own engine (cssselect -> lxml XPath)

    for name, spec in fields.items():
        try:
            compile_selector(spec.selector)
        except ValueError as e:
            raise _fail(f"has a bad CSS selector: {e}", field=f"fields.{name}") from None
    return fields


@_section("parse")
class ParseConfig:
    batch_size: AtLeast1 = 16
    workers: NotNegative = 0
    text: bool = False
    markdown: bool = False
    fields: Annotated[dict[str, FieldSpec], AfterValidator(_selectors)] = dataclasses.field(default_factory=dict)


@_section("output")
class OutputConfig:
    dir: Annotated[str, AfterValidator(_not_empty)] = "output"
    format: Annotated[str, _one_of("jsonl", "csv")] = "jsonl"
    save_html: bool = False
    warc: bool = False
    report: bool = False


@_section("frontier")
class FrontierConfig:
    backend: Annotated[str, _one_of("memory", "redis")] = "memory"
    url: Annotated[str, AfterValidator(_redis_url)] = "redis://127.0.0.1:6379/0"
    job: str = "default"
    lease: Positive = 60.0


@_section("render")
class RenderConfig:
    mode: Annotated[str, _one_of("never", "auto", "always")] = "never"
    match: Regexes = ()
    pages: AtLeast1 = 4
    wait: Annotated[str, _one_of("load", "domcontentloaded", "networkidle")] = "load"
    timeout: Positive = 30.0
    block: Annotated[Strings, AfterValidator(_resource_types)] = ("image", "font", "media")
    executable: str = ""


@_section("")
class Config:
    """The whole configuration: one section per table of config.toml."""

    fetch: FetchConfig = dataclasses.field(default_factory=FetchConfig)
    retry: RetryConfig = dataclasses.field(default_factory=RetryConfig)
    crawl: CrawlConfig = dataclasses.field(default_factory=CrawlConfig)
    parse: ParseConfig = dataclasses.field(default_factory=ParseConfig)
    output: OutputConfig = dataclasses.field(default_factory=OutputConfig)
    frontier: FrontierConfig = dataclasses.field(default_factory=FrontierConfig)
    render: RenderConfig = dataclasses.field(default_factory=RenderConfig)

    def replace(self, **overrides: Any) -> Config:
        """A copy with CLI-style overrides applied (`concurrency=64`, `depth=2`)."""
        return _apply_overrides(self, overrides, source="overrides")


_SECTIONS: dict[str, Any] = {
    "fetch": FetchConfig,
    "retry": RetryConfig,
    "crawl": CrawlConfig,
    "parse": ParseConfig,
    "output": OutputConfig,
    "frontier": FrontierConfig,
    "render": RenderConfig,
}

# CLI flag name -> (section, key)
OVERRIDES: dict[str, tuple[str, str]] = {
    "output": ("output", "dir"),
    "format": ("output", "format"),
    "concurrency": ("fetch", "concurrency"),
    "per_host": ("fetch", "per_host"),
    "depth": ("crawl", "depth"),
    "max_pages": ("crawl", "max_pages"),
    "since": ("crawl", "since"),
}


def load_config(path: str | Path | None = None, **overrides: Any) -> Config:
    """Read config.toml (or take the defaults when `path` is None), then apply overrides.

    Overrides use the CLI's flag names: `output`, `format`, `concurrency`,
    `per_host`, `depth`, `max_pages`, `since`.
    """
    if path is None:
        config = Config()
    else:
        source = str(path)
        try:
            with open(path, "rb") as f:
                data = tomllib.load(f)
        except FileNotFoundError:
            raise ConfigError(f"{source}: config file not found") from None
        except OSError as e:
            raise ConfigError(f"{source}: cannot read config file: {e.strerror}") from None
        except tomllib.TOMLDecodeError as e:
            raise ConfigError(f"{source}: not valid TOML: {e}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{source}: not valid TOML: not UTF-8") from None
        config = _build(data, source)
    return _apply_overrides(config, overrides, source="overrides")


def _build(data: dict[str, Any], source: str) -> Config:
    """The file's tables -> sections; a section's own error gets the file's name in front."""
    sections: dict[str, Any] = {}
    for name, table in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        if name == "parse" and "fields" in table:
            table = {**table, "fields": _build_fields(table["fields"], source)}
        try:
            sections[name] = cls(**table)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
    return Config(**sections)


def _build_fields(value: Any, source: str) -> dict[str, FieldSpec]:
    """`[parse.fields]`: a CSS selector string is the short form of `{ selector = ... }`."""
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: parse.fields must be a table")
    fields: dict[str, FieldSpec] = {}
    for name, spec in value.items():
        key = f"parse.fields.{name}"
        if isinstance(spec, str):
            spec = {"selector": spec}
        elif not isinstance(spec, dict):
            raise ConfigError(f"{source}: {key} must be a CSS selector string or a table")
        try:
            fields[name] = FieldSpec(**spec)
        except _Invalid as e:
            raise ConfigError(f"{source}: {e.named(f'{key}.{e.field}')}") from None
    return fields


def _apply_overrides(config: Config, overrides: dict[str, Any], source: str) -> Config:
    """Overrides named by flag; a wrong type names the flag, an impossible value the key."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return config
    changed: dict[str, dict[str, Any]] = {}
    for flag, value in overrides.items():
        if flag not in OVERRIDES:
            raise ConfigError(f"{source}: unknown override {flag!r}")
        section, key = OVERRIDES[flag]
        changed.setdefault(section, {})[key] = value
    sections: dict[str, Any] = {}
    for name, values in changed.items():
        try:
            sections[name] = dataclasses.replace(getattr(config, name), **values)
        except _Invalid as e:
            flag = next(f for f, target in OVERRIDES.items() if target == (name, e.field))
            message = e.named("--" + flag.replace("_", "-")) if e.type_error else str(e)
            raise ConfigError(f"{source}: {message}") from None
    return dataclasses.replace(config, **sections)
