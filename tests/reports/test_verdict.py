"""The verdict on a domain, from the totals of its window alone."""

from __future__ import annotations

import pytest

from mtasts_host.policy import Mode
from mtasts_host.reports.rows import Totals
from mtasts_host.reports.settings import Thresholds
from mtasts_host.reports.verdict import Verdict, judge

from .conftest import TODAY, failure, sts


@pytest.mark.parametrize(
    ("rows", "verdict", "reason"),
    [
        (
            [sts("A"), sts("B")],
            Verdict.READY,
            "2000 sessions from 2 organizations in the last 14 days, 0 failed (0.000%)",
        ),
        (
            [sts("A", ok=5000), sts("B", ok=4999, failed=1)],
            Verdict.READY,
            "10000 sessions from 2 organizations in the last 14 days, 1 failed (0.010%)",
        ),
        ([], Verdict.NOT_READY, "no reports in the last 14 days"),
        (
            [sts("A"), sts("A", day=TODAY - 2)],
            Verdict.NOT_READY,
            "reports from 1 organization in the last 14 days, 2 needed",
        ),
        (
            # exactly 0.1% is not under 0.1%
            [sts("A", ok=499, failed=1), sts("B", ok=500)],
            Verdict.NOT_READY,
            "1 of 1000 sessions failed (0.10%) in the last 14 days, under 0.10% needed",
        ),
        (
            [sts("A", ok=998, failed=2)],
            Verdict.NOT_READY,
            "reports from 1 organization in the last 14 days, 2 needed; "
            "2 of 1000 sessions failed (0.20%) in the last 14 days, under 0.10% needed",
        ),
        (
            [sts("A", ok=0), sts("B", ok=0)],
            Verdict.NOT_READY,
            "no sessions reported in the last 14 days",
        ),
        (
            # B saw none of our MX hosts: A's view alone is no second opinion.
            [sts("A"), sts("B", ok=0), sts("B", day=TODAY - 2, ok=0)],
            Verdict.NOT_READY,
            "reports from 1 organization (and 1 with no sessions) in the last 14 days, 2 needed",
        ),
    ],
    ids=[
        "clean",
        "few-failures",
        "no-reports",
        "one-org",
        "at-threshold",
        "both",
        "no-sessions",
        "one-org-with-sessions",
    ],
)
def test_testing_domains(rows: list[Totals], verdict: Verdict, reason: str) -> None:
    assert judge(Mode.TESTING, rows, []) == (verdict, reason)


def test_at_the_threshold_is_not_ready() -> None:
    rows = [sts("A", ok=999, failed=1)]
    thresholds = Thresholds(min_organizations=1)
    assert judge(Mode.TESTING, rows, [], thresholds)[0] is Verdict.NOT_READY
    rows = [sts("A", ok=1000, failed=1)]
    assert judge(Mode.TESTING, rows, [], thresholds)[0] is Verdict.READY


def test_a_window_of_one_day_is_the_last_day() -> None:
    assert judge(Mode.ENFORCE, [], [], Thresholds(window_days=1)) == (
        Verdict.OK,
        "no failed sessions: no reports in the last day",
    )


def test_thresholds_are_options() -> None:
    rows = [sts("A", ok=990, failed=10)]
    thresholds = Thresholds(window_days=7, min_organizations=1, max_failure_rate=0.05)
    assert judge(Mode.TESTING, rows, [], thresholds) == (
        Verdict.READY,
        "1000 sessions from 1 organization in the last 7 days, 10 failed (1.000%)",
    )


def test_the_failure_rate_is_compared_exactly() -> None:
    # 7 of 100 is 7%, not under 7%; 100 * 0.07 is 7.000000000000001 in binary.
    rows = [sts("A", ok=93, failed=7)]
    thresholds = Thresholds(min_organizations=1, max_failure_rate=0.07)
    assert judge(Mode.TESTING, rows, [], thresholds) == (
        Verdict.NOT_READY,
        "7 of 100 sessions failed (7.00%) in the last 14 days, under 7.00% needed",
    )
    assert judge(Mode.TESTING, [sts("A", ok=94, failed=6)], [], thresholds)[0] is Verdict.READY


