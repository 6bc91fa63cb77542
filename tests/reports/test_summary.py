"""Summaries, from the store's totals alone."""

from __future__ import annotations

import pytest

from mtasts_host.policy import Mode
from mtasts_host.reports.rows import FailureTotals, MxTotals, Totals
from mtasts_host.reports.sessions import Sessions
from mtasts_host.reports.summary import OTHER_MX, TOP_MX, UNREPORTED_MX, Day, summarize
from mtasts_host.reports.verdict import Verdict

from .conftest import TODAY, failure, serving, sts

D = "example.com"


def test_summary_counts_sts_only_and_configured_domains_only() -> None:
    totals = [
        sts("A", ok=40, failed=1),
        Totals(D, "tlsa", "A", TODAY - 1, 1, 40, 1),  # the same sessions, under DANE
        Totals(D, "no-policy-found", "B", TODAY - 1, 1, 3, 0),
        Totals("other.example", "sts", "A", TODAY - 1, 1, 999, 999),
    ]
    failures = [
        failure("certificate-not-trusted", 1),
        FailureTotals(D, "tlsa", TODAY - 1, "tlsa-invalid", 1),
        FailureTotals("other.example", "sts", TODAY - 1, "certificate-expired", 999),
    ]
    by_mx = [MxTotals(D, "mail.example.com", 1), MxTotals("other.example", "", 999)]
    summaries = summarize(serving({D: Mode.TESTING}), totals, failures, by_mx, today=TODAY)
    assert list(summaries) == [D]
    summary = summaries[D]
    assert (summary.reports, summary.successful_sessions, summary.failed_sessions) == (1, 40, 1)
    assert summary.organizations == ("A",)
    assert summary.failures_by_type == {"certificate-not-trusted": 1}
    assert summary.failures_by_mx == {"mail.example.com": 1}
    assert summary.other_policies == {
        "no-policy-found": Sessions(1, 3, 0),
        "tlsa": Sessions(1, 40, 1),
    }


def test_an_organization_is_shown_once_as_most_of_its_reports_spell_it() -> None:
    totals = [
        Totals(D, "sts", "google inc.", TODAY - 1, 1, 10, 0),
        Totals(D, "sts", "Google Inc.", TODAY - 2, 3, 10, 0),
        Totals(D, "sts", "GOOGLE INC.", TODAY - 3, 1, 10, 0),
        Totals(D, "sts", "b", TODAY - 1, 1, 10, 0),  # a tie: the first in code point order
        Totals(D, "sts", "B", TODAY - 2, 1, 10, 0),
    ]
    summary = summarize(serving({D: Mode.TESTING}), totals, [], [], today=TODAY)[D]
    assert summary.organizations == ("B", "Google Inc.")
    assert summary.reports == 7
    assert summary.verdict_reason == (
        "50 sessions from 2 organizations in the last 14 days, 0 failed (0.000%)"
    )


def test_summary_period_and_verdict_window_differ() -> None:
    totals = [
        sts("A", day=TODAY - 1, ok=100),
        sts("B", day=TODAY - 20, ok=50, failed=50),  # in the 30 days, not in the 14
        sts("C", day=TODAY - 31, ok=7),  # in neither
    ]
    failures = [
        failure("certificate-expired", 30, day=TODAY - 20),
        failure("validation-failure", 20, day=TODAY - 20),
    ]
    by_mx = [MxTotals(D, "mail.example.com", 30), MxTotals(D, "", 20)]
    summary = summarize(serving({D: Mode.TESTING}), totals, failures, by_mx, today=TODAY, days=30)[
        D
    ]
    assert summary.reports == 2
    assert summary.organizations == ("A", "B")
    assert (summary.successful_sessions, summary.failed_sessions) == (150, 50)
    assert summary.failures_by_type == {"certificate-expired": 30, "validation-failure": 20}
    assert summary.failures_by_mx == {"mail.example.com": 30, UNREPORTED_MX: 20}
    assert summary.verdict is Verdict.NOT_READY
    assert summary.verdict_reason == "reports from 1 organization in the last 14 days, 2 needed"
    assert len(summary.daily) == 31
    assert summary.daily[0] == Day(TODAY - 30)
    assert summary.daily[10] == Day(TODAY - 20, 50, 50)
    assert summary.daily[-2] == Day(TODAY - 1, 100, 0)


@pytest.mark.parametrize(
    ("mode", "verdict", "reason"),
    [
        (
            Mode.TESTING,
            Verdict.NOT_READY,
            "no reports of an sts policy in the last 14 days, "
            "only of no-policy-found (2 reports), tlsa (1 report)",
        ),
        (
            Mode.ENFORCE,
            Verdict.OK,
            "no failed sessions: no reports of an sts policy in the last 14 days, "
            "only of no-policy-found (2 reports), tlsa (1 report)",
        ),
    ],
    ids=["testing", "enforce"],
)
def test_reports_of_other_policies_alone_are_named(
    mode: Mode, verdict: Verdict, reason: str
) -> None:
    # Senders reporting no-policy-found did not find the policy: "no reports in the last 14
    # days" had the operator look for reports that were not sent.
    totals = [
        Totals(D, "no-policy-found", "A", TODAY - 1, 1, 500, 0),
        Totals(D, "no-policy-found", "B", TODAY - 2, 1, 70, 0),
        Totals(D, "tlsa", "A", TODAY - 1, 1, 500, 0),
        Totals(D, "no-policy-found", "C", TODAY - 15, 1, 9, 0),  # before the window
    ]
    summary = summarize(serving({D: mode}), totals, [], [], today=TODAY)[D]
    assert (summary.verdict, summary.verdict_reason) == (verdict, reason)


