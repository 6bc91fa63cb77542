"""
The ``/reports`` page: one section per domain with reports, with a chart of its daily
sessions, its top failure types, the organisations reporting and the verdict; the domains
without any, by name. One self-contained HTML document: inline SVG and CSS, no script, no
external asset; every value from a report is escaped.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from html import escape as _escape

from .._text import counted, last_days, printable
from .rows import DAY
from .summary import Day, DomainSummary

CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'"
"""Nothing but the document itself: even an escaping mistake could load or run nothing."""
TOP = 5
"""Failure types and MX hosts listed per domain."""
MAX_SHOWN = 256
"""Characters of a value from a report shown: a host name has at most 253 (the intake cuts
longer ones), an organisation name a few dozen, while the intake keeps up to 1000 bytes."""
_UNSHOWN_SPACES = re.compile(r"^ +| +$| (?= )")
"""The spaces HTML does not show: leading, trailing, and all but one of a run."""

# td and li clip what their text draws beyond them: a letter under 255 combining marks drew a
# line up the page, over the chart and the rows above.
_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:2em auto;max-width:60em;padding:0 1em;color:#222}
section{border-top:1px solid #ccc;padding:.5em 0 1em}
h2{margin:.3em 0}.verdict{font-weight:bold;padding:.1em .5em;border-radius:.3em}
.ready,.ok{background:#d4f4d4}.not-ready,.none{background:#eee}.failing{background:#f8d0d0}
table{border-collapse:collapse}td,th{padding:.1em .8em .1em 0;text-align:left}
td,li{overflow-wrap:anywhere;overflow:hidden}li{list-style-position:inside}
td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
svg .ok{fill:#3a3}svg .fail{fill:#c33}svg text{font-size:11px;fill:#555}
.problem{background:#f8d0d0;padding:.5em}
"""


def render_page(
    summaries: Mapping[str, DomainSummary],
    *,
    generated: datetime,
    problem: str | None = None,
) -> str:
    """
    The page for the given summaries.

    Args:
        summaries: per configured domain, as ``summarize`` returns them.
        generated: the time shown as "as of".
        problem: why the store could not be read, shown instead of the domains.
    """
    return "".join(page_parts(summaries, generated=generated, problem=problem))


def page_parts(
    summaries: Mapping[str, DomainSummary],
    *,
    generated: datetime,
    problem: str | None = None,
) -> list[str]:
    """``render_page``'s text in pieces of a section or so each, for sending in chunks."""
    parts = [
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width'>",
        "<title>TLS reports</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>TLS reports (RFC 8460)</h1>",
        f"<p>MTA-STS sessions as of {generated.astimezone(UTC):%Y-%m-%d %H:%M} UTC.</p>",
    ]
    if problem is not None:
        parts.append(f"<p class=problem>Report store unavailable: {escape(problem)}</p>")
    quiet: dict[str, list[str]] = {}
    for summary in summaries.values():
        if summary.reports or summary.other_policies or summary.older_policy.reports:
            parts.append(_section(summary))
        else:
            quiet.setdefault(summary.mode.value, []).append(summary.domain)
    if quiet:
        parts.append(_quiet(quiet, next(iter(summaries.values())).days))
    if not summaries and problem is None:
        parts.append("<p>No domains are configured.</p>")
    parts.append("</body></html>")
    return [f"{part}\n" for part in parts]


def escape(value: str) -> str:
    """
    ``value`` escaped for HTML, cut after ``MAX_SHOWN`` characters with its length noted,
    and with the characters that show nothing or turn the text around (U+202E, zero-width
    spaces, controls) as their escapes (``\\u202e``): no value can look like another, such
    as ``\u202emoc.elpmaxe.liam`` like ``mail.example.com``; so are the spaces HTML would
    not show (``Google Inc.\\x20``).
    """
    if len(value) > MAX_SHOWN:
        value = f"{value[:MAX_SHOWN]}… ({len(value):,} characters)"
    shown = _UNSHOWN_SPACES.sub(lambda spaces: "\\x20" * len(spaces[0]), printable(value))
    return _escape(shown)


def _section(summary: DomainSummary) -> str:
    domain = escape(summary.domain)
    verdict = summary.verdict.value
    rows = [
        ("reports", summary.reports),
        ("successful sessions", summary.successful_sessions),
        ("failed sessions", summary.failed_sessions),
    ]
    return "\n".join(
        [
            f"<section id='{domain}'>",
            f"<h2>{domain}</h2>",
            f"<p>mode {escape(summary.mode.value)}: <span class='verdict {verdict}'>"
            f"{verdict}</span> {escape(summary.verdict_reason)}</p>",
            "<table>"
            + "".join(f"<tr><th>{name}</th><td class=n>{value}</td></tr>" for name, value in rows)
            + "</table>",
            chart(summary.daily, summary.domain),
            _listing("Top failure types", summary.failures_by_type),
            _listing("Failures by MX host", summary.failures_by_mx),
            "<h3>Reporting organizations</h3>",
            _items(summary.organizations) or "<p>none in this period</p>",
            _others(summary),
            _older(summary),
            "</section>",
        ]
    )


