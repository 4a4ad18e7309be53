"""SPEC statements checked from the outside, one test per gap they once had.

Each test states the sentence of SPEC.md it holds the product to.
"""

from __future__ import annotations

import json

import pytest

from scraper import ConfigError, load_config
from scraper.config import Config, FetchConfig
from scraper.parse import Parser
from scraper.pool import ParsePool
from scraper.urls import LinkFilter
from tests.conftest import run_cli


@pytest.mark.parametrize(
    ("text", "key"),
    [
        # an impossible value: a delay or backoff of inf seconds never elapses, the run never ends
        ("[fetch]\ndelay = inf", "fetch.delay"),
        ("[fetch]\ntimeout = inf", "fetch.timeout"),
        ("[fetch]\nconnect_timeout = inf", "fetch.connect_timeout"),
        ("[retry]\nbackoff = inf", "retry.backoff"),
        ("[retry]\nmax_backoff = inf", "retry.max_backoff"),
        ("[frontier]\nlease = inf", "frontier.lease"),
        ("[render]\ntimeout = inf", "render.timeout"),
        # a header that cannot be sent: not an HTTP token, or a value that would split the request
        ('[fetch]\nheaders = { "bad name" = "x" }', "fetch.headers"),
        ('[fetch]\nheaders = { "X-A" = "a\\nb" }', "fetch.headers"),
        ('[fetch]\nuser_agent = "bot\\r\\nX-Evil: 1"', "fetch.user_agent"),
    ],
)
def test_impossible_values_name_key_and_file(tmp_path, text, key):
    """SPEC 4: an impossible value stops the run with a message that names the key and the file."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert key in str(e.value) and str(path) in str(e.value)
    assert "\n" not in str(e.value)


def test_headers_that_can_be_sent_are_kept():
    c = Config(fetch=FetchConfig(headers={"X-Token": "a b;c=1", "Accept-Language": "fr"}))
    assert c.fetch.headers == {"X-Token": "a b;c=1", "Accept-Language": "fr"}


async def test_cli_bad_header_exits_2_before_any_request(tmp_path):
    """SPEC 3/4: bad config is exit 2 with one line, and nothing is fetched or written."""
    cfg = tmp_path / "config.toml"
    cfg.write_text('[fetch]\nheaders = { "X" = "a\\nb" }\n')
    urls = tmp_path / "urls.txt"
    urls.write_text("http://127.0.0.1:9/\n")
    result = await run_cli(str(urls), "--config", str(cfg), "--output", str(tmp_path / "out"))
    assert result.code == 2
    assert result.stderr.strip().splitlines() == [
        f"scraper: error: {cfg}: fetch.headers has a bad value for header 'X': it holds a line break or NUL"
    ]
    assert not (tmp_path / "out").exists()


def test_pool_start_after_close_is_quiet():
    """A run with nothing to parse closes the pool while its start is still on the way: no error escapes.

    (It used to print a `RuntimeError: cannot schedule new futures after shutdown`
    traceback on stderr of a run whose urls.txt held only blank lines.)
    """
    pool = ParsePool(Parser(fields={}, text=False, extract=None, link_filter=LinkFilter(True, (), ())), 1)
    pool.close()
    pool.start()  # returns, starts nothing
    assert pool._executor is None


@pytest.mark.parametrize("url", ["http://exa mple.com/", "http://ex%20ample.com/", "https://a<b>.org/"])
def test_a_host_with_forbidden_characters_is_not_a_url(url):
    """SPEC 3: a line that is not an http(s) URL is not fetched (a host name holds no space, `<`, `%`)."""
    from scraper.urls import normalize

    assert normalize(url) is None


async def test_cli_host_with_a_space_is_invalid_url_with_its_line(tmp_path):
    """SPEC 3: such a line gets an `invalid_url` record saying `line N`, and is never looked up."""
    urls = tmp_path / "urls.txt"
    urls.write_text("# a comment\nhttp://exa mple.com/page\n")
    result = await run_cli(str(urls), "--output", "-", "-q", cwd=tmp_path)
    assert result.code == 0, result.stderr
    [line] = result.stdout.splitlines()
    record = json.loads(line)
    assert record["url"] == "http://exa mple.com/page"
    assert record["error"]["kind"] == "invalid_url" and "line 2" in record["error"]["message"]
    assert (record["status"], record["attempts"], record["final_url"]) == (None, 0, None)
