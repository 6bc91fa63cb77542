"""
What the stored reports say about each configured domain over a period, with its verdict:
pure functions of the store's totals, so every rule is tested without a store.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from .._text import counted
from ..policy import Mode, Policy
from .organizations import organizations
from .report import PolicyType
from .rows import FailureTotals, MxTotals, Totals
from .sessions import Sessions, most_first, other_policies, summed
from .settings import DEFAULT_THRESHOLDS, Thresholds
from .verdict import Verdict, judge

_Row = TypeVar("_Row", Totals, FailureTotals)

UNREPORTED_MX = "(not reported)"
"""The ``failures_by_mx`` key for failures whose sender gave no ``receiving-mx-hostname``."""
TOP_MX = 20
"""MX hosts a summary names: a domain has a few, while one report can name 100,000, one a
failure detail. The sessions of the others are summed under ``OTHER_MX``."""
OTHER_MX = "(other hosts)"
"""The ``failures_by_mx`` key for the failed sessions of the hosts beyond the top ones."""
_PLAIN_HOST = re.compile(r'[^\s,"()]+')
"""What a host name can be shown as: no blank, comma, quote or parenthesis."""


@dataclass(frozen=True, slots=True)
class Day:
    """The STS sessions of one UTC day (days since 1970-01-01)."""

    day: int
    successful: int = 0
    failed: int = 0


@dataclass(frozen=True, slots=True)
class DomainSummary:
    """A domain's MTA-STS view over a number of days, and its verdict."""

    domain: str
    mode: Mode
    days: int
    reports: int
    organizations: tuple[str, ...]
    successful_sessions: int
    failed_sessions: int
    failures_by_type: Mapping[str, int]
    """Result type to failed sessions, most first, from the failure details."""
    failures_by_mx: Mapping[str, int]
    """MX host to failed sessions, most first: the ``TOP_MX`` hosts, and ``OTHER_MX``."""
    verdict: Verdict
    verdict_reason: str
    daily: tuple[Day, ...] = ()
    """One entry per day of the period, oldest first, for the chart."""
    other_policies: Mapping[str, Sessions] = field(default_factory=dict)
    """``tlsa``, ``no-policy-found`` and unknown types: stored and shown, never counted."""
    older_policy: Sessions = field(default_factory=Sessions)
    """STS sessions reported against an older policy (an ``mx`` other than the one served
    now), left out of everything above: the organisations, sessions, failures and verdict."""

    def to_json(self) -> dict[str, object]:
        """The keys of ``mtasts-host reports --format json``."""
        return {
            "mode": self.mode.value,
            "reports": self.reports,
            "organizations": list(self.organizations),
            "successful_sessions": self.successful_sessions,
            "failed_sessions": self.failed_sessions,
            "failures_by_type": dict(self.failures_by_type),
            "failures_by_mx": dict(self.failures_by_mx),
            "verdict": self.verdict.value,
            "verdict_reason": self.verdict_reason,
            "older_policy": {
                "reports": self.older_policy.reports,
                "successful_sessions": self.older_policy.successful,
                "failed_sessions": self.older_policy.failed,
            },
            "other_policies": {
                kind: {
                    "reports": sessions.reports,
                    "successful_sessions": sessions.successful,
                    "failed_sessions": sessions.failed,
                }
                for kind, sessions in self.other_policies.items()
            },
        }


def since_day(today: int, days: int) -> int:
    """
    The first day of the last ``days`` days: a report whose date range ended in them covers
    that day or a later one (a day's report ends at the next midnight).
    """
    return today - days


