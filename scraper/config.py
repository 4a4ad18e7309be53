"""config.toml -> frozen dataclasses, validated in one place.

Every key is optional. A bad file never half-works: an unknown section or key,
a wrong type or an impossible value raises `ConfigError`, whose message names
the key and the file (the CLI prints it on one line and exits 2).
"""

from __future__ import annotations

import dataclasses
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True, kw_only=True)
class FetchConfig:
    concurrency: int = 32
    per_host: int = 4
    delay: float = 0.0
    timeout: float = 30.0
    connect_timeout: float = 10.0
    max_bytes: int = 10_000_000
    max_redirects: int = 10
    user_agent: str = f"scraper/{__version__}"
    headers: dict[str, str] = field(default_factory=dict)
    proxy: str = ""
    verify_tls: bool = True
    obey_robots: bool = True


@dataclass(frozen=True, kw_only=True)
class RetryConfig:
    attempts: int = 3
    backoff: float = 0.5
    max_backoff: float = 60.0
    statuses: tuple[int, ...] = (429, 500, 502, 503, 504)


@dataclass(frozen=True, kw_only=True)
class CrawlConfig:
    depth: int = 0
    since: str = ""
    same_host: bool = True
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    max_pages: int = 0


@dataclass(frozen=True, kw_only=True)
class FieldSpec:
    """One `[parse.fields]` entry: the first match's text, or an attribute, or all matches."""

    selector: str
    attr: str | None = None
    all: bool = False


@dataclass(frozen=True, kw_only=True)
class ParseConfig:
    batch_size: int = 16
    workers: int = 0
    text: bool = False
    markdown: bool = False
    fields: dict[str, FieldSpec] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class OutputConfig:
    dir: str = "output"
    format: str = "jsonl"
    save_html: bool = False
    warc: bool = False
    report: bool = False


@dataclass(frozen=True, kw_only=True)
class FrontierConfig:
    backend: str = "memory"
    url: str = "redis://127.0.0.1:6379/0"
    job: str = "default"
    lease: float = 60.0


@dataclass(frozen=True, kw_only=True)
class RenderConfig:
    mode: str = "never"
    match: tuple[str, ...] = ()
    pages: int = 4
    wait: str = "load"
    timeout: float = 30.0
    block: tuple[str, ...] = ("image", "font", "media")
    executable: str = ""


@dataclass(frozen=True, kw_only=True)
class Config:
    """The whole configuration: one section per table of config.toml."""

    fetch: FetchConfig = field(default_factory=FetchConfig)
    retry: RetryConfig = field(default_factory=RetryConfig)
    crawl: CrawlConfig = field(default_factory=CrawlConfig)
    parse: ParseConfig = field(default_factory=ParseConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    frontier: FrontierConfig = field(default_factory=FrontierConfig)
    render: RenderConfig = field(default_factory=RenderConfig)

    def replace(self, **overrides: Any) -> Config:
        """A copy with CLI-style overrides applied (`concurrency=64`, `depth=2`)."""
        return _apply_overrides(self, overrides, source="overrides")


_SECTIONS: dict[str, type] = {
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
    `per_host`, `depth`, `max_pages`.
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
    sections: dict[str, Any] = {}
    for name, table in data.items():
        cls = _SECTIONS.get(name)
        if cls is None:
            raise ConfigError(f"{source}: unknown section [{name}]")
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: [{name}] must be a table")
        sections[name] = _build_section(cls, name, table, source)
    config = Config(**sections)
    _validate(config, source)
    return config


def _build_section(cls: type, name: str, table: dict[str, Any], source: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in known:
            raise ConfigError(f"{source}: unknown key {name}.{key}")
        if cls is ParseConfig and key == "fields":
            values[key] = _build_fields(value, source)
            continue
        values[key] = _check_type(f"{name}.{key}", value, known[key].default, source)
    return cls(**values)


def _default_of(cls: type, key: str) -> Any:
    f = next(f for f in dataclasses.fields(cls) if f.name == key)
    if f.default is not dataclasses.MISSING:
        return f.default
    return f.default_factory()  # type: ignore[misc]


def _check_type(key: str, value: Any, default: Any, source: str) -> Any:
    """Coerce `value` to the type of the key's default, or raise naming the key."""
    if default is dataclasses.MISSING:  # dict defaults come through default_factory
        default = {}
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be true or false, not {value!r}")
    if isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}: {key} must be a whole number, not {value!r}")
    if isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}: {key} must be a number, not {value!r}")
    if isinstance(default, str):
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}: {key} must be a string, not {value!r}")
    if isinstance(default, tuple):
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, not {value!r}")
        item_type = int if key == "retry.statuses" else str
        for item in value:
            if not isinstance(item, item_type) or isinstance(item, bool):
                kind = "whole numbers" if item_type is int else "strings"
                raise ConfigError(f"{source}: {key} must be a list of {kind}, not {value!r}")
        return tuple(value)
    if isinstance(default, dict):
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise ConfigError(f"{source}: {key} must be a table of strings, not {value!r}")
        return dict(value)
    raise AssertionError(f"no type check for {key}")  # pragma: no cover


