"""
Whether a domain is ready for ``enforce``, or failing in it: a pure function of the totals of
the verdict window, so every rule is tested without a store.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .._text import counted, last_days
from ..policy import Mode
from .organizations import organization_key
from .report import PolicyType
from .rows import FailureTotals, Totals
from .sessions import most_first, other_policies
from .settings import DEFAULT_THRESHOLDS, Thresholds


class Verdict(enum.Enum):
    """One word for a domain, from the STS sessions of the verdict window."""

    READY = "ready"
    """``testing``: enough organisations report, and almost nothing fails: enforce it."""
    NOT_READY = "not-ready"
    """``testing``: not yet; the reason says what is missing."""
    OK = "ok"
    """``enforce``: no failed sessions."""
    FAILING = "failing"
    """``enforce``: senders report failures; mail may be bouncing."""
    NONE = "none"
    """``none``: the policy is withdrawn; there is nothing to judge."""


def judge(
    mode: Mode,
    totals: Iterable[Totals],
    failures: Iterable[FailureTotals],
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
) -> tuple[Verdict, str]:
    """
    The verdict on a domain from its totals and STS failures of the verdict window: only
    the STS totals count; those of other policy types are named when no STS report came.
    """
    every = list(totals)
    rows = [row for row in every if row.policy_type == PolicyType.STS.value]
    window = f"the {last_days(thresholds.window_days)}"
    no_reports = _no_reports(every, window)
    # An organisation counts as one that saw our MX hosts: one that reported no session is
    # no view of them, and made a single sender's view "ready".
    organizations = len(
        {organization_key(row.organization) for row in rows if row.successful or row.failed}
    )
    silent = len({organization_key(row.organization) for row in rows}) - organizations
    successful = sum(row.successful for row in rows)
    failed = sum(row.failed for row in rows)
    sessions = successful + failed
    if mode is Mode.NONE:
        return Verdict.NONE, "mode none: no policy is in force"
    if mode is Mode.ENFORCE:
        if failed:
            common = most_first((row.result_type, row.sessions) for row in failures)
            top = f", most often {next(iter(common))}" if common else ""
            return Verdict.FAILING, f"{counted(failed, 'failed session')} in {window}{top}"
        if not rows:
            return Verdict.OK, f"no failed sessions: {no_reports}"
        return Verdict.OK, (
            f"no failed sessions in {window}: {counted(sessions, 'session')} from "
            f"{counted(organizations, 'organization')}"
        )
    missing = []
    if not rows:
        missing.append(no_reports)
    elif not sessions:
        missing.append(f"no sessions reported in {window}")
    else:
        if organizations < thresholds.min_organizations:
            none = f" (and {silent} with no sessions)" if silent else ""
            missing.append(
                f"reports from {counted(organizations, 'organization')}{none} in {window}, "
                f"{thresholds.min_organizations} needed"
            )
        if failed and failed / sessions >= thresholds.max_failure_rate:
            # A share against the share: failed >= sessions * rate rounds 100 * 0.07 up past
            # 7, and 0 >= sessions * 0 made a rate of 0 refuse even a domain without failures.
            missing.append(
                f"{failed} of {counted(sessions, 'session')} failed "
                f"({_percent(failed / sessions, 2)}) in {window}, "
                f"under {_percent(thresholds.max_failure_rate, 2)} needed"
            )
    if missing:
        return Verdict.NOT_READY, "; ".join(missing)
    return Verdict.READY, (
        f"{counted(sessions, 'session')} from {counted(organizations, 'organization')} "
        f"in {window}, "
        f"{failed} failed ({_percent(failed / sessions, 3)})"
    )


def _no_reports(rows: Iterable[Totals], window: str) -> str:
    # Senders that report only no-policy-found did not find the policy: "no reports" sent
    # the operator looking for reports that never went out.
    others = other_policies(rows)
    if not others:
        return f"no reports in {window}"
    kinds = ", ".join(
        f"{kind} ({counted(sessions.reports, 'report')})" for kind, sessions in others.items()
    )
    return f"no reports of an sts policy in {window}, only of {kinds}"


def _percent(share: float, decimals: int) -> str:
    # More decimals where these would round a share to one it is not: 1 failed session of
    # 10 million showed as 0.000%, --max-failure-rate 0.00001 as "under 0.00% needed", and
    # all but one of 100,000 sessions failed as 100.00%.
    shown = f"{share:.{decimals}%}"
    while decimals < 12 and (
        (share and shown == f"{0:.{decimals}%}") or (share != 1 and shown == f"{1:.{decimals}%}")
    ):
        decimals += 1
        shown = f"{share:.{decimals}%}"
    return shown