def _quiet(domains: Mapping[str, list[str]], days: int) -> str:
    """
    The domains no report covers in the period, by mode, a name each: a section of their
    own each would be a chart of empty days, and a host of 10,000 domains, most of them
    quiet, would send a page of 60 MB.
    """
    count = sum(len(names) for names in domains.values())
    lines = "".join(
        f"<p>mode {escape(mode)}: {', '.join(escape(name) for name in names)}</p>"
        for mode, names in domains.items()
    )
    title = f"No reports in the {last_days(days)}: {counted(count, 'domain')}"
    return f"<section id=quiet><h2>{title}</h2>{lines}</section>"


def _listing(title: str, counts: Mapping[str, int]) -> str:
    if not counts:
        return f"<h3>{title}</h3><p>none</p>"
    rows = "".join(
        f"<tr><td>{escape(key)}</td><td class=n>{count}</td></tr>"
        for key, count in list(counts.items())[:TOP]
    )
    return f"<h3>{title}</h3><table>{rows}</table>"


def _items(values: Iterable[str]) -> str:
    items = "".join(f"<li>{escape(value)}</li>" for value in values)
    return f"<ul>{items}</ul>" if items else ""


def _others(summary: DomainSummary) -> str:
    if not summary.other_policies:
        return ""
    rows = "".join(
        f"<tr><td>{escape(kind)}</td><td class=n>{sessions.reports}</td>"
        f"<td class=n>{sessions.successful}</td><td class=n>{sessions.failed}</td></tr>"
        for kind, sessions in summary.other_policies.items()
    )
    return (
        "<h3>Other policies (not counted above)</h3><table><tr><th>policy type</th>"
        f"<th>reports</th><th>successful</th><th>failed</th></tr>{rows}</table>"
    )


def _older(summary: DomainSummary) -> str:
    older = summary.older_policy
    if not older.reports:
        return ""
    return (
        "<h3>Older policy (other mx, not counted above)</h3><table><tr><th>reports</th>"
        f"<th>successful</th><th>failed</th></tr><tr><td class=n>{older.reports}</td>"
        f"<td class=n>{older.successful}</td><td class=n>{older.failed}</td></tr></table>"
    )


def chart(days: tuple[Day, ...], label: str, width: int = 600) -> str:
    """
    An SVG bar chart of daily successful (top) and failed (bottom) sessions. Each has its own
    scale: failures are a thousandth of the sessions or less, and would not show on one.
    """
    if not days:
        return ""
    top, bottom, gap = 80, 50, 14
    height = top + bottom + 2 * gap
    step = width / len(days)
    most_ok = max(day.successful for day in days) or 1
    most_failed = max(day.failed for day in days) or 1
    bars = []
    for n, day in enumerate(days):
        x = n * step + 1
        date = _date(day.day)
        tip = f"<title>{date}: {day.successful} successful, {day.failed} failed</title>"
        ok = top * day.successful / most_ok
        failed = bottom * day.failed / most_failed
        bars.append(
            f"<g>{tip}<rect class=ok x='{x:.1f}' y='{gap + top - ok:.1f}' "
            f"width='{step - 2:.1f}' height='{ok:.1f}'/>"
            f"<rect class=fail x='{x:.1f}' y='{2 * gap + top:.1f}' "
            f"width='{step - 2:.1f}' height='{failed:.1f}'/></g>"
        )
    first, last = _date(days[0].day), _date(days[-1].day)
    return (
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height + gap}' "
        f"viewBox='0 0 {width} {height + gap}' role=img "
        f"aria-label='daily sessions of {escape(label)}, {first} to {last}'>"
        f"<text x='0' y='{gap - 3}'>successful per day (max {most_ok})</text>"
        f"<text x='0' y='{2 * gap + top - 3}'>failed per day (max {most_failed})</text>"
        + "".join(bars)
        + f"<text x='0' y='{height + gap - 2}'>{first}</text>"
        f"<text x='{width}' y='{height + gap - 2}' text-anchor='end'>{last}</text></svg>"
    )


def _date(day: int) -> str:
    return datetime.fromtimestamp(day * DAY, UTC).strftime("%Y-%m-%d")
