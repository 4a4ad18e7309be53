"""The report page: one HTML file with its styles and charts inline.

Everything that comes from the crawl (URLs, titles, messages, host names) is
HTML-escaped here, in `_e`. The page carries a Content-Security-Policy that
lets it load nothing at all (no script, no font, no image but inline data), so
whatever a crawled page put in its title, viewing the report fetches nothing.
Links to the crawled pages are the only URLs in it, and only http(s) ones are
made links.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from ..version import __version__
from .collect import TOP, Collector

__all__ = ["RunTimes", "render", "run_times"]


_DASH = "\u2013"  # an en dash: no value


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else _DASH


def _bytes(n: int) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return f"{n / size:,.1f} {unit}"
    return f"{n:,} B"


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, s = divmod(round(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


def _stamp(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


def _utc(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@dataclass(frozen=True)
class RunTimes:
    """Elapsed time and rate for the summary, and where they come from."""

    elapsed_s: float
    pages_per_s: float
    source: str
    started_at: str | None
    finished_at: str | None
    interrupted: bool
    shards: int


def run_times(stats: list[dict[str, Any]], c: Collector) -> RunTimes:
    """Times from stats.json (one per shard: the workers ran side by side), else from the records."""
    interrupted = any(s.get("interrupted") is True for s in stats)
    starts = [t for s in stats if (t := _stamp(s.get("started_at"))) is not None]
    ends = [t for s in stats if (t := _stamp(s.get("finished_at"))) is not None]
    started = _utc(min(starts)) if starts else None
    finished = _utc(max(ends)) if ends else None
    if len(stats) == 1 and isinstance(stats[0].get("elapsed_s"), (int, float)):
        s = stats[0]
        rate = s.get("pages_per_s")
        resumed = isinstance(s.get("run_pages"), int) and s["run_pages"] != c.pages
        return RunTimes(float(s["elapsed_s"]), float(rate) if isinstance(rate, (int, float)) else 0.0,
                        "the last run (stats.json)" if resumed else "stats.json", started, finished,
                        interrupted, 1)
    if starts and ends:
        span = max(0.0, (max(ends) - min(starts)).total_seconds())
        run_pages = [s.get("run_pages") for s in stats]
        written = sum(n for n in run_pages if isinstance(n, int)) if all(isinstance(n, int) for n in run_pages) \
            else c.pages
        return RunTimes(span, written / span if span else 0.0,
                        f"{len(stats)} stats files: first start to last finish", started, finished,
                        interrupted, len(stats))
    span = c.span_s
    return RunTimes(span, c.pages / span if span else 0.0, "the records' fetched_at times (no stats.json)",
                    None, None, interrupted, len(stats))


_CSS = """
:root { color-scheme: light; --fg: #1d1d1f; --muted: #666; --line: #e2e2e2; --card: #f6f7f9;
        --ok: #2ca02c; --bad: #d62728; --accent: #1f77b4; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px 32px 48px; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto,
       "DejaVu Sans", sans-serif; color: var(--fg); background: #fff; }
h1 { font-size: 22px; margin: 0 0 4px; }
h2 { font-size: 17px; margin: 32px 0 10px; padding-bottom: 4px; border-bottom: 1px solid var(--line); }
h3 { font-size: 14px; margin: 18px 0 6px; }
.meta { color: var(--muted); margin: 0 0 6px; }
.note { color: #8a5300; background: #fff6e5; border-left: 3px solid #f0a020; padding: 4px 10px; margin: 6px 0; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(150px, 1fr)); gap: 10px; margin: 16px 0; }
.card { background: var(--card); border-radius: 8px; padding: 10px 14px; margin: 0; }
.card dt { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.card dd { margin: 2px 0 0; font-size: 24px; font-weight: 600; font-variant-numeric: tabular-nums; }
.card .sub { display: block; font-size: 12px; font-weight: 400; color: var(--muted); }
.card.ok dd { color: var(--ok); } .card.bad dd { color: var(--bad); }
.counts { display: flex; flex-wrap: wrap; gap: 24px; }
.counts table { min-width: 220px; }
.charts { display: grid; grid-template-columns: repeat(auto-fit, minmax(520px, 1fr)); gap: 18px 28px; }
figure { margin: 0; }
figure.wide { grid-column: 1 / -1; max-width: 1100px; }
svg.chart { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; font-size: 13px; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-weight: 600; background: var(--card); }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.page { max-width: 720px; overflow-wrap: anywhere; }
td.page .title { display: block; color: var(--muted); font-size: 12px; }
td.msg { max-width: 520px; overflow-wrap: anywhere; color: #444; }
a { color: var(--accent); text-decoration: none; } a:hover { text-decoration: underline; }
.kind { font-family: ui-monospace, "DejaVu Sans Mono", monospace; font-size: 12px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; }
"""

#: the page may load nothing: styles and SVG are inline, and there is no script
_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def _page_cell(url: str, title: str | None = None) -> str:
    shown = _e(url)
    if url.startswith(("http://", "https://")):
        shown = f'<a href="{_e(url)}" rel="noreferrer">{shown}</a>'
    if title:
        shown += f'<span class="title">{_e(title)}</span>'
    return f'<td class="page">{shown}</td>'


def _status(status: int | None) -> str:
    return _DASH if status is None else str(status)


def _card(key: str, label: str, raw: float, value: str, sub: str = "", tone: str = "") -> str:
    # data-value: the exact figure, for whoever reads the page with a program
    sub_html = f'<span class="sub">{_e(sub)}</span>' if sub else ""
    return (f'<div class="card {tone}"><dt>{_e(label)}</dt>'
            f'<dd id="summary-{key}" data-value="{raw}">{_e(value)}</dd>{sub_html}</div>')


def _summary(c: Collector, times: RunTimes, show_changed: bool) -> str:
    cards = [
        _card("pages", "Pages", c.pages, _n(c.pages)),
        _card("ok", "OK", c.ok, _n(c.ok), _pct(c.ok, c.pages), "ok"),
        _card("failed", "Failed", c.failed, _n(c.failed), _pct(c.failed, c.pages), "bad" if c.failed else ""),
    ]
    if show_changed:
        cards += [
            _card("changed", "Changed", c.changed, _n(c.changed)),
            _card("unchanged", "Unchanged", c.unchanged, _n(c.unchanged)),
            _card("new", "New", c.new, _n(c.new)),
        ]
    cards += [
        _card("bytes", "Bytes", c.bytes, _bytes(c.bytes), f"{c.bytes:,} bytes"),
        _card("elapsed", "Elapsed", round(times.elapsed_s, 3), _duration(times.elapsed_s), f"from {times.source}"),
        _card("rate", "Pages/s", round(times.pages_per_s, 3), f"{times.pages_per_s:,.1f}"),
    ]
    status_rows = "".join(
        f'<tr><td>{_e("none" if s is None else s)}</td><td class="num">{_n(n)}</td></tr>'
        for s, n in sorted(c.by_status.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    )
    error_rows = "".join(
        f'<tr><td class="kind"><a href="#failed-{_e(k)}">{_e(k)}</a></td><td class="num">{_n(n)}</td></tr>'
        for k, n in c.by_error.most_common()
    ) or '<tr><td colspan="2">none</td></tr>'
    return (
        f'<dl class="cards" id="summary">{"".join(cards)}</dl>'
        '<div class="counts">'
        f'<table id="status-codes"><thead><tr><th>Status</th><th class="num">Pages</th></tr></thead>'
        f"<tbody>{status_rows}</tbody></table>"
        f'<table id="error-kinds"><thead><tr><th>Error kind</th><th class="num">Pages</th></tr></thead>'
        f"<tbody>{error_rows}</tbody></table>"
        "</div>"
    )


def _slowest(c: Collector) -> str:
    rows = c.slowest()
    if not rows:
        return "<p>No page was requested.</p>"
    body = "".join(
        f'<tr><td class="num">{i}</td><td class="num">{_n(r.elapsed_ms)}</td><td class="num">{_status(r.status)}</td>'
        f'<td class="num">{_DASH if r.attempts is None else r.attempts}</td>'
        f'<td class="kind">{_e(r.error_kind or "")}</td>{_page_cell(r.url, r.title)}</tr>'
        for i, r in enumerate(rows, 1)
    )
    return (
        '<table id="slowest"><thead><tr><th class="num">#</th><th class="num">elapsed_ms</th>'
        '<th class="num">Status</th><th class="num">Attempts</th><th>Error</th><th>Page</th></tr></thead>'
        f"<tbody>{body}</tbody></table>"
    )


def _failures(c: Collector) -> str:
    if not c.by_error:
        return "<p>No page failed.</p>"
    parts = []
    for kind, total in c.by_error.most_common():
        kept = c.failures.get(kind, [])
        shown = f"the first {len(kept)} of {_n(total)}" if total > len(kept) else f"{_n(total)}"
        rows = "".join(
            f'<tr><td class="num">{_status(f.status)}</td>{_page_cell(f.url)}<td class="msg">{_e(f.message)}</td></tr>'
            for f in kept
        )
        parts.append(
            f'<section class="failed" id="failed-{_e(kind)}"><h3><span class="kind">{_e(kind)}</span>: '
            f"{shown} {'page' if total == 1 else 'pages'}</h3>"
            '<table><thead><tr><th class="num">Status</th><th>Page</th><th>Message</th></tr></thead>'
            f"<tbody>{rows}</tbody></table></section>"
        )
    return "".join(parts)


def render(
    c: Collector,
    charts: dict[str, str],
    captions: dict[str, str],
    *,
    title: str,
    times: RunTimes,
    files: list[str],
    notes: list[str],
    show_changed: bool,
) -> str:
    """The whole report page."""
    now = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    when = ""
    if times.started_at:
        when = f" · run started {_e(times.started_at)}"
        if times.finished_at:
            when += f", finished {_e(times.finished_at)}"
    state = " · <strong>interrupted</strong>" if times.interrupted else ""
    all_notes = list(notes)
    if c.hosts_dropped:
        all_notes.append(
            f"More than {_n(len(c.hosts) + c.hosts_dropped)} hosts were seen: to stay within bounded memory "
            f"{_n(c.hosts_dropped)} of the least busy were dropped along the way, so per-host figures of a host "
            "that was dropped and seen again cover only its later pages."
        )
    if c.untimed:
        all_notes.append(f"{_n(c.untimed)} records have no readable fetched_at and are not on the timeline.")
    notes_html = "".join(f'<p class="note">{_e(n)}</p>' for n in all_notes)
    figures = "".join(
        f'<figure id="chart-{name}" class="{"wide" if name == "timeline" else ""}">{svg}'
        f"<figcaption hidden>{_e(captions[name])}</figcaption></figure>"
        for name, svg in charts.items()
    )
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="scraper {_e(__version__)}">
<title>Crawl report: {_e(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>Crawl report: <span id="report-dir">{_e(title)}</span></h1>
<p class="meta">{_n(c.pages)} records from {_e(", ".join(files))}{when}{state}</p>
{notes_html}
</header>
<main>
<section id="summary-section"><h2>Summary</h2>{_summary(c, times, show_changed)}</section>
<section id="charts-section"><h2>Charts</h2><div class="charts">{figures}</div>
<p class="meta">Percentiles are nearest-rank over the final attempt's elapsed_ms: exact up to 100 ms,
within 1% above.</p></section>
<section id="slowest-section"><h2>The {TOP} slowest pages</h2>{_slowest(c)}</section>
<section id="failed-section"><h2>Failed pages by error kind ({TOP} per kind)</h2>{_failures(c)}</section>
</main>
<footer>Made by scraper {_e(__version__)} on {_e(now)}. This file is self-contained: it loads nothing.</footer>
</body>
</html>
"""
