"""The command line: flags -> Config -> Scraper.run; progress, summary, exit codes.

Exit status: 0 the run finished; 1 a fatal error (the output cannot be
written); 2 a usage or configuration error; 130 after SIGINT and 143 after
SIGTERM, once the output is flushed and stats.json written.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import NoReturn

from .config import Config, load_config
from .errors import ConfigError, OutputError, UsageError
from .pipeline import Scraper
from .progress import Progress, summary
from .stats import Stats
from .version import __version__

__all__ = ["execute", "main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, not the usage block: the user sees what is wrong at once
        self.exit(2, f"scraper: error: {message} (see --help)\n")


def _whole(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least `minimum`."""

    def parse(value: str) -> int:
        try:
            n = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a whole number") from None
        if n < minimum:
            why = "must not be negative" if minimum == 0 else f"must be at least {minimum}"
            raise argparse.ArgumentTypeError(f"{why}, not {n}")
        return n

    return parse


_positive, _non_negative = _whole(1), _whole(0)


def _folder(value: str) -> str:
    """An argparse type: a folder name, or "-" (stdout); an empty one is a slip, not the current folder."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m scraper",
        description="Fetch every URL in URLS_FILE (and the pages they link to, with --depth), "
        "parse each HTML page, and write one record per URL to DIR/pages.jsonl.",
        epilog="Commands: 'python -m scraper report DIR [-o FILE]' writes a crawl's report.html; "
        "'python -m scraper reparse SRC_DIR --output DST_DIR' re-extracts an archived crawl (each has its --help).",
    )
    p.add_argument("urls_file", metavar="URLS_FILE", help='one URL a line; "-" reads standard input')
    p.add_argument("--config", metavar="PATH", help="config file (default: ./config.toml when it exists)")
    p.add_argument("--output", metavar="DIR", type=_folder, help="output folder (overrides [output].dir)")
    p.add_argument("--format", choices=("jsonl", "csv"), help="output format (overrides [output].format)")
    p.add_argument("--concurrency", type=_positive, metavar="N", help="requests in flight in all ([fetch].concurrency)")
    p.add_argument("--per-host", type=_positive, metavar="N", help="requests in flight to one host ([fetch].per_host)")
    p.add_argument("--depth", type=_non_negative, metavar="N", help="follow links N hops ([crawl].depth)")
    p.add_argument("--max-pages", type=_non_negative, metavar="N", help="start at most N page fetches, 0: no limit")
    p.add_argument("--since", metavar="DIR", help="recrawl: only what changed since the crawl whose output is in DIR")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="continue the crawl whose output is in DIR")
    mode.add_argument("--overwrite", action="store_true", help="start over, replacing DIR's output")
    loud = p.add_mutually_exclusive_group()
    loud.add_argument("-q", "--quiet", action="store_true", help="print only fatal errors")
    loud.add_argument("-v", "--verbose", action="store_true", help="also print a line per page")
    p.add_argument("--version", action="version", version=f"scraper {__version__}")
    return p


def _fail(code: int, message: str) -> int:
    print(f"scraper: error: {message}", file=sys.stderr)
    return code


#: environment variables holding seconds, and the least value each takes
_ENV_SECONDS = {"SCRAPER_GRACE_S": 0.0, "SCRAPER_PROGRESS_INTERVAL": 0.01}


def _check_env() -> str | None:
    """A one-line complaint about a bad environment variable, or None."""
    for name, least in _ENV_SECONDS.items():
        value = os.environ.get(name)
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            seconds = float("nan")
        if not seconds >= least or seconds == float("inf"):
            return f"{name}={value!r} must be a number of seconds, at least {least}"
    return None


#: commands given as the first argument (a URLS_FILE of that name is given as ./report)
COMMANDS = ("report", "reparse")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in COMMANDS:
        if argv[0] == "report":
            from .report import main as command
        else:
            from .reparse import main as command
        return command(argv[1:])
    args = build_parser().parse_args(argv)
    if (complaint := _check_env()) is not None:
        return _fail(2, complaint)
    config_path = args.config
    if config_path is None and Path("config.toml").is_file():
        config_path = "config.toml"
    try:
        config = load_config(
            config_path,
            output=args.output,
            format=args.format,
            concurrency=args.concurrency,
            per_host=args.per_host,
            depth=args.depth,
            max_pages=args.max_pages,
            since=args.since,
        )
    except ConfigError as e:
        return _fail(2, str(e))
    try:
        return asyncio.run(_run(args, config))
    except KeyboardInterrupt:  # a signal before the handlers were installed
        return 130


async def _run(args: argparse.Namespace, config: Config) -> int:
    scraper = Scraper(config)
    return await execute(
        scraper,
        lambda progress: scraper.run(args.urls_file, resume=args.resume, overwrite=args.overwrite, progress=progress),
        quiet=args.quiet,
        verbose=args.verbose,
        under_way="requests in flight",
    )


async def execute(
    scraper: Scraper,
    job: Callable[[Progress | None], Awaitable[Stats]],
    *,
    quiet: bool,
    verbose: bool,
    under_way: str,
) -> int:
    """Run `job` (a crawl, a reparse) as a command: progress, signals, summary, exit status.

    The first SIGINT/SIGTERM lets what is `under_way` finish and the output be
    flushed (exit 130/143); a second quits at once, leaving whole lines.
    """
    progress = None if quiet else Progress(verbose=verbose)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)

    def on_signal(signum: int) -> None:
        if scraper.interrupted_by is not None:  # a second signal: now, leaving whole lines
            scraper.kill()  # the parse workers and their fork server go first: none outlives us
            os._exit(128 + scraper.interrupted_by)
        if not quiet:
            print(
                f"\nscraper: {signal.Signals(signum).name}: finishing {under_way}, then stopping (again to quit now)",
                file=sys.stderr,
            )
        scraper.interrupt(signum)

    for signum in signals:
        loop.add_signal_handler(signum, on_signal, signum)
    try:
        async with scraper:
            stats = await job(progress)
    except (UsageError, ConfigError) as e:
        return _fail(2, str(e))
    except OutputError as e:
        return _fail(1, str(e))
    except Exception as e:  # a bug: say it on one line (the whole traceback with -v)
        if verbose:
            import traceback

            traceback.print_exc()
        return _fail(1, f"internal error: {type(e).__name__}: {e}")
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
    if not quiet:
        print(summary(stats), file=sys.stderr)
    if scraper.interrupted_by is not None:
        return 128 + scraper.interrupted_by
    return 0
