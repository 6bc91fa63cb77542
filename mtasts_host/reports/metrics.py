"""The reports' Prometheus metrics, collected at scrape time."""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from . import sums
from .intake import REJECTED, Intake
from .report import ResultType
from .store import Outcome, StoreUnavailable

SUCCESS = "success"
"""The ``result`` label of successful sessions; failures carry their result type."""


def metric_families(intake: Intake, domains: Collection[str]) -> Iterator[Metric]:
    """
    The metrics of the reports: the intake's outcomes in this process, and the STS
    sessions of the stored reports of configured domains (the same on every replica that
    shares a store: aggregate those with ``max``, not ``sum``).

    Args:
        intake: the intake, and its store.
        domains: the configured domains; no other domain gets a series.
    """
    reports = CounterMetricFamily(
        "mtasts_tlsrpt_reports",
        "TLS reports received by this process, by outcome (stored, duplicate, rejected).",
        labels=["outcome"],
    )
    for outcome in (Outcome.STORED.value, Outcome.DUPLICATE.value, REJECTED):
        reports.add_metric([outcome], intake.outcomes[outcome])
    yield reports
    try:
        counts = intake.use(lambda: sums.session_counts(intake.store, domains))
    except StoreUnavailable:
        counts = None
    yield GaugeMetricFamily(
        "mtasts_tlsrpt_store_up",
        "1 if the report store answered this scrape.",
        value=int(counts is not None),
    )
    if counts is None:
        return
    sessions = CounterMetricFamily(
        "mtasts_tlsrpt_sessions",
        "STS sessions in the stored reports, by policy domain and result (success, an "
        "RFC 8460 result type, or other).",
        labels=["domain", "result"],
    )
    last = GaugeMetricFamily(
        "mtasts_tlsrpt_last_report_timestamp_seconds",
        "When the last report with an STS policy of the domain was received.",
        labels=["domain"],
    )
    known = {member.value for member in ResultType}
    for count in counts:
        sessions.add_metric([count.domain, SUCCESS], count.successful)
        # Summed by label: a store shared with a newer version may hold several result types
        # this one does not know, and a series may appear only once in a scrape.
        failures: Counter[str] = Counter()
        for result, failed in count.failures.items():
            failures[result if result in known else ResultType.OTHER.value] += failed
        for result, failed in sorted(failures.items()):
            sessions.add_metric([count.domain, result], failed)
        if count.last_received is not None:
            last.add_metric([count.domain], count.last_received)
    yield sessions
    yield last