def test_reports_dated_after_today_count_in_no_window() -> None:
    totals = [sts("A"), sts("B", day=TODAY + 1), sts("C", day=TODAY + 356_000)]
    failures = [failure("certificate-expired", 5, day=TODAY + 1)]
    summary = summarize(serving({D: Mode.TESTING}), totals, failures, [], today=TODAY)[D]
    assert (summary.reports, summary.organizations, summary.failures_by_type) == (1, ("A",), {})
    assert summary.verdict_reason == "reports from 1 organization in the last 14 days, 2 needed"
    assert summary.daily[-1] == Day(TODAY)
    enforced = summarize(
        serving({D: Mode.ENFORCE}), [sts("A", day=TODAY + 1, failed=5)], failures, [], today=TODAY
    )
    assert enforced[D].verdict is Verdict.OK


def test_a_domain_without_reports() -> None:
    summary = summarize(serving({D: Mode.ENFORCE}), [], [], [], today=TODAY, days=7)[D]
    assert summary.to_json() == {
        "mode": "enforce",
        "reports": 0,
        "organizations": [],
        "successful_sessions": 0,
        "failed_sessions": 0,
        "failures_by_type": {},
        "failures_by_mx": {},
        "verdict": "ok",
        "verdict_reason": "no failed sessions: no reports in the last 14 days",
        "older_policy": {"reports": 0, "successful_sessions": 0, "failed_sessions": 0},
        "other_policies": {},
    }


def test_failures_are_listed_most_first_then_by_name() -> None:
    failures = [failure("b", 2), failure("a", 2), failure("c", 9), failure("a", 1)]
    by_mx = [MxTotals(D, "x", 1), MxTotals(D, "mail.example.com", 13)]
    summary = summarize(
        serving({D: Mode.TESTING}), [sts("A", failed=14)], failures, by_mx, today=TODAY
    )[D]
    assert list(summary.failures_by_type.items()) == [("c", 9), ("a", 3), ("b", 2)]
    assert list(summary.failures_by_mx.items()) == [("mail.example.com", 13), ("x", 1)]


def test_the_hosts_beyond_the_top_are_summed() -> None:
    # The store gives the top hosts only: the failure details' other sessions are theirs.
    failures = [failure("certificate-expired", 5000)]
    by_mx = [MxTotals(D, f"mx{n:02}.example.com", 10) for n in range(TOP_MX)]
    summary = summarize(
        serving({D: Mode.TESTING}), [sts("A", failed=5000)], failures, by_mx, today=TODAY
    )[D]
    assert len(summary.failures_by_mx) == TOP_MX + 1
    assert next(iter(summary.failures_by_mx.items())) == (OTHER_MX, 5000 - 10 * TOP_MX)


def test_a_host_that_no_host_name_can_be_is_quoted() -> None:
    # A sender's "(other hosts)" was added to the sessions of the hosts beyond the top, and
    # "mail.example.com 999, x" put a count of 999 in the text of `mtasts-host reports`.
    failures = [failure("certificate-expired", 10)]
    by_mx = [
        MxTotals(D, "(other hosts)", 3),
        MxTotals(D, "(not reported)", 2),
        MxTotals(D, "mail.example.com 999, x", 1),
        MxTotals(D, '"mail.example.com"', 1),
        MxTotals(D, "mail.example.com", 1),
    ]
    summary = summarize(
        serving({D: Mode.TESTING}), [sts("A", failed=10)], failures, by_mx, today=TODAY
    )[D]
    assert summary.failures_by_mx == {
        '"(other hosts)"': 3,
        OTHER_MX: 2,
        '"(not reported)"': 2,
        '"\\"mail.example.com\\""': 1,
        '"mail.example.com 999, x"': 1,
        "mail.example.com": 1,
    }


def test_sessions_reported_against_an_older_policy_are_left_out() -> None:
    older = [
        Totals(D, "sts", "C", TODAY - 1, 2, 0, 500, older=True),
        Totals(D, "sts", "D", TODAY - 20, 1, 7, 3, older=True),  # in the period, not the window
    ]
    totals = [sts("A"), sts("B", day=TODAY - 20), *older]
    summary = summarize(serving({D: Mode.TESTING}), totals, [], [], today=TODAY)[D]
    assert (summary.reports, summary.organizations, summary.failed_sessions) == (2, ("A", "B"), 0)
    assert summary.older_policy == Sessions(3, 7, 503)
    assert sum(day.failed for day in summary.daily) == 0
    assert (summary.verdict, summary.verdict_reason) == (
        Verdict.NOT_READY,
        "reports from 1 organization in the last 14 days, 2 needed;"
        " not counted: 500 sessions from 2 reports against an older policy (other mx)",
    )
    assert summarize(serving({D: Mode.NONE}), totals, [], [], today=TODAY)[D].verdict_reason == (
        "mode none: no policy is in force"
    )
    enforced = summarize(serving({D: Mode.ENFORCE}), totals, [], [], today=TODAY)[D]
    assert (enforced.verdict, enforced.verdict_reason) == (
        Verdict.OK,
        "no failed sessions in the last 14 days: 1000 sessions from 1 organization;"
        " not counted: 500 sessions from 2 reports against an older policy (other mx)",
    )