def summarize(
    policies: Mapping[str, Policy],
    totals: Iterable[Totals],
    failures: Iterable[FailureTotals],
    by_mx: Iterable[MxTotals],
    *,
    today: int,
    days: int = 30,
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    daily: bool = True,
) -> dict[str, DomainSummary]:
    """
    Summarise each configured domain, in the order of ``policies``.

    Args:
        policies: the configured domains and the policies they serve; reports for any other
            domain are left out. Only the modes are read here: the rows say which totals are
            ``older``, as the store read them against these policies' ``mx``.
        totals, failures: the store's rows from at least ``since_day(today, max(days,
            thresholds.window_days))`` on; the totals reported against an older policy
            (``older``) count only in ``older_policy``, and the failures and ``by_mx``
            are read without them.
        by_mx: the store's ``TOP_MX`` hosts of each domain from ``since_day(today, days)``
            to ``today``.
        today: the current UTC day (days since 1970-01-01).
        days: the period of the summary; the verdict looks at ``thresholds.window_days``.
        daily: whether each summary has its ``daily`` sessions, for the page's chart: a
            day of each domain with reports, which ``--days 36500`` made 1 GB for 300.
    """
    first, window = since_day(today, days), since_day(today, thresholds.window_days)
    by_domain: dict[str, list[Totals]] = {domain: [] for domain in policies}
    for row in totals:
        if row.domain in by_domain:
            by_domain[row.domain].append(row)
    failed_by_domain: dict[str, list[FailureTotals]] = {domain: [] for domain in policies}
    for failure in failures:
        if failure.domain in failed_by_domain and failure.policy_type == PolicyType.STS.value:
            failed_by_domain[failure.domain].append(failure)
    mx_by_domain: dict[str, list[MxTotals]] = {domain: [] for domain in policies}
    for host in by_mx:
        if host.domain in mx_by_domain:
            mx_by_domain[host.domain].append(host)
    # Days are values: the domains without reports (most of a large config) share theirs.
    no_days = _daily((), first, today) if daily else ()
    result = {}
    for domain, policy in policies.items():
        # Sessions reported against an older policy are left out of all but older_policy:
        # failures at a host since dropped from the mx are no reason to wait (the failure
        # details and hosts come from the store without them).
        rows = [row for row in by_domain[domain] if not row.older]
        older = [row for row in by_domain[domain] if row.older]
        sts = [row for row in rows if row.policy_type == PolicyType.STS.value]
        period = _between(sts, first, today)
        details = _between(failed_by_domain[domain], first, today)
        recent = _between(failed_by_domain[domain], window, today)
        verdict, reason = judge(policy.mode, _between(rows, window, today), recent, thresholds)
        left_out = summed(_between(older, window, today))
        if left_out.reports and policy.mode is not Mode.NONE:
            reason += (
                f"; not counted: {counted(left_out.successful + left_out.failed, 'session')}"
                f" from {counted(left_out.reports, 'report')} against an older policy (other mx)"
            )
        by_type = most_first((row.result_type, row.sessions) for row in details)
        result[domain] = DomainSummary(
            domain=domain,
            mode=policy.mode,
            days=days,
            reports=sum(row.reports for row in period),
            organizations=organizations(period),
            successful_sessions=sum(row.successful for row in period),
            failed_sessions=sum(row.failed for row in period),
            failures_by_type=by_type,
            failures_by_mx=_hosts(mx_by_domain[domain], sum(by_type.values())),
            verdict=verdict,
            verdict_reason=reason,
            daily=_daily(period, first, today) if period and daily else no_days,
            other_policies=other_policies(_between(rows, first, today)),
            older_policy=summed(_between(older, first, today)),
        )
    return result


def _between(rows: Iterable[_Row], first: int, today: int) -> list[_Row]:
    # Up to today as well: a report dated later must not count in every window before its day.
    return [row for row in rows if first <= row.day <= today]


def _hosts(rows: Iterable[MxTotals], sessions: int) -> dict[str, int]:
    pairs = [(_host(row.mx) if row.mx else UNREPORTED_MX, row.sessions) for row in rows]
    # The failure details' sessions that the top hosts leave: those of all the others.
    rest = sessions - sum(count for _, count in pairs)
    return most_first([*pairs, (OTHER_MX, rest)] if rest > 0 else pairs)


def _host(mx: str) -> str:
    # A sender may name its MX "(other hosts)", or "mail.example.com 999, other.example.com"
    # to add a count to a line of text: what no host name is, it gets in quotes.
    return mx if _PLAIN_HOST.fullmatch(mx) else json.dumps(mx, ensure_ascii=False)


def _daily(rows: Iterable[Totals], first: int, today: int) -> tuple[Day, ...]:
    successful: Counter[int] = Counter()
    failed: Counter[int] = Counter()
    for row in rows:
        successful[row.day] += row.successful
        failed[row.day] += row.failed
    return tuple(Day(day, successful[day], failed[day]) for day in range(first, today + 1))
