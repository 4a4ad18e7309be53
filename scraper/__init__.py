"""scraper: a concurrent web scraper.

The layers, top to bottom (each imports only those below it; pipeline imports
reextract, and folder imports report, lazily, when their feature is asked for):

    cli, reparse        flags -> Config -> Scraper.run (or .reparse); progress, exit codes;
                        the `report` and `reparse` commands
    pipeline            Scraper, the public face (crawl, run, reparse, scrape): a run is a short
                        sequence of steps over the two rooms below, engine and folder
    engine              one crawl: producer -> queue -> dispatcher -> fetch tasks -> batches ->
                        parse -> records. Given every part it uses when built, it never sees
                        the Scraper; it uses the rooms below through their declared interface
                        only (`Frontier`, `ParsePool`, `Fetcher`)
    folder              the output folder's rules, in the order a run applies them: overwrite,
                        resume and format checks, --resume's read-back and rebuild of the crawl,
                        stats.json (also on a full disk), the report
    reextract           Scraper.reparse: a crawl's records parsed again from its archive
                        (it is handed the Scraper it serves; it names it for types only)
    report              an output folder -> report.html (reads the record files through sinks)
    render              a headless Chromium for pages built by scripts; its requests go through
                        the fetcher, limits and robots below (`[render]`)
    pool                the parse processes: their fork server, start, restart, shutdown
    frontier            the crawl's state behind one contract (`frontier.base.Frontier`): adding,
                        taking, recording (a record and the release of its URL, one step), the
                        counts, the per-host limiter, and the output file it alone writes.
                        memory: in this process (records through a `Sink`);
                        redis: the queue and leases, with its rooms redis_hosts (the limiter),
                        redis_shard (the shard writer) and redis_link (the connection, the
                        lua/*.lua scripts, the one retry policy, the heartbeat)
    fetch, robots       one request: limits, redirects, caps, retries (tenacity), and the network
                        seam (a resolver factory, `is_public`); robots.txt
    since               the index of an earlier crawl that a recrawl (`--since`) asks per URL
    limits              per-host concurrency and delay, and the global cap
    sinks, stdout,      records out (to files, or to stdout) and back in (for --resume, and
    reader, sources,    read_pages); where the seeds come from; counts and the progress line;
    stats, progress,    archive: every HTTP exchange to a WARC file, and read back
    archive
    parse, fields,      bytes -> `Parsed` (a frozen dataclass), in the worker processes; never
    markdown            imports aiohttp
    config, page,       the small shared rooms (config: pydantic dataclasses that check
    urls, errors        themselves when built)
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, OutputError, OutputExistsError, ScraperError, UsageError
from .page import Page, PageError
from .version import __version__

if TYPE_CHECKING:
    from .config import Config, load_config
    from .pipeline import Scraper, scrape
    from .reader import read_pages
    from .stats import Stats

# The crawler's names are imported on first use: a parse worker imports `scraper.parse`,
# which runs this file first, and needs neither aiohttp nor the config's pydantic models
# (a third of a second less for the parse pool to start).
_LAZY = {"Config": "config", "load_config": "config", "Scraper": "pipeline", "scrape": "pipeline",
         "read_pages": "reader", "Stats": "stats"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))  # the lazy names too (a notebook's completion)

__all__ = [
    "Config",
    "ConfigError",
    "OutputError",
    "OutputExistsError",
    "Page",
    "PageError",
    "Scraper",
    "ScraperError",
    "Stats",
    "UsageError",
    "__version__",
    "load_config",
    "read_pages",
    "scrape",
]
