"""
Taking a report in, however it came (HTTPS or mail): decode, parse, store, count, and keep
the store's health known. Blocking: the HTTP side runs it in a thread.
"""

from __future__ import annotations

import gzip
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import TypeVar

from .body import MAX_REPORT_SIZE, TooLarge, is_gzip, report_text
from .parse import parse_report
from .report import BadReport, Report
from .rows import DAY
from .store import Outcome, ReportStore, StoreUnavailable

logger = logging.getLogger(__name__)
T = TypeVar("T")

REJECTED = "rejected"
"""The outcome counted for a report refused as bad (400) or too large (413)."""
PRUNE_INTERVAL = 3600.0
"""Seconds between two prunes: retention is counted in days, so hourly is plenty."""
MAX_AHEAD = DAY
"""Seconds a report's date range may end after our clock: senders report on a period once it
has ended, so this is for wrong clocks and for local times sent without a zone (UTC+14 at
most)."""


class Intake:
    """
    Stores reports and counts the outcomes: ``stored``, ``duplicate`` and ``rejected``.

    Args:
        store: where reports go.
        retention_days: reports whose date range ended longer ago are pruned, at most once
            an hour, by the intake itself: no timer to run or stop.
        clock: seconds since the epoch, for the tests.
    """

    def __init__(
        self,
        store: ReportStore,
        retention_days: int,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.retention_days = retention_days
        self.clock = clock
        self.outcomes: Counter[str] = Counter()
        self.problem: str | None = None
        """Why the store failed the last time it was used, until it works again."""
        self.checked_at = 0.0
        """When the store was last used or probed (``time.monotonic``)."""
        self._pruned_at: float | None = None
        self._lock = threading.Lock()
        self._parsing = threading.Lock()

    def accept(self, data: bytes, *, limit: int = MAX_REPORT_SIZE) -> tuple[Outcome, Report]:
        """
        Store one report body, gzip or JSON.

        Raises:
            BadReport: not a report; counted as rejected.
            TooLarge: beyond the size limits; counted as rejected.
            StoreUnavailable: the store failed; nothing was stored or counted.
        """
        try:
            # One at a time, so that the text and objects of one report are all there is at
            # once: json.loads holds the GIL anyway, so this costs the threads no time.
            with self._parsing:
                report = parse_report(report_text(data, limit))
        except (BadReport, TooLarge) as exc:
            self.reject(str(exc))
            raise
        except Exception as exc:  # a bug of ours must not cost the sender a 5xx
            logger.exception("could not parse a report")
            self.reject("unreadable")
            raise BadReport("unreadable report") from exc
        reason = self._out_of_time(report)
        if reason is not None:
            # Read whole, it can be named: which sender's clock, or retries, to look at.
            self.reject(f"report {report.report_id!r} from {report.organization_name!r}: {reason}")
            raise BadReport(reason)
        raw = data if is_gzip(data) else gzip.compress(data, mtime=0)
        outcome = self.use(lambda: self.store.add(report, raw, self.clock()))
        self.count(outcome.value)
        logger.info(
            "%s report %r from %r for %s",
            outcome.value,
            report.report_id,
            report.organization_name,
            _domains(report),
        )
        self._prune_now_and_then()
        return outcome, report

    def _out_of_time(self, report: Report) -> str | None:
        now, end = self.clock(), report.end.timestamp()
        if end < now - self.retention_days * DAY:
            # It would be pruned at once, and then stored again if sent again.
            return f"the report ended more than {self.retention_days} days ago"
        if end > now + MAX_AHEAD:
            # No summary would count it before its day, and no prune remove it for years.
            return f"the report ends more than a day from now, at {report.end:%Y-%m-%dT%H:%M:%SZ}"
        return None

    def reject(self, reason: str) -> None:
        """Count a report refused before it reached the store."""
        self.count(REJECTED)
        logger.warning("rejected a report: %s", reason)

    def count(self, outcome: str) -> None:
        with self._lock:  # several threads take reports in at once
            self.outcomes[outcome] += 1

    def use(self, operation: Callable[[], T]) -> T:
        """
        Run a store operation, remembering whether the store works.

        Raises:
            StoreUnavailable: the store failed, whatever the error: the sender tries again.
        """
        try:
            result = operation()
        except StoreUnavailable as exc:
            self._failed(str(exc))
            raise
        except Exception as exc:
            logger.exception("report store error")
            self._failed(f"{type(exc).__name__}: {exc}")
            raise StoreUnavailable(self.problem) from exc
        self._worked()
        return result

    def probe(self) -> str | None:
        """Try the store now; return the problem, or None if it answers."""
        try:
            self.store.ping()
        except StoreUnavailable as exc:
            self._failed(str(exc))
        else:
            self._worked()
        return self.problem

    def prune(self) -> int:
        """Delete the reports past the retention; return how many."""
        before = self.clock() - self.retention_days * DAY
        removed = self.store.prune(before)
        if removed:
            logger.info("pruned %d reports older than %d days", removed, self.retention_days)
        return removed

    def _prune_now_and_then(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_INTERVAL:
            return
        self._pruned_at = now
        try:
            self.prune()
        except StoreUnavailable as exc:
            self._failed(str(exc))

    def _failed(self, problem: str) -> None:
        if self.problem != problem:
            logger.error("report store unavailable: %s", problem)
        self.problem, self.checked_at = problem, time.monotonic()

    def _worked(self) -> None:
        if self.problem is not None:
            logger.info("report store available again")
        self.problem, self.checked_at = None, time.monotonic()


_LISTED = 10
"""Policy domains an intake line names; a count stands for the rest of a report's."""


def _domains(report: Report) -> str:
    """The policy domains of ``report``, the first ones quoted (a sender wrote them), which
    tell the operator whose report it is: its id and organisation do not."""
    domains = list(dict.fromkeys(policy.domain for policy in report.policies))
    if not domains:
        return "no policy"
    listed = ", ".join(map(repr, domains[:_LISTED]))
    more = len(domains) - _LISTED
    return listed + (f" and {more} more" if more > 0 else "")
