"""config.toml: defaults, overrides, and a one-line error naming key and file for each bad value."""

from __future__ import annotations

import dataclasses
import tomllib

import pytest

from scraper import Config, ConfigError, load_config
from scraper.config import FieldSpec
from tests.conftest import ROOT, run_cli


def test_shipped_config_toml_equals_the_defaults():
    shipped = load_config(ROOT / "config.toml")
    assert shipped == Config()
    # and it names every key of every section
    with open(ROOT / "config.toml", "rb") as f:
        data = tomllib.load(f)
    for section in ("fetch", "retry", "crawl", "parse", "output", "frontier", "render"):
        keys = {f.name for f in dataclasses.fields(getattr(Config(), section))} - {"fields"}
        assert keys <= set(data[section]), f"config.toml lacks {section}: {keys - set(data[section])}"


def test_defaults():
    c = Config()
    assert c.fetch.concurrency == 32 and c.fetch.per_host == 4 and c.fetch.delay == 0.0
    assert c.fetch.timeout == 30.0 and c.fetch.connect_timeout == 10.0
    assert c.fetch.max_bytes == 10_000_000 and c.fetch.max_redirects == 10
    assert c.fetch.user_agent.startswith("scraper/") and c.fetch.obey_robots is True
    assert c.retry.attempts == 3 and c.retry.backoff == 0.5 and c.retry.max_backoff == 60.0
    assert c.retry.statuses == (429, 500, 502, 503, 504)
    assert c.crawl.depth == 0 and c.crawl.same_host is True and c.crawl.max_pages == 0
    assert c.parse.batch_size == 16 and c.parse.workers == 0 and c.parse.text is False
    assert c.output.dir == "output" and c.output.format == "jsonl" and c.output.save_html is False
    assert c.frontier.backend == "memory" and c.frontier.lease == 60.0


def test_config_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        Config().fetch.concurrency = 3  # type: ignore[misc]


def test_load_reads_values_and_fields(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(
        """
[fetch]
concurrency = 64
delay = 1          # an int where a float is expected is fine
headers = { "X-Token" = "abc" }
[retry]
statuses = [503]
[crawl]
deny = ["/logout"]
[parse.fields]
price = ".price"
images = { selector = "img", attr = "src", all = true }
"""
    )
    c = load_config(path)
    assert c.fetch.concurrency == 64
    assert c.fetch.delay == 1.0 and isinstance(c.fetch.delay, float)
    assert c.fetch.headers == {"X-Token": "abc"}
    assert c.retry.statuses == (503,)
    assert c.crawl.deny == ("/logout",)
    assert c.parse.fields == {
        "price": FieldSpec(selector=".price"),
        "images": FieldSpec(selector="img", attr="src", all=True),
    }


def test_overrides_take_flag_names(tmp_path):
    c = load_config(None, concurrency=64, depth=2, per_host=3, max_pages=10, output=str(tmp_path), format="csv")
    assert (c.fetch.concurrency, c.crawl.depth, c.fetch.per_host, c.crawl.max_pages) == (64, 2, 3, 10)
    assert c.output.dir == str(tmp_path) and c.output.format == "csv"
    assert Config().replace(depth=1).crawl.depth == 1


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[fetch]\nconcurrency = 0", "fetch.concurrency"),
        ("[fetch]\nper_host = -1", "fetch.per_host"),
        ("[fetch]\ntimeout = -1.0", "fetch.timeout"),
        ("[fetch]\ntimeout = 0", "fetch.timeout"),
        ("[fetch]\nconnect_timeout = 0", "fetch.connect_timeout"),
        ("[fetch]\ndelay = -0.5", "fetch.delay"),
        ("[fetch]\nmax_bytes = 0", "fetch.max_bytes"),
        ("[fetch]\nmax_redirects = -1", "fetch.max_redirects"),
        ("[fetch]\nconcurrency = \"many\"", "fetch.concurrency"),
        ("[fetch]\nconcurrency = 2.5", "fetch.concurrency"),
        ("[fetch]\nobey_robots = \"yes\"", "fetch.obey_robots"),
        ("[fetch]\nheaders = { a = 1 }", "fetch.headers"),
        ("[fetch]\nproxy = \"socks5://x\"", "fetch.proxy"),
        ("[fetch]\nspeed = 3", "fetch.speed"),
        ("[retry]\nattempts = 0", "retry.attempts"),
        ("[retry]\nstatuses = [700]", "retry.statuses"),
        ("[retry]\nstatuses = \"500\"", "retry.statuses"),
        ("[retry]\nbackoff = -1", "retry.backoff"),
        ("[crawl]\ndepth = -1", "crawl.depth"),
        ("[crawl]\nmax_pages = -3", "crawl.max_pages"),
        ("[crawl]\nallow = [\"(unclosed\"]", "crawl.allow"),
        ("[crawl]\ndeny = [\"[a-\"]", "crawl.deny"),
        ("[crawl]\nsame_host = 1", "crawl.same_host"),
        ("[parse]\nbatch_size = 0", "parse.batch_size"),
        ("[parse]\nworkers = -1", "parse.workers"),
        ("[parse.fields]\nprice = 3", "parse.fields.price"),
        ("[parse.fields]\nprice = { attr = \"href\" }", "parse.fields.price.selector"),
        ("[parse.fields]\nprice = { selector = \"a\", every = true }", "parse.fields.price.every"),
        ("[parse.fields]\nprice = \"a[[\"", "parse.fields.price"),
        ("[output]\nformat = \"xml\"", "output.format"),
        ("[frontier]\nbackend = \"postgres\"", "frontier.backend"),
        ("[frontier]\nlease = 0", "frontier.lease"),
        ("[colour]\nx = 1", "[colour]"),
        ("fetch = 3", "[fetch]"),
    ],
)
def test_bad_value_names_key_and_file(tmp_path, text, key):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    message = str(e.value)
    assert key in message
    assert str(path) in message
    assert "\n" not in message


