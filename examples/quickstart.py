"""The quick start: crawl the shipped example site, served locally for the length of the crawl.

    python examples/quickstart.py [more flags for the crawl]

It serves examples/site on 127.0.0.1 (port 8000, the one urls.txt names, or any
free port when 8000 is taken), runs the main job on it exactly as

    python -m scraper urls.txt --depth 2 --overwrite

would, then stops the server: nothing is left running. The records are in
output/pages.jsonl, the counts in output/stats.json (under the current folder,
or the folder given with --output).
"""

from __future__ import annotations

import functools
import http.server
import sys
import tempfile
import threading
from pathlib import Path

from scraper import cli

PROJECT = Path(__file__).resolve().parent.parent
SITE = PROJECT / "examples" / "site"
URLS = PROJECT / "urls.txt"
PORT = 8000


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the crawl's own progress is enough
        pass


def serve(directory: Path) -> http.server.ThreadingHTTPServer:
    """Serve `directory` on 127.0.0.1, on PORT when it is free, on a free port when not."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    try:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), handler)
    except OSError:
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, name="example-site", daemon=True).start()
    return server


def main(argv: list[str]) -> int:
    server = serve(SITE)
    try:
        port = server.server_address[1]
        seeds = URLS.read_text(encoding="utf-8").replace("127.0.0.1:8000", f"127.0.0.1:{port}")
        with tempfile.TemporaryDirectory() as tmp:
            urls = Path(tmp) / "urls.txt"
            urls.write_text(seeds, encoding="utf-8")
            print(f"serving {SITE} on http://127.0.0.1:{port}/ while it is crawled", file=sys.stderr)
            return cli.main([str(urls), "--depth", "2", "--overwrite", *argv])
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
