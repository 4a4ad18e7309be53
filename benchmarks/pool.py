"""The parse pool's life: how long a start and a close take, and what is left afterwards.

    python -m benchmarks.pool [--rounds N] [--workers N]

Each round starts a pool (fork server, workers, each worker ready) with an
`extract` defined here, by value, then closes it. After the last round it lists
the processes still below this one (there should be none: SPEC section 7).
Figures are wall-clock seconds; the load average is printed with them, since on
a shared machine it is most of the story.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import cloudpickle

from scraper.parse import Parser
from scraper.pool import ParsePool
from scraper.urls import LinkFilter

SUFFIX = "!"


def extract(soup, page):  # an extract as a notebook user writes it
    return {"h1": soup.h1.get_text() + SUFFIX if soup.h1 else None}


def children() -> list[int]:
    """The processes whose parent is this one."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and (entry / "stat").read_text().rsplit(")", 1)[1].split()[1] == str(os.getpid()):
                found.append(int(entry.name))
        except OSError:
            pass
    return found


def main() -> None:
    args = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    args.add_argument("--rounds", type=int, default=5)
    args.add_argument("--workers", type=int, default=2)
    opts = args.parse_args()
    parser = Parser(fields={}, text=False, extract=extract, link_filter=LinkFilter(True, (), ()))
    starts, closes = [], []
    for _ in range(opts.rounds):
        pool = ParsePool(parser, opts.workers)
        t = time.perf_counter()
        pool.start()
        starts.append(time.perf_counter() - t)
        t = time.perf_counter()
        pool.close()
        closes.append(time.perf_counter() - t)
    print(json.dumps({
        "workers": opts.workers,
        "start_s_median": round(statistics.median(starts), 3),
        "close_s_median": round(statistics.median(closes), 3),
        "start_s": [round(s, 3) for s in starts],
        "close_s": [round(s, 3) for s in closes],
        "parser_payload_bytes": len(cloudpickle.dumps(parser)),
        "children_left": children(),
        "load_average": [round(x, 1) for x in os.getloadavg()],
    }, indent=2))


if __name__ == "__main__":
    main()
