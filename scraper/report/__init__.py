"""The crawl report: `python -m scraper report DIR [-o FILE]` writes DIR/report.html.

    collect     one streamed pass over every shard's records into bounded state
    charts      matplotlib figures -> inline SVG (the only part that needs the `report` extra)
    document    the HTML page: summary, charts, tables; everything from the crawl escaped

The report is one file that loads nothing when viewed. It is made from the
records (the truth) and stats.json (for the run's times). `[output] report =
true` makes `Scraper.run` call `write_report` at the end of a run, interrupted
or not; `require_extra` lets it refuse to start, before any request, when
matplotlib is missing.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from ..errors import OutputError, UsageError
from .collect import Collector, iter_records, output_files, read_stats

__all__ = ["EXTRA", "Report", "main", "require_extra", "write_report"]

#: how to install what the report needs
EXTRA = "pip install 'scraper[report]'"


def require_extra() -> None:
    """Raise `UsageError` (one line naming the extra) unless matplotlib can be imported."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError(f"the crawl report needs matplotlib, which is not installed: {EXTRA}") from None


@dataclass(frozen=True)
class Report:
    """A written report: where, and how many records it covers."""

    path: Path
    pages: int


def write_report(out_dir: str | os.PathLike[str], out: str | os.PathLike[str] | None = None) -> Report:
    """Write the report of the crawl whose output is in `out_dir` to `out` (default DIR/report.html).

    Raises `UsageError` when `out_dir` holds no records or matplotlib is missing,
    `OutputError` when the output cannot be read or the report cannot be written.
    """
    folder = Path(out_dir)
    if not folder.exists():
        raise UsageError(f"{folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder")
    try:
        record_files, stats_files = output_files(folder)
    except OSError as e:
        raise OutputError(f"cannot read {folder}: {e.strerror or e}") from None
    if not record_files:
        raise UsageError(f"{folder} holds no crawl output (pages.jsonl, pages.csv, or pages-*.jsonl/csv shards)")
    require_extra()

    collector = Collector()
    for path in record_files:
        try:
            for record in iter_records(path):
                collector.add(record)
        except OSError as e:
            raise OutputError(f"cannot read {path}: {e.strerror or e}") from None
    if collector.pages == 0:
        raise UsageError(f"{folder}'s output is empty: {', '.join(p.name for p in record_files)} hold no records")
    stats, notes = read_stats(stats_files)

    from . import charts, document  # matplotlib is imported only now

    times = document.run_times(stats, collector)
    show_changed = any("changed" in s for s in stats) or bool(collector.changed or collector.unchanged)
    page = document.render(
        collector,
        charts.render_all(collector),
        {name: caption for name, caption, _ in charts.CHARTS},
        title=str(folder),
        times=times,
        files=[p.name for p in record_files],
        notes=notes,
        show_changed=show_changed,
    )
    target = Path(out) if out is not None else folder / "report.html"
    tmp = target.with_name(f".{target.name}.tmp")
    try:
        tmp.write_text(page, encoding="utf-8")
        os.replace(tmp, target)  # a reader never sees half a report, and workers may race to write it
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write {target}: {e.strerror or e}") from None
    return Report(target, collector.pages)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"scraper report: error: {message} (see --help)\n")


def main(argv: list[str]) -> int:
    """`python -m scraper report DIR [-o FILE]`; returns the exit status."""
    parser = _Parser(
        prog="python -m scraper report",
        description="Write DIR/report.html: a self-contained page (it loads nothing) with the crawl's "
        "summary, charts, slowest pages and failures, from DIR's records and stats.json (every shard).",
    )
    parser.add_argument("dir", metavar="DIR", help="a crawl's output folder")
    parser.add_argument("-o", dest="out", metavar="FILE", help="write the report here instead of DIR/report.html")
    args = parser.parse_args(argv)
    out = Path(args.out) if args.out is not None else None
    if out is not None:
        if out.is_dir():
            return _fail(2, f"-o {out} is a folder: give a file name")
        if not out.parent.is_dir():
            return _fail(2, f"-o {out}: the folder {out.parent} does not exist")
    try:
        report = write_report(args.dir, out)
    except UsageError as e:
        return _fail(2, str(e))
    except OutputError as e:
        return _fail(1, str(e))
    except KeyboardInterrupt:
        return 130
    print(f"scraper: report of {report.pages:,} records written to {report.path}", file=sys.stderr)
    return 0


def _fail(code: int, message: str) -> int:
    print(f"scraper report: error: {message}", file=sys.stderr)
    return code
