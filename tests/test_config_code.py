"""A Config built in code checks itself when built, with the messages config.toml gives."""

from __future__ import annotations

import dataclasses
import math

import pytest

from scraper import Config, ConfigError, load_config
from scraper.config import (
    CrawlConfig,
    FetchConfig,
    FieldSpec,
    FrontierConfig,
    OutputConfig,
    ParseConfig,
    RenderConfig,
    RetryConfig,
)

SECTIONS = {
    "fetch": FetchConfig,
    "retry": RetryConfig,
    "crawl": CrawlConfig,
    "parse": ParseConfig,
    "output": OutputConfig,
    "frontier": FrontierConfig,
    "render": RenderConfig,
}

# (section, key, a bad value, the message's end): at least one bad value for every key
BAD = [
    ("fetch", "concurrency", 0, "must be at least 1, not 0"),
    ("fetch", "concurrency", True, "must be a whole number, not True"),
    ("fetch", "per_host", 0, "must be at least 1, not 0"),
    ("fetch", "per_host", 2.5, "must be a whole number, not 2.5"),
    ("fetch", "delay", -0.5, "must not be negative, not -0.5"),
    ("fetch", "delay", math.nan, "must not be negative, not nan"),
    ("fetch", "timeout", 0.0, "must be greater than 0, not 0.0"),
    ("fetch", "timeout", "30", "must be a number, not '30'"),
    ("fetch", "connect_timeout", -1.0, "must be greater than 0, not -1.0"),
    ("fetch", "max_bytes", 0, "must be at least 1, not 0"),
    ("fetch", "max_redirects", -1, "must not be negative, not -1"),
    ("fetch", "user_agent", "  ", "must not be empty"),
    ("fetch", "user_agent", None, "must be a string, not None"),
    ("fetch", "headers", {"X-A": 1}, "must be a table of strings, not {'X-A': 1}"),
    ("fetch", "proxy", "socks5://h", "must be an http(s) URL, not 'socks5://h'"),
    ("fetch", "verify_tls", 1, "must be true or false, not 1"),
    ("fetch", "obey_robots", "yes", "must be true or false, not 'yes'"),
    ("retry", "attempts", 0, "must be at least 1, not 0"),
    ("retry", "backoff", -1.0, "must not be negative, not -1.0"),
    ("retry", "max_backoff", -2.0, "must not be negative, not -2.0"),
    ("retry", "statuses", (700,), "holds 700, which is not an HTTP status"),
    ("retry", "statuses", ("500",), "must be a list of whole numbers, not ('500',)"),
    ("retry", "statuses", "500", "must be a list, not '500'"),
    ("crawl", "depth", -1, "must not be negative, not -1"),
    ("crawl", "since", 3, "must be a string, not 3"),
    ("crawl", "same_host", 0, "must be true or false, not 0"),
    ("crawl", "allow", ("(",), "has a bad regex '('"),
    ("crawl", "deny", ("[a-",), "has a bad regex '[a-'"),
    ("crawl", "deny", (3,), "must be a list of strings, not (3,)"),
    ("crawl", "max_pages", -3, "must not be negative, not -3"),
    ("parse", "batch_size", 0, "must be at least 1, not 0"),
    ("parse", "workers", -1, "must not be negative, not -1"),
    ("parse", "text", "no", "must be true or false, not 'no'"),
    ("parse", "markdown", 1, "must be true or false, not 1"),
    ("output", "dir", "", "must not be empty"),
    ("output", "format", "xml", "must be jsonl or csv, not 'xml'"),
    ("output", "save_html", "true", "must be true or false, not 'true'"),
    ("output", "warc", 1, "must be true or false, not 1"),
    ("output", "report", "yes", "must be true or false, not 'yes'"),
    ("frontier", "backend", "postgres", "must be memory or redis, not 'postgres'"),
    ("frontier", "url", None, "must be a string, not None"),
    ("frontier", "job", 7, "must be a string, not 7"),
    ("frontier", "lease", 0.0, "must be greater than 0, not 0.0"),
    ("render", "mode", "sometimes", "must be never, auto or always, not 'sometimes'"),
    ("render", "match", ("(",), "has a bad regex '('"),
    ("render", "pages", 0, "must be at least 1, not 0"),
    ("render", "wait", "idle", "must be load, domcontentloaded or networkidle, not 'idle'"),
    ("render", "timeout", -1.0, "must be greater than 0, not -1.0"),
    ("render", "block", ("pictures",), "holds 'pictures', which is not one of document"),
    ("render", "executable", 1, "must be a string, not 1"),
]