def test_a_failure_rate_of_zero_asks_for_no_failure() -> None:
    thresholds = Thresholds(max_failure_rate=0)
    assert judge(Mode.TESTING, [sts("A"), sts("B")], [], thresholds) == (
        Verdict.READY,
        "2000 sessions from 2 organizations in the last 14 days, 0 failed (0.000%)",
    )
    assert judge(Mode.TESTING, [sts("A"), sts("B", failed=1)], [], thresholds)[0] is (
        Verdict.NOT_READY
    )


@pytest.mark.parametrize(
    ("rows", "rate", "reason"),
    [
        (
            [sts("A", ok=10_000_000), sts("B", ok=9_999_999, failed=1)],
            0.001,
            "20000000 sessions from 2 organizations in the last 14 days, 1 failed (0.000005%)",
        ),
        (
            [sts("A", ok=99_999), sts("B", ok=0, failed=1)],
            0.00001,
            "1 of 100000 sessions failed (0.001%) in the last 14 days, under 0.001% needed",
        ),
        (
            [sts("A", ok=1), sts("B", ok=0, failed=99_999)],
            0.001,
            "99999 of 100000 sessions failed (99.999%) in the last 14 days, under 0.10% needed",
        ),
    ],
    ids=["one-in-20-million", "small-rate", "all-but-one-failed"],
)
def test_shares_are_never_rounded_to_what_they_are_not(
    rows: list[Totals], rate: float, reason: str
) -> None:
    # They showed as 0.000% failed, "under 0.00% needed" and 100.00% failed.
    thresholds = Thresholds(max_failure_rate=rate)
    assert judge(Mode.TESTING, rows, [], thresholds)[1] == reason


def test_enforce_domains() -> None:
    assert judge(Mode.ENFORCE, [sts("A"), sts("B")], []) == (
        Verdict.OK,
        "no failed sessions in the last 14 days: 2000 sessions from 2 organizations",
    )
    assert judge(Mode.ENFORCE, [], []) == (
        Verdict.OK,
        "no failed sessions: no reports in the last 14 days",
    )
    failures = [failure("certificate-expired", 2), failure("starttls-not-supported", 5)]
    assert judge(Mode.ENFORCE, [sts("A", failed=7)], failures) == (
        Verdict.FAILING,
        "7 failed sessions in the last 14 days, most often starttls-not-supported",
    )
    assert judge(Mode.ENFORCE, [sts("A", failed=1)], []) == (
        Verdict.FAILING,
        "1 failed session in the last 14 days",
    )


def test_mode_none() -> None:
    assert judge(Mode.NONE, [sts("A", failed=3)], []) == (
        Verdict.NONE,
        "mode none: no policy is in force",
    )


@pytest.mark.parametrize(
    "spellings",
    [
        pytest.param(["Google Inc.", "google inc."], id="case"),
        pytest.param(["Google Inc.", " Google  Inc. "], id="blanks"),
        pytest.param(["Google Inc.", "Google\u00a0Inc.", "Google\tInc."], id="other-blanks"),
        pytest.param(["Google Inc.", "\uff27oogle Inc."], id="fullwidth"),  # NFKC
        pytest.param(["Société", "Socie\u0301te\u0301"], id="decomposed"),
    ],
)
def test_one_organization_however_it_spells_its_name(spellings: list[str]) -> None:
    # "Google Inc." and "google inc. " were two organisations: one sender made a domain ready.
    verdict, reason = judge(Mode.TESTING, [sts(name) for name in spellings], [])
    assert (verdict, reason) == (
        Verdict.NOT_READY,
        "reports from 1 organization in the last 14 days, 2 needed",
    )


def test_punctuation_and_legal_suffixes_still_tell_organizations_apart() -> None:
    verdict, _ = judge(Mode.TESTING, [sts("Google Inc."), sts("Google LLC")], [])
    assert verdict is Verdict.READY
