"""The counts the store keeps and gives back, as immutable rows."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from .. import names
from ..policy import MAX_BODY_SIZE
from .report import PolicyResult, PolicyType, Report

DAY = 86_400
MAX_MX_KEY = MAX_BODY_SIZE
"""Characters kept of an ``mx_key``: no policy is longer (RFC 8461 section 3.3), while a
report's ``policy-string`` may be megabytes. Both sides are cut alike, ending in "\u2026"."""


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
    older: bool = False
    """Reported against an older policy: an ``sts`` one whose ``mx`` differs from the
    ``mx`` the domain serves now (see ``mx_key``). Left out of the summary's counts."""


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
    """None when the only reports of the domain were pruned before schema version 6."""


def report_day(report: Report) -> int:
    """The UTC day a report covers: the day of its last second."""
    start, end = int(report.start.timestamp()), int(report.end.timestamp())
    return max(start, end - 1) // DAY


def mx_key(patterns: Iterable[str]) -> str | None:
    """
    A policy's ``mx`` patterns as the store compares them: lower case, one trailing dot
    removed, unique, sorted, joined by one blank; None for none. Wildcards compare as
    written: ``*.example.com`` is not ``mail.example.com``.
    """
    unique = {pattern.strip().lower().removesuffix(".") for pattern in patterns} - {""}
    key = " ".join(sorted(unique))
    if len(key) > MAX_MX_KEY:
        key = key[: MAX_MX_KEY - 1] + "\u2026"
    return key or None


def reported_mx(policy: PolicyResult) -> str | None:
    """
    The ``mx_key`` of the policy a report's ``sts`` policy result was applied under, from its
    ``policy-string`` (RFC 8460 section 4.4: one string per policy line, ``mx: <pattern>``);
    None where it gives none, or for another policy type.
    """
    if policy.policy_type is not PolicyType.STS:
        return None
    # Lines split again: a sender may pack the policy into one string, as some do TLSA ones.
    lines = (line for text in policy.policy_strings for line in text.splitlines())
    fields = (line.partition(":") for line in lines)
    return mx_key(
        _pattern(value) for key, colon, value in fields if colon and key.strip().lower() == "mx"
    )


def _pattern(text: str) -> str:
    # As A-labels, as the configured mx are: a sender that wrote mx.bücher.example back as
    # such applied the same policy. What is no pattern is compared as written, in lower case.
    try:
        return names.mx_pattern(text.strip())
    except ValueError:
        return text
