"""`read_pages(dir)`: a crawl's output folder back as Pages, the first line of a data job.

    pandas.DataFrame(p.to_dict() for p in read_pages("output"))

The folder is read as a stream, one record at a time, so a 10-million-record crawl
never sits in memory: `pages.jsonl` or `pages.csv`, and every worker's shard
(`pages-<worker>.jsonl`) of a shared crawl. A crawl still running, interrupted or
killed may end in a torn last line: it is skipped, as `--resume` would cut it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .page import Page
from .sinks import iter_records, output_files

__all__ = ["read_pages"]


def read_pages(folder: str | os.PathLike[str]) -> Iterator[Page]:
    """The Pages of a finished or interrupted crawl's output folder, streamed.

    JSONL or CSV, every shard of a shared crawl; a torn last line is skipped.
    Raises FileNotFoundError at once (not at the first `next`) when the folder
    holds no output.
    """
    folder = Path(folder)
    files = output_files(folder) if folder.is_dir() else []
    if not files:
        what = "does not exist" if not folder.exists() else "holds no pages.jsonl or pages.csv"
        raise FileNotFoundError(f"{folder} {what}: not a crawl's output folder")
    return (Page.from_dict(record) for path in files for record in iter_records(path))
