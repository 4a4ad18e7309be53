"""A deterministic static site for the benchmarks.

`generate(dir, n_pages, seed)` writes `n_pages` HTML pages of about 30 KB:
page 0 is `/index.html`, page i > 0 is `/p/<i>.html`. Every page has a
`<title>`, a `<meta name=description>`, a nav bar, an `<h1>`, paragraphs of
text and about 40 same-site links written in the mixed forms real sites use
(`/p/12.html`, `12.html`, `./12.html`, `../p/12.html`, some with `#fragments`).

Each page links to the next five pages, so a crawl from `/index.html` reaches
every page; the other links go to random pages, which keeps the crawl's depth
small (about log n). Every link points at a page of the site, so a full crawl
visits exactly `n_pages` URLs, the same set as the URL list.

The same (n_pages, seed) always gives the same bytes, and a finished site
carries a `site.json` manifest so `ensure_site` can reuse it.

    python -m benchmarks.site DIR [--pages N] [--seed S] [--base URL]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = [
    "SiteInfo",
    "ensure_site",
    "generate",
    "page_path",
    "page_urls",
    "write_urls",
]

#: Bump when the markup changes, so cached sites are rebuilt.
GENERATOR_VERSION = 1
PAGE_BYTES = 30_000
LINKS_PER_PAGE = 40
NEXT_LINKS = 5  # links to pages i+1..i+5: what makes every page reachable
MANIFEST = "site.json"

_VOCABULARY = (
    "able about above across action active actual added address admin advance after "
    "again against agent agree ahead allow almost alone along already also always "
    "amount analysis another answer anyone appear apply archive around article aside "
    "author available average away back balance basic beach become before begin "
    "behind believe below benefit better between beyond billion board body border "
    "bottom branch bridge brief bring broad budget build business button cable camera "
    "capital carbon career carry case catalog cause center central certain chain "
    "change chapter charge check choice circle city claim class clear client close "
    "cloud coast code collect color column common company compare complete concept "
    "contact content context control copy corner costs count country course cover "
    "create credit crowd culture current custom cycle daily data debate decade "
    "decide deep default degree delivery demand design detail develop device digital "
    "direct display distance domain double draft driver early economy edge editor "
    "effect effort either element energy engine enough entire entry equal error "
    "event every exact example expert export factor family feature field figure "
    "filter final finance first focus follow force format forward frame fresh front "
    "future garden general global golden graph green ground group growth guide "
    "handle harbor header health heavy height history holder house human image "
    "import index input inside island issue journal kernel label large launch layer "
    "leader level library light limit linear little local logic machine market "
    "matter measure medium member memory method middle minute mirror mobile model "
    "modern module moment motion mountain native network night normal number object "
    "office online option order origin output owner package panel paper partner "
    "pattern people period person phase picture pilot place planet platform point "
    "policy portal power press price primary private process product profile "
    "program project public quality quarter query quick radio range rapid reader "
    "record region release report request result review river route sample scale "
    "schema screen search season second section select server service session "
    "shadow signal silver simple single source space speaker special stable stage "
    "standard station status stream street string strong studio style subject "
    "summer supply surface system table target theory thread ticket timber title "
    "token topic total tower track trade travel update upper usage valley value "
    "vector version video village visual volume water weather window winter within "
    "worker world writer yellow zone"
)
_WORDS = _VOCABULARY.split()

_STYLE = (
    "<style>body{font-family:system-ui,sans-serif;margin:0;color:#222}"
    "header,footer{background:#f4f4f4;padding:1em}nav a{margin-right:1em}"
    "main{max-width:48em;margin:auto;padding:1em}.related li{display:inline}"
    "</style>"
)


@dataclass(frozen=True)
class SiteInfo:
    """What `generate` wrote: where, how many pages and bytes, and how deep a crawl must go."""

    root: str
    n_pages: int
    seed: int
    total_bytes: int
    max_depth: int  # hops from /index.html to the farthest page (breadth-first)
    version: int = GENERATOR_VERSION


def page_path(i: int) -> str:
    """The path of page i relative to the site root (no leading slash)."""
    return "index.html" if i == 0 else f"p/{i}.html"


def page_urls(base: str, n_pages: int) -> Iterator[str]:
    """Every page's URL on a server whose root is `base` (e.g. "http://127.0.0.1:8080")."""
    base = base.rstrip("/")
    for i in range(n_pages):
        yield f"{base}/{page_path(i)}"


