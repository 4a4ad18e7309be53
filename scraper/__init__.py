"""scraper: a concurrent web scraper.

The layers, top to bottom (each imports only those below it):

    cli                 flags -> Config -> Scraper.run; progress, exit codes
    pipeline            Scraper: producer -> queue -> fetchers -> batches -> parse -> sink
    pool                the parse processes: their fork server, start, restart, shutdown
    reextract           Scraper.reparse: a crawl's records parsed again from its archive
    report              an output folder -> report.html (`report` command, `[output] report`)
    render              a headless Chromium for pages built by scripts; its requests go through
                        the fetcher, limits and robots below (`[render]`)
    fetch, limits,      one request and its limits; robots.txt; the crawl's state
    robots, frontier,   (in this process, or in Redis); since: the index of an
    since               earlier crawl that a recrawl (`--since`) asks per URL
    sinks, stdout,      records out (to files, or to stdout) and back in (for --resume,
    reader, sources,    and read_pages); where the seeds come from; counts
    stats, archive      (archive: every HTTP exchange to a WARC file, and read back)
    parse               bytes -> fields, in worker processes (never imports aiohttp)
    config, page,       the small shared rooms
    urls, errors
"""

from .config import Config, load_config
from .errors import ConfigError, OutputError, OutputExistsError, ScraperError, UsageError
from .page import Page, PageError
from .pipeline import Scraper, scrape
from .reader import read_pages
from .stats import Stats
from .version import __version__

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
