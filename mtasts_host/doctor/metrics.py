"""The doctor's latest findings as Prometheus metric families, collected at scrape time."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric

from .findings import Check, Report

FailedRuns = Mapping[tuple[str, Check], int]
"""Per domain and check, the doctor runs in a row, up to the last, that found it failing."""


def families(report: Report | None, failed_runs: FailedRuns | None = None) -> Iterator[Metric]:
    """
    ``mtasts_doctor_check{domain,check}`` (0 ok, 1 warn, 2 fail),
    ``mtasts_doctor_check_failed_runs{domain,check}`` (from ``failed_runs``),
    ``mtasts_certificate_expiry_timestamp_seconds{host}`` and
    ``mtasts_doctor_last_run_timestamp_seconds``, from ``report``; families without samples
    before the first run ends. The labels come from the config: its domains, the check ids,
    policy hosts and the MX hosts the policies name.
    """
    checks = GaugeMetricFamily(
        "mtasts_doctor_check",
        "The doctor's last result per domain and check: 0 ok, 1 warn, 2 fail.",
        labels=["domain", "check"],
    )
    failed = GaugeMetricFamily(
        "mtasts_doctor_check_failed_runs",
        "Doctor runs in a row, up to the last, that found the check failing (0: the last did not).",
        labels=["domain", "check"],
    )
    expiry = GaugeMetricFamily(
        "mtasts_certificate_expiry_timestamp_seconds",
        "When the certificate of a policy host or MX host expires (the earliest, if its "
        "addresses differ), for certificates seen in the doctor's last run, verified or not.",
        labels=["host"],
    )
    last_run = GaugeMetricFamily(
        "mtasts_doctor_last_run_timestamp_seconds", "When the doctor's last run ended."
    )
    if report is not None:
        runs = failed_runs or {}
        for domain, findings in report.domains.items():
            for finding in findings:
                labels = [domain, finding.check.value]
                checks.add_metric(labels, finding.status.level)
                failed.add_metric(labels, runs.get((domain, finding.check), 0))
        for host, not_after in sorted(report.certificates.items()):
            expiry.add_metric([host], not_after)
        last_run.add_metric([], report.finished_at)
    yield checks
    yield failed
    yield expiry
    yield last_run