def _build_fields(value: Any, source: str) -> dict[str, FieldSpec]:
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: parse.fields must be a table")
    fields: dict[str, FieldSpec] = {}
    for name, spec in value.items():
        key = f"parse.fields.{name}"
        if isinstance(spec, str):
            fields[name] = FieldSpec(selector=spec)
        elif isinstance(spec, dict):
            unknown = set(spec) - {"selector", "attr", "all"}
            if unknown:
                raise ConfigError(f"{source}: unknown key {key}.{sorted(unknown)[0]}")
            if not isinstance(spec.get("selector"), str):
                raise ConfigError(f"{source}: {key}.selector must be a string")
            attr = spec.get("attr")
            if attr is not None and not isinstance(attr, str):
                raise ConfigError(f"{source}: {key}.attr must be a string")
            all_ = spec.get("all", False)
            if not isinstance(all_, bool):
                raise ConfigError(f"{source}: {key}.all must be true or false")
            fields[name] = FieldSpec(selector=spec["selector"], attr=attr, all=all_)
        else:
            raise ConfigError(f"{source}: {key} must be a CSS selector string or a table")
    return fields


def _validate(config: Config, source: str) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"{source}: {key} {why}")

    f, r, c, p, o, fr, rn = (
        config.fetch,
        config.retry,
        config.crawl,
        config.parse,
        config.output,
        config.frontier,
        config.render,
    )
    for key, value in (("fetch.concurrency", f.concurrency), ("fetch.per_host", f.per_host),
                       ("retry.attempts", r.attempts), ("parse.batch_size", p.batch_size),
                       ("render.pages", rn.pages)):
        if value < 1:
            raise bad(key, f"must be at least 1, not {value}")
    for key, value in (("fetch.timeout", f.timeout), ("fetch.connect_timeout", f.connect_timeout),
                       ("frontier.lease", fr.lease), ("render.timeout", rn.timeout)):
        if not value > 0:
            raise bad(key, f"must be greater than 0, not {value}")
    for key, value in (("fetch.delay", f.delay), ("retry.backoff", r.backoff),
                       ("retry.max_backoff", r.max_backoff), ("fetch.max_redirects", f.max_redirects),
                       ("crawl.depth", c.depth), ("crawl.max_pages", c.max_pages),
                       ("parse.workers", p.workers)):
        if value < 0 or value != value:  # NaN too
            raise bad(key, f"must not be negative, not {value}")
    if f.max_bytes < 1:
        raise bad("fetch.max_bytes", f"must be at least 1, not {f.max_bytes}")
    for status in r.statuses:
        if not 100 <= status <= 599:
            raise bad("retry.statuses", f"holds {status}, which is not an HTTP status")
    for key, patterns in (("crawl.allow", c.allow), ("crawl.deny", c.deny), ("render.match", rn.match)):
        for pattern in patterns:
            try:
                re.compile(pattern)
            except re.error as e:
                raise bad(key, f"has a bad regex {pattern!r}: {e}") from None
    if o.format not in ("jsonl", "csv"):
        raise bad("output.format", f"must be jsonl or csv, not {o.format!r}")
    if not o.dir:
        raise bad("output.dir", "must not be empty")
    if fr.backend not in ("memory", "redis"):
        raise bad("frontier.backend", f"must be memory or redis, not {fr.backend!r}")
    if rn.mode not in ("never", "auto", "always"):
        raise bad("render.mode", f"must be never, auto or always, not {rn.mode!r}")
    if rn.wait not in ("load", "domcontentloaded", "networkidle"):
        raise bad("render.wait", f"must be load, domcontentloaded or networkidle, not {rn.wait!r}")
    resource_types = ("document", "stylesheet", "image", "media", "font", "script", "texttrack", "xhr", "fetch",
                      "eventsource", "websocket", "manifest", "other")
    for kind in rn.block:
        if kind not in resource_types:
            raise bad("render.block", f"holds {kind!r}, which is not one of {', '.join(resource_types)}")
    if not f.user_agent.strip():
        raise bad("fetch.user_agent", "must not be empty")
    if f.proxy and not f.proxy.startswith(("http://", "https://")):
        raise bad("fetch.proxy", f"must be an http(s) URL, not {f.proxy!r}")
    for name, spec in p.fields.items():
        try:
            _check_selector(spec.selector)
        except ValueError as e:
            raise bad(f"parse.fields.{name}", f"has a bad CSS selector: {e}") from None


def _check_selector(selector: str) -> None:
    import soupsieve

    try:
        soupsieve.compile(selector)
    except Exception as e:  # soupsieve raises its own SelectorSyntaxError
        raise ValueError(str(e).splitlines()[0]) from None


def _apply_overrides(config: Config, overrides: dict[str, Any], source: str) -> Config:
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if not overrides:
        return config
    changed: dict[str, dict[str, Any]] = {}
    for flag, value in overrides.items():
        if flag not in OVERRIDES:
            raise ConfigError(f"{source}: unknown override {flag!r}")
        section, key = OVERRIDES[flag]
        default = _default_of(_SECTIONS[section], key)
        changed.setdefault(section, {})[key] = _check_type(f"--{flag.replace('_', '-')}", value, default, source)
    sections = {
        name: dataclasses.replace(getattr(config, name), **values) for name, values in changed.items()
    }
    new = dataclasses.replace(config, **sections)
    _validate(new, source)
    return new
