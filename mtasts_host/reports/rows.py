"""The counts the store keeps and gives back, as immutable rows."""

from __future__ import annotations

from dataclasses import dataclass

from .report import Report

DAY = 86_400


@dataclass(frozen=True, slots=True)
class Totals:
    """The sessions of one domain and policy type reported by one organisation on one day."""

    domain: str
    policy_type: str
    organization: str
    day: int
    """The UTC day the reports cover (days since 1970-01-01): the day of their end."""
    reports: int
    successful: int
    failed: int


@dataclass(frozen=True, slots=True)
class FailureTotals:
    """Failed sessions of one domain and policy type, by day and result type."""

    domain: str
    policy_type: str
    day: int
    result_type: str
    sessions: int


@dataclass(frozen=True, slots=True)
class MxTotals:
    """Failed STS sessions of one domain at one MX host, over a period."""

    domain: str
    mx: str
    """``receiving-mx-hostname``, or ``""`` where the sender left it out."""
    sessions: int


@dataclass(frozen=True, slots=True)
class SessionCounts:
    """All STS sessions of one domain ever stored, by result, and when its last report came."""

    domain: str
    successful: int
    failures: dict[str, int]
    last_received: int | None
    """None when every report of the domain has been pruned."""


def report_day(report: Report) -> int:
    """The UTC day a report covers: the day of its last second."""
    start, end = int(report.start.timestamp()), int(report.end.timestamp())
    return max(start, end - 1) // DAY