def write_urls(
    path: str | Path,
    base: str,
    n_pages: int,
    *,
    lines: int | None = None,
    unique: bool = False,
) -> Path:
    """Write a urls.txt for the site served at `base`, one URL a line.

    By default it lists each page once. With `lines`, it cycles through the
    pages until it has written that many lines; `unique` then adds a
    `?line=K` query so no two lines are the same URL (the server ignores it).
    """
    path = Path(path)
    total = n_pages if lines is None else lines
    urls = list(page_urls(base, n_pages))
    chunk: list[str] = []
    with path.open("w", encoding="ascii", newline="\n") as f:
        for k in range(total):
            url = urls[k % n_pages]
            chunk.append(f"{url}?line={k}\n" if unique else url + "\n")
            if len(chunk) >= 10_000:  # a few large writes: 2M lines take about a second
                f.write("".join(chunk))
                chunk.clear()
        f.write("".join(chunk))
    return path


def _targets(i: int, n_pages: int, rng: random.Random) -> list[int]:
    """The pages page i links to, in document order (nav links excluded)."""
    following = [j for j in range(i + 1, i + 1 + NEXT_LINKS) if j < n_pages]
    others = [rng.randrange(n_pages) for _ in range(LINKS_PER_PAGE - 4 - len(following))]
    return following + others


def _href(source: int, target: int, rng: random.Random) -> str:
    """A link from page `source` to page `target` in one of the forms real sites mix."""
    if target == 0:
        href = rng.choice(("/index.html", "../index.html")) if source else "index.html"
    elif source == 0:  # index.html sits at the root, beside p/
        href = rng.choice((f"/p/{target}.html", f"p/{target}.html", f"./p/{target}.html"))
    else:
        href = rng.choice((f"/p/{target}.html", f"{target}.html", f"./{target}.html", f"../p/{target}.html"))
    if rng.random() < 0.2:
        href += f"#s{rng.randrange(1, 10)}"
    return href


def _sentence(rng: random.Random) -> str:
    words = rng.choices(_WORDS, k=rng.randrange(8, 20))
    return " ".join(words).capitalize() + "."


