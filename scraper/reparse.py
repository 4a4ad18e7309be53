"""`python -m scraper reparse SRC_DIR --output DST_DIR [--config PATH]`: re-extract a crawl from its archive.

A thin layer over `Scraper.reparse`, with the crawl's progress, summary, signals
and exit codes (0 done, 1 the output cannot be written, 2 a usage or config
error, 130/143 after SIGINT/SIGTERM once the output is flushed).
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from .cli import _check_env, _fail, _folder, _Parser, execute
from .config import Config, load_config
from .errors import ConfigError
from .pipeline import Scraper

__all__ = ["main"]


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m scraper reparse",
        description="Parse a finished crawl again from its archive (a crawl run with [output] warc = true), "
        "with this config's [parse] settings, sending no request; write one record per record to DST_DIR.",
    )
    p.add_argument("src", metavar="SRC_DIR", help="the crawl's output folder (records and pages.warc.gz)")
    p.add_argument("--output", metavar="DST_DIR", required=True, type=_folder, help="where the new records go")
    p.add_argument("--config", metavar="PATH", help="config file (default: ./config.toml when it exists)")
    p.add_argument("--format", choices=("jsonl", "csv"), help="output format (overrides [output].format)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the reparse whose output is in DST_DIR")
    mode.add_argument("--overwrite", action="store_true", help="start over, replacing DST_DIR's output")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="print only fatal errors")
    loud.add_argument("-v", "--verbose", action="store_true", help="also print a line per page")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    if (complaint := _check_env()) is not None:
        return _fail(2, complaint)
    if args.output == "-":
        return _fail(2, "reparse writes to a folder: --output - is not supported")
    config_path = args.config
    if config_path is None and Path("config.toml").is_file():
        config_path = "config.toml"
    try:
        config = load_config(config_path, output=args.output, format=args.format)
    except ConfigError as e:
        return _fail(2, str(e))
    try:
        return asyncio.run(_run(args, config))
    except KeyboardInterrupt:
        return 130


async def _run(args: argparse.Namespace, config: Config) -> int:
    scraper = Scraper(config)
    return await execute(
        scraper,
        lambda progress: scraper.reparse(
            args.src, args.output, resume=args.resume, overwrite=args.overwrite, progress=progress
        ),
        quiet=args.quiet,
        verbose=args.verbose,
        under_way="the batches under way",
    )
