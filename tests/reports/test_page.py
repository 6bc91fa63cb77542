"""The /reports page: one section per domain, an inline chart, every value escaped."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

from mtasts_host.policy import Mode
from mtasts_host.reports.page import chart, render_page
from mtasts_host.reports.rows import FailureTotals, MxTotals, Totals
from mtasts_host.reports.summary import Day, summarize

from .conftest import NOW, TODAY, serving

EVIL = "<script>alert('x')</script>&\"'"


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attributes: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attributes += attrs


def parse(html: str) -> _Tags:
    parser = _Tags()
    parser.feed(html)
    return parser


def page_with(organization: str, result_type: str, mx: str) -> str:
    totals = [
        Totals("example.com", "sts", organization, TODAY - 1, 1, 100, 3),
        Totals("example.com", f"tlsa{organization}", organization, TODAY - 1, 1, 1, 1),
    ]
    failures = [FailureTotals("example.com", "sts", TODAY - 1, result_type, 3)]
    summaries = summarize(
        serving({"example.com": Mode.TESTING, "example.net": Mode.ENFORCE}),
        totals,
        failures,
        [MxTotals("example.com", mx, 3)],
        today=TODAY,
    )
    return render_page(summaries, generated=datetime.fromtimestamp(NOW, UTC))


def test_one_section_per_domain_with_reports_and_a_chart() -> None:
    html = page_with("Google Inc.", "certificate-expired", "mail.example.com")
    tags = parse(html)
    assert tags.tags.count("section") == 2
    assert tags.tags.count("svg") == 1
    assert "<h2>example.com</h2>" in html
    assert "<h2>example.net</h2>" not in html  # no report: listed by name, below
    assert (
        "<section id=quiet><h2>No reports in the last 30 days: 1 domain</h2>"
        "<p>mode enforce: example.net</p></section>"
    ) in html
    assert "not-ready</span> reports from 1 organization" in html
    assert "<li>Google Inc.</li>" in html
    assert "<td>certificate-expired</td><td class=n>3</td>" in html
    assert "as of 2024-06-01 12:00 UTC" in html


def test_every_value_from_a_report_is_escaped() -> None:
    html = page_with(EVIL, EVIL, EVIL)
    assert "<script" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;&amp;&quot;&#x27;" in html
    assert set(parse(html).tags) <= {
        "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "p", "span",
        "section", "table", "tr", "th", "td", "ul", "li", "svg", "text", "g", "rect",
    }  # fmt: skip


def test_no_external_asset() -> None:
    html = page_with("A", "b", "c")
    for name, value in parse(html).attributes:
        assert name not in ("src", "href")
        assert not (value or "").startswith(("http:", "https:", "//")) or name == "xmlns"
    assert "url(" not in html
    assert "@import" not in html


def test_the_chart_has_a_bar_per_day_and_a_tooltip() -> None:
    days = (Day(TODAY - 2, 10, 0), Day(TODAY - 1, 20, 5))
    svg = chart(days, "example.com")
    assert svg.count("<rect class=ok") == 2
    assert svg.count("<rect class=fail") == 2
    assert "<title>2024-05-31: 20 successful, 5 failed</title>" in svg
    heights = [float(h) for h in re.findall(r"class=ok [^>]*height='([0-9.]+)'", svg)]
    assert heights == [40.0, 80.0]  # scaled to the busiest day
    assert "successful per day (max 20)" in svg
    assert "failed per day (max 5)" in svg


def test_the_store_problem_is_named() -> None:
    html = render_page({}, generated=datetime.fromtimestamp(NOW, UTC), problem="disk <full>")
    assert "Report store unavailable: disk &lt;full&gt;" in html


def test_a_long_value_from_a_report_is_cut() -> None:
    # A sender may post a receiving-mx-hostname of megabytes (a report is up to 20 MiB as
    # decompressed): shown whole, five of them made a page of 95 MB.
    html = page_with("o" * 1000, "b", "m" * 1_000_000)
    assert len(html) < 30_000
    assert f"<td>{'m' * 256}\u2026 (1,000,000 characters)</td>" in html
    assert f"<li>{'o' * 256}\u2026 (1,000 characters)</li>" in html
    assert "td,li{overflow-wrap:anywhere;" in html  # what is left wraps inside the page
    assert "white-space:nowrap}" in html  # but not the counts


def test_invisible_and_reversing_characters_are_shown() -> None:
    # U+202E turns the rest of its cell around: "\u202emoc.elpmaxe.liam" looked exactly like
    # mail.example.com in Chromium, and a zero-width space hid that two names differ.
    html = page_with("Goo\u200bgle", "b", "\u202emoc.elpmaxe.liam")
    assert "\u202e" not in html
    assert "\u200b" not in html
    assert "<td>\\u202emoc.elpmaxe.liam</td>" in html
    assert "<li>Goo\\u200bgle</li>" in html
    assert "<li>Zero Width \U0001f600</li>" in page_with("Zero Width \U0001f600", "b", "c")


def test_characters_that_show_nothing_are_shown() -> None:
    # str.isprintable() passes a combining grapheme joiner, Hangul fillers and variation
    # selectors, which show nothing: "mail.example.com\u034f" looked like mail.example.com.
    html = page_with("Google Inc.\u3164", "b", "mail.example.com\u034f")
    assert "<li>Google Inc.\\u3164</li>" in html
    assert "<td>mail.example.com\\u034f</td>" in html
    assert "<li>a\\ufe0f\\U000e0100</li>" in page_with("a\ufe0f\U000e0100", "b", "c")


def test_spaces_html_would_not_show_are_shown() -> None:
    # HTML shows " Google  Inc. " as "Google Inc.": one organisation passed for another.
    html = page_with(" Google  Inc. ", "b", "c")
    assert "<li>\\x20Google\\x20 Inc.\\x20</li>" in html


def test_domains_without_reports_cost_a_name_each() -> None:
    # 10,000 configured domains, two with reports: each of the others was a section with a
    # chart of 31 empty days, 6 KB, and the page 63 MB, rendered on the event loop.
    modes = {f"d{n}.example.com": Mode.TESTING for n in range(10_000)}
    modes["d5.example.com"] = Mode.ENFORCE
    totals = [
        Totals("d7.example.com", "sts", "Google Inc.", TODAY - 1, 1, 100, 0),
        Totals("d9.example.com", "tlsa", "Google Inc.", TODAY - 1, 1, 10, 0),
    ]
    html = render_page(
        summarize(serving(modes), totals, [], [], today=TODAY),
        generated=datetime.fromtimestamp(NOW, UTC),
    )
    assert len(html) < 250_000
    assert parse(html).tags.count("section") == 3
    assert "<h2>d7.example.com</h2>" in html
    assert "<h2>d9.example.com</h2>" in html
    assert "No reports in the last 30 days: 9998 domains" in html
    assert "<p>mode enforce: d5.example.com</p>" in html
    assert "<p>mode testing: d0.example.com, d1.example.com, d2.example.com, d3." in html