def _page(i: int, n_pages: int, seed: int) -> tuple[str, list[int]]:
    """The HTML of page i and the pages it links to."""
    rng = random.Random(seed * 1_000_003 + i)  # per page: any page can be built alone
    targets = _targets(i, n_pages, rng)
    topic = " ".join(rng.choices(_WORDS, k=3)).title()
    prev_page = max(i - 1, 0)
    next_page = min(i + 1, n_pages - 1)
    head = (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>Page {i}: {topic}</title>\n"
        f'<meta name="description" content="Page {i} of the benchmark site, about '
        f'{topic.lower()}. {_sentence(rng)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f'{_STYLE}\n</head>\n<body>\n<header id="top">\n<nav>\n'
        f'<a href="{_href(i, 0, rng)}">Home</a>\n'
        f'<a href="{_href(i, prev_page, rng)}">Previous</a>\n'
        f'<a href="{_href(i, next_page, rng)}">Next</a>\n'
        '<a href="#top">Top</a>\n</nav>\n</header>\n<main>\n'
        f"<h1>{topic}</h1>\n"
    )
    parts = [head]
    size = len(head)
    tail_links = targets[:NEXT_LINKS]  # the "next pages" list goes after the text
    inline = targets[NEXT_LINKS:]
    section = 0
    # Text with the random links spread through it, until the page is ~30 KB.
    budget = PAGE_BYTES - 1200
    while size < budget or inline:
        if section < 9 and rng.random() < 0.15:
            section += 1
            block = f'<h2 id="s{section}">{_sentence(rng)[:-1]}</h2>\n'
        else:
            sentences = [_sentence(rng) for _ in range(rng.randrange(3, 7))]
            if inline and (size > budget or rng.random() < 0.5):
                j = inline.pop()
                anchor = " ".join(rng.choices(_WORDS, k=2))
                sentences.insert(
                    rng.randrange(len(sentences) + 1),
                    f'See <a href="{_href(i, j, rng)}">{anchor}</a>.',
                )
            block = "<p>" + " ".join(sentences) + "</p>\n"
        parts.append(block)
        size += len(block)
    items = "".join(f'<li><a href="{_href(i, j, rng)}">Page {j}</a></li>\n' for j in tail_links)
    parts.append(
        f'<ul class="related">\n{items}</ul>\n</main>\n'
        f"<footer><p>Benchmark site, page {i} of {n_pages}.</p></footer>\n"
        "<script>document.documentElement.classList.add('js');</script>\n"
        "</body>\n</html>\n"
    )
    return "".join(parts), [*targets, 0, prev_page, next_page]


def _max_depth(links: list[list[int]]) -> int:
    """Breadth-first hops from page 0 to the farthest page (all pages are reachable)."""
    depth = [-1] * len(links)
    depth[0] = 0
    queue = deque([0])
    while queue:
        i = queue.popleft()
        for j in links[i]:
            if depth[j] < 0:
                depth[j] = depth[i] + 1
                queue.append(j)
    if min(depth) < 0:
        raise AssertionError("generator bug: a page is unreachable from /index.html")
    return max(depth)


def generate(dir: str | Path, n_pages: int = 5000, seed: int = 0, *, base: str | None = None) -> SiteInfo:
    """Write the site into `dir` (created if needed) and its `site.json` manifest.

    With `base` (the server root URL), also write `dir/urls.txt` listing every page.
    """
    if n_pages < 1:
        raise ValueError("n_pages must be at least 1")
    root = Path(dir)
    (root / "p").mkdir(parents=True, exist_ok=True)
    (root / MANIFEST).unlink(missing_ok=True)  # a half-written site must not look finished
    links: list[list[int]] = []
    total = 0
    for i in range(n_pages):
        html, targets = _page(i, n_pages, seed)
        data = html.encode("utf-8")
        (root / page_path(i)).write_bytes(data)
        links.append(targets)
        total += len(data)
    info = SiteInfo(str(root), n_pages, seed, total, _max_depth(links))
    if base is not None:
        write_urls(root / "urls.txt", base, n_pages)
    (root / MANIFEST).write_text(json.dumps(asdict(info), indent=2) + "\n")
    return info


def ensure_site(dir: str | Path, n_pages: int = 5000, seed: int = 0) -> SiteInfo:
    """The site in `dir`, generated only when no matching finished one is there."""
    manifest = Path(dir) / MANIFEST
    try:
        info = SiteInfo(**json.loads(manifest.read_text()))
    except (OSError, ValueError, TypeError):
        return generate(dir, n_pages, seed)
    if (info.n_pages, info.seed, info.version) != (n_pages, seed, GENERATOR_VERSION):
        return generate(dir, n_pages, seed)
    return SiteInfo(str(Path(dir)), info.n_pages, info.seed, info.total_bytes, info.max_depth)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the benchmark site.")
    parser.add_argument("dir")
    parser.add_argument("--pages", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--base", help="server root URL; also writes DIR/urls.txt")
    args = parser.parse_args(argv)
    info = generate(args.dir, args.pages, args.seed, base=args.base)
    print(json.dumps(asdict(info)))


if __name__ == "__main__":
    main()