def test_not_toml_and_missing_file(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[fetch\nconcurrency = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path)
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")


@pytest.mark.parametrize(
    ("config_text", "args", "needle"),
    [
        ("[fetch]\nconcurrency = 0\n", [], "fetch.concurrency"),
        ("[fetch]\nunknown_key = 1\n", [], "fetch.unknown_key"),
        ("[crawl]\nallow = [\"(\"]\n", [], "crawl.allow"),
        ("", ["--concurrency", "0"], "--concurrency"),
        ("", ["--depth", "-1"], "--depth"),
        ("", ["--format", "xml"], "--format"),
        ("", ["--frobnicate"], "--frobnicate"),
    ],
)
async def test_cli_exits_2_with_one_line(tmp_path, config_text, args, needle):
    cfg = tmp_path / "config.toml"
    cfg.write_text(config_text)
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "out"), *args)
    assert result.code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0]
    assert "Traceback" not in result.stderr
    if config_text:
        assert str(cfg) in lines[0]
    assert not (tmp_path / "out" / "pages.jsonl").exists()


async def test_cli_missing_config_and_missing_urls_file(tmp_path):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(urls), "--config", str(tmp_path / "nope.toml"), "--output", str(tmp_path / "o"))
    assert result.code == 2 and "nope.toml" in result.stderr and "Traceback" not in result.stderr
    result = await run_cli(str(tmp_path / "missing.txt"), "--output", str(tmp_path / "o"), cwd=tmp_path)
    assert result.code == 2 and "missing.txt" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("name", "value"),
    [("SCRAPER_GRACE_S", "soon"), ("SCRAPER_GRACE_S", "-1"), ("SCRAPER_PROGRESS_INTERVAL", "0"),
     ("SCRAPER_PROGRESS_INTERVAL", "nan")],
)
async def test_bad_environment_values_exit_2(tmp_path, monkeypatch, name, value):
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    monkeypatch.setenv(name, value)
    result = await run_cli(str(urls), "--output", str(tmp_path / "out"), cwd=tmp_path)
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [f"scraper: error: {name}={value!r} must be a number of seconds, "
                                                   f"at least {0.0 if name == 'SCRAPER_GRACE_S' else 0.01}"]
    assert not (tmp_path / "out").exists()


def test_bad_worker_name(monkeypatch):
    from scraper.errors import UsageError
    from scraper.frontier.redis import worker_name

    monkeypatch.setenv("SCRAPER_WORKER", "../etc")
    with pytest.raises(UsageError, match="SCRAPER_WORKER"):
        worker_name()
    monkeypatch.setenv("SCRAPER_WORKER", "w-1.a_b")
    assert worker_name() == "w-1.a_b"