def test_every_key_has_a_bad_value_here():
    keys = {(s, f.name) for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)} - {("parse", "fields")}
    assert keys <= {(s, k) for s, k, _, _ in BAD}


@pytest.mark.parametrize(("section", "key", "value", "why"), BAD, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in BAD])
def test_a_section_built_with_a_bad_value_raises_naming_the_key(section, key, value, why):
    with pytest.raises(ConfigError) as e:
        Config(**{section: SECTIONS[section](**{key: value})})
    assert str(e.value).startswith(f"{section}.{key} {why}")
    assert "\n" not in str(e.value)


IN_TOML = [case for case in BAD if case[2] is not None]  # TOML has no null: the key absent is its default


@pytest.mark.parametrize(("section", "key", "value", "why"), IN_TOML, ids=[f"{s}.{k}={v!r}" for s, k, v, _ in IN_TOML])
def test_config_toml_says_the_same_after_the_file_name(tmp_path, section, key, value, why):
    path = tmp_path / "c.toml"
    path.write_text(f"[{section}]\n{key} = {_toml(value)}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    # the same words up to the value, which TOML spells its own way (a list, not a tuple)
    assert str(e.value).startswith(f"{path}: {section}.{key} {why.split(', not')[0]}")


def _toml(value: object) -> str:
    if isinstance(value, float) and math.isnan(value):
        return "nan"
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\") + '"'
    if isinstance(value, dict):
        return "{ " + ", ".join(f'"{k}" = {_toml(v)}' for k, v in value.items()) + " }"
    return repr(value)


def test_the_issue_example_and_replace():
    with pytest.raises(ConfigError, match=r"^fetch\.per_host must be at least 1, not 0$"):
        Config(fetch=FetchConfig(per_host=0))
    with pytest.raises(ConfigError, match=r"^fetch\.concurrency must be at least 1, not 0$"):
        dataclasses.replace(FetchConfig(), concurrency=0)
    with pytest.raises(ConfigError, match=r"^overrides: fetch\.concurrency must be at least 1, not 0$"):
        Config().replace(concurrency=0)
    with pytest.raises(ConfigError, match=r"^overrides: --depth must be a whole number, not 'two'$"):
        load_config(None, depth="two")


def test_unknown_keys_and_wrong_section_types():
    with pytest.raises(ConfigError, match=r"^unknown key fetch\.speed$"):
        FetchConfig(speed=3)  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match=r"^fetch must be a FetchConfig, not 3$"):
        Config(fetch=3)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"^parse\.fields\.price has a bad CSS selector"):
        ParseConfig(fields={"price": FieldSpec(selector="a[[")})
    with pytest.raises(ConfigError, match=r"^parse\.fields\.price must be a FieldSpec"):
        ParseConfig(fields={"price": ".price"})  # type: ignore[dict-item]
    with pytest.raises(ConfigError, match=r"^FieldSpec\.all must be true or false, not 'yes'$"):
        FieldSpec(selector="a", all="yes")  # type: ignore[arg-type]


def test_good_values_in_code():
    c = Config(
        fetch=FetchConfig(delay=1, headers={"X-A": "b"}),
        retry=RetryConfig(statuses=[503]),  # any sequence: kept as a tuple
        crawl=CrawlConfig(allow=["/docs/"], since="old"),
        render=RenderConfig(mode="auto", block=["image"]),
    )
    assert c.fetch.delay == 1.0 and isinstance(c.fetch.delay, float)
    assert c.retry.statuses == (503,) and c.crawl.allow == ("/docs/",) and c.render.block == ("image",)
    assert dataclasses.is_dataclass(c) and c.fetch.concurrency == 32
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.crawl.depth = 2  # type: ignore[misc]
