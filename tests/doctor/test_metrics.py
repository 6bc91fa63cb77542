"""The doctor's metric families, as Prometheus scrapes them."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric

from mtasts_host.doctor import Check, Finding, Report, Status, families
from mtasts_host.doctor.metrics import FailedRuns

A = "a.example"


class _Collector:
    def __init__(self, report: Report | None, failed_runs: FailedRuns) -> None:
        self.report = report
        self.failed_runs = failed_runs

    def collect(self) -> Iterator[Metric]:
        return families(self.report, self.failed_runs)


def scrape(report: Report | None, failed_runs: FailedRuns | None = None) -> list[str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(report, failed_runs or {}))
    text = generate_latest(registry).decode()
    return [line for line in text.splitlines() if not line.startswith("#")]


def test_checks_certificates_and_last_run() -> None:
    report = Report(
        {
            A: (
                Finding(A, Check.DNS_TXT, Status.OK, ""),
                Finding(A, Check.HTTPS, Status.WARN, ""),
                Finding(A, Check.MX_TLS, Status.FAIL, ""),
            )
        },
        {"mx.a.example": 1_800_000_000.0, "mta-sts.a.example": 1_750_000_000.0},
        1_700_000_000.0,
        1_700_000_003.0,
    )
    assert scrape(report, {(A, Check.MX_TLS): 3}) == [
        'mtasts_doctor_check{check="dns-txt",domain="a.example"} 0.0',
        'mtasts_doctor_check{check="https",domain="a.example"} 1.0',
        'mtasts_doctor_check{check="mx-tls",domain="a.example"} 2.0',
        'mtasts_doctor_check_failed_runs{check="dns-txt",domain="a.example"} 0.0',
        'mtasts_doctor_check_failed_runs{check="https",domain="a.example"} 0.0',
        'mtasts_doctor_check_failed_runs{check="mx-tls",domain="a.example"} 3.0',
        'mtasts_certificate_expiry_timestamp_seconds{host="mta-sts.a.example"} 1.75e+09',
        'mtasts_certificate_expiry_timestamp_seconds{host="mx.a.example"} 1.8e+09',
        "mtasts_doctor_last_run_timestamp_seconds 1.700000003e+09",
    ]


def test_no_samples_before_the_first_run() -> None:
    assert scrape(None) == []
