"""The report's charts: matplotlib figures rendered to inline SVG.

Why matplotlib and SVG: the seven charts come to ~130 KB of SVG and need no
script, so the page opens offline, prints, and works with scripts disabled;
plotly, the other candidate, inlines its 4.8 MB JavaScript bundle into every
report. Text stays text (`svg.fonttype = "none"`), so the labels can be
searched and copied, and mathtext is off, so a `$` in a host name or content
type is drawn as it is. Each chart gets its own `svg.hashsalt`, so the ids
inside the SVGs never collide when several sit in one page.

Matplotlib is imported here only: `scraper.report` imports this module when it
renders, after checking that the `report` extra is installed.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import matplotlib
from matplotlib.figure import Figure

from ..page import ERROR_KINDS
from .collect import Collector, HostTally

__all__ = ["CHARTS", "render_all"]

_RC = {
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.size": 9,
    "font.family": "sans-serif",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "axes.axisbelow": True,
    "legend.frameon": False,
    "legend.fontsize": 8,
}
_WIDTH = 7.2  # inches; the page scales every chart to its column

# tab20's strong half, then its light half: one fixed colour per error kind in every chart
_TAB20 = [matplotlib.colormaps["tab20"](i) for i in (*range(0, 20, 2), *range(1, 20, 2))]
_KIND_COLOUR = {kind: _TAB20[i] for i, kind in enumerate(ERROR_KINDS)}
_STATUS_COLOUR = {1: "#7f7f7f", 2: "#2ca02c", 3: "#1f77b4", 4: "#ff7f0e", 5: "#d62728"}
_BLUE = "#1f77b4"
_RED = "#d62728"


def _kind_colour(kind: str) -> Any:
    return _KIND_COLOUR.get(kind, "#9e9e9e")


def _short(text: str, n: int = 42) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _ms(v: float) -> str:
    return f"{v / 1000:,.1f} s" if v >= 10_000 else f"{v:,.0f} ms"


def _nothing(ax: Any, text: str) -> None:
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="#666666")


def _count_axis(axis: Any) -> None:
    axis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    axis.set_major_formatter(matplotlib.ticker.StrMethodFormatter("{x:,.0f}"))


# --- the charts ------------------------------------------------------------------


def timeline(c: Collector) -> Figure:
    """Pages finished over time: the running total (and failures), and the rate per bucket."""
    starts, counts, failed = c.timeline.series()
    fig = Figure(figsize=(11, 4.0), layout="constrained")  # the one full-width chart
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 2))
    top.set_title("Pages finished over time")
    if not starts:
        _nothing(top, "no record has a fetched_at time")
        bottom.axis("off")
        return fig
    width = c.timeline.width
    # each bucket's count is drawn at the bucket's end: the total reached by then
    ends = [datetime.fromtimestamp(t + width, UTC) for t in starts]
    xs = [datetime.fromtimestamp(starts[0], UTC), *ends]
    total, bad = [0], [0]
    for n, f in zip(counts, failed, strict=True):
        total.append(total[-1] + n)
        bad.append(bad[-1] + f)
    top.plot(xs, total, color=_BLUE, lw=1.6, label="all pages")
    top.fill_between(xs, bad, color=_RED, alpha=0.35, lw=0, label="failed")
    top.plot(xs, bad, color=_RED, lw=1)
    top.set_ylabel("pages finished")
    top.set_ylim(bottom=0)
    _count_axis(top.yaxis)
    top.legend(loc="upper left")
    rate = [n / width for n in counts]
    bottom.bar([datetime.fromtimestamp(t, UTC) for t in starts], rate, width=width / 86400, align="edge",
               color=_BLUE, alpha=0.7, lw=0)
    bottom.set_ylabel("pages/s")
    every = f"{width:g} s" if width < 120 else f"{width / 60:g} min"
    bottom.set_xlabel(f"time (UTC), buckets of {every}")
    locator = matplotlib.dates.AutoDateLocator(tz=UTC)
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(matplotlib.dates.ConciseDateFormatter(locator, tz=UTC))
    return fig


def statuses(c: Collector) -> Figure:
    """Records per final HTTP status, coloured by class."""
    fig = Figure(figsize=(_WIDTH, 3.2), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Status codes")
    items = sorted(c.by_status.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    labels = ["none" if s is None else str(s) for s, _ in items]
    colours = ["#bdbdbd" if s is None else _STATUS_COLOUR.get(s // 100, "#7f7f7f") for s, _ in items]
    bars = ax.bar(labels, [n for _, n in items], color=colours)
    ax.bar_label(bars, labels=[f"{n:,}" for _, n in items], fontsize=8, padding=2)
    ax.set_ylabel("pages")
    ax.set_xlabel('final status ("none": no response came)')
    ax.margins(y=0.15)
    _count_axis(ax.yaxis)
    ax.grid(axis="x", visible=False)
    return fig


def _host_labels(hosts: list[tuple[str, HostTally]]) -> list[str]:
    return [f"{_short(name)} ({t.pages:,})" for name, t in hosts]


def errors_per_host(c: Collector) -> Figure:
    """Failed pages of the busiest hosts, stacked by error kind."""
    hosts = c.busiest(20)
    fig = Figure(figsize=(_WIDTH, 1.4 + 0.26 * max(len(hosts), 5)), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Error kinds per host (the 20 busiest hosts; pages in brackets)")
    kinds_here: set[str] = set()
    for _, t in hosts:
        if t.errors:
            kinds_here.update(t.errors)
    if not kinds_here:
        _nothing(ax, "no failed pages on these hosts")
        return fig
    order = [k for k in ERROR_KINDS if k in kinds_here] + sorted(kinds_here - set(ERROR_KINDS))
    ys = list(range(len(hosts)))[::-1]  # the busiest on top
    left = [0] * len(hosts)
    for kind in order:
        values = [t.errors[kind] if t.errors else 0 for _, t in hosts]
        ax.barh(ys, values, left=left, color=_kind_colour(kind), label=kind, height=0.7)
        left = [a + b for a, b in zip(left, values, strict=True)]
    ax.set_yticks(ys, _host_labels(hosts))
    ax.set_xlabel("failed pages")
    _count_axis(ax.xaxis)
    ax.grid(axis="y", visible=False)
    fig.legend(loc="outside lower center", ncols=min(len(order), 7))
    return fig


def times_per_host(c: Collector) -> Figure:
    """Median, 90th and 99th percentile of elapsed_ms for the busiest hosts."""
    hosts = [(name, t) for name, t in c.busiest(20) if t.times.count]
    fig = Figure(figsize=(_WIDTH, 1.4 + 0.26 * max(len(hosts), 5)), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Response times per host (the 20 busiest hosts)")
    if not hosts:
        _nothing(ax, "no page was requested")
        return fig
    ys = list(range(len(hosts)))[::-1]
    p50, p90, p99 = zip(*(t.times.quantiles(0.5, 0.9, 0.99) for _, t in hosts), strict=True)
    ax.hlines(ys, p50, p99, color="#9e9e9e", lw=1.2)
    ax.scatter(p50, ys, marker="o", color=_BLUE, label="median", zorder=3)
    ax.scatter(p90, ys, marker="D", s=22, color="#ff7f0e", label="90th percentile", zorder=3)
    ax.scatter(p99, ys, marker="^", s=30, color=_RED, label="99th percentile", zorder=3)
    for y, v in zip(ys, p99, strict=True):
        ax.annotate(_ms(v), (v, y), xytext=(6, -3), textcoords="offset points", fontsize=7, color="#555555")
    low = min(v for v in p50 if v > 0) if any(v > 0 for v in p50) else 1
    if max(p99) / max(low, 1) > 30:
        ax.set_xscale("log")
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: _ms(v)))
    ax.set_yticks(ys, _host_labels(hosts))
    ax.set_ylim(-0.8, len(hosts) - 0.2)
    ax.set_xlabel("elapsed_ms of the final attempt (pages never requested left out)")
    ax.margins(x=0.12)
    ax.grid(axis="y", visible=False)
    fig.legend(loc="outside lower center", ncols=3)
    return fig


def depths(c: Collector) -> Figure:
    """Records per crawl depth."""
    fig = Figure(figsize=(_WIDTH, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Depth")
    items = sorted(c.by_depth.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    bars = ax.bar([("?" if d is None else str(d)) for d, _ in items], [n for _, n in items], color=_BLUE)
    ax.bar_label(bars, labels=[f"{n:,}" for _, n in items], fontsize=8, padding=2)
    ax.set_xlabel("depth (0: a seed)")
    ax.set_ylabel("pages")
    ax.margins(y=0.15)
    _count_axis(ax.yaxis)
    ax.grid(axis="x", visible=False)
    return fig


def content_types(c: Collector) -> Figure:
    """Records per content type, the 12 commonest and the rest together."""
    ranked = c.by_type.most_common()
    shown = ranked[:12]
    rest = sum(n for _, n in ranked[12:])
    labels = [_short("(none)" if t is None else t) for t, _ in shown]
    values = [n for _, n in shown]
    if rest:
        labels.append("(other)")
        values.append(rest)
    fig = Figure(figsize=(_WIDTH, 1.0 + 0.26 * max(len(values), 3)), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Content types")
    ys = list(range(len(values)))[::-1]
    bars = ax.barh(ys, values, color=_BLUE, height=0.7)
    ax.bar_label(bars, labels=[f"{n:,}" for n in values], fontsize=8, padding=2)
    ax.set_yticks(ys, labels)
    ax.set_xlabel('pages ("(none)": no body or no Content-Type)')
    ax.margins(x=0.12)
    _count_axis(ax.xaxis)
    ax.grid(axis="y", visible=False)
    return fig


# body size bins: powers of two, so a record's bit length alone says its bin
_SIZE_EDGES = (0, 10, 12, 14, 16, 18, 20, 22, 24)  # 1 B, 1 KB, 4 KB, ... 16 MB as 2**e
_SIZE_LABELS = tuple(label.replace("-", "\u2013") for label in (  # en dashes
    "< 1K", "1-4K", "4-16K", "16-64K", "64-256K", "256K-1M", "1-4M", "4-16M", "\u2265 16M"))


def body_sizes(c: Collector) -> Figure:
    """Records per body size (after decoding), in bins four times wider each."""
    counts = [0] * len(_SIZE_LABELS)
    for bits, n in c.by_size_bits.items():
        if bits == 0:
            continue
        exponent = bits - 1  # the value is in [2**exponent, 2**bits)
        i = sum(1 for e in _SIZE_EDGES[1:] if exponent >= e)
        counts[i] += n
    last = max((i for i, n in enumerate(counts) if n), default=-1)
    labels = ["no body", *_SIZE_LABELS[: last + 1]]
    values = [c.by_size_bits.get(0, 0), *counts[: last + 1]]
    fig = Figure(figsize=(_WIDTH, 3.0), layout="constrained")
    ax = fig.subplots()
    ax.set_title("Body sizes")
    bars = ax.bar(labels, values, color=["#bdbdbd", *([_BLUE] * (len(values) - 1))])
    ax.bar_label(bars, labels=[f"{n:,}" for n in values], fontsize=8, padding=2)
    ax.set_xlabel('bytes after content decoding, K = 1024 ("no body": none kept, e.g. an error)')
    ax.set_ylabel("pages")
    ax.margins(y=0.15)
    _count_axis(ax.yaxis)
    ax.grid(axis="x", visible=False)
    return fig


#: (id, caption, figure maker), in page order
CHARTS: tuple[tuple[str, str, Callable[[Collector], Figure]], ...] = (
    ("timeline", "Pages finished over time", timeline),
    ("status", "Status codes", statuses),
    ("errors-per-host", "Error kinds per host", errors_per_host),
    ("times-per-host", "Response times per host", times_per_host),
    ("depth", "Depth", depths),
    ("content-types", "Content types", content_types),
    ("body-sizes", "Body sizes", body_sizes),
)

_SVG_START = re.compile(r"<svg\b[^>]*>")


def _inline_svg(fig: Figure, name: str, caption: str) -> str:
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"scraper-{name}"}):
        # no metadata: no <metadata> block, so no RDF namespace URLs in the page
        fig.savefig(buf, format="svg", metadata={"Creator": None, "Date": None, "Format": None, "Type": None})
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]  # drop the XML declaration and the DOCTYPE (which names a URL)
    opening = _SVG_START.match(svg)
    assert opening is not None
    # sized by the page, never wider than drawn (pt -> CSS px), so its text stays at its size
    width = re.search(r'\swidth="([\d.]+)pt"', opening.group(0))
    limit = f' style="max-width: {float(width.group(1)) * 4 / 3:.0f}px"' if width else ""
    tag = re.sub(r'\s(width|height)="[^"]*"', "", opening.group(0))
    tag = tag.replace("<svg", f'<svg class="chart" role="img" aria-label="{caption}"{limit}', 1)
    return tag + svg[opening.end():]


def render_all(c: Collector) -> dict[str, str]:
    """Every chart as an inline `<svg>` element, by id."""
    out: dict[str, str] = {}
    with matplotlib.rc_context(_RC):
        for name, caption, make in CHARTS:
            out[name] = _inline_svg(make(c), name, caption)
    return out
