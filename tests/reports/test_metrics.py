"""The reports' metrics, as Prometheus scrapes them."""

from __future__ import annotations

import contextlib
import gzip
import tracemalloc
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from starlette.testclient import TestClient

from mtasts_host.app import PolicyApp
from mtasts_host.config import parse_config
from mtasts_host.reports import Reports, postgres
from mtasts_host.reports.parse import parse_report
from mtasts_host.reports.rows import DAY
from mtasts_host.reports.store import Connection

from .conftest import (
    NOW,
    OLDER_POLICY,
    REPORTS_HOST,
    TODAY,
    against,
    at_backup,
    encode,
    fixture,
    report,
    reports_app,
    table_locked,
    within,
)
from .flood import flood


class _Collector:
    def __init__(self, reports: Reports) -> None:
        self.reports = reports

    def collect(self) -> Iterator[Metric]:
        return self.reports.metrics(self.reports.policies.snapshot)


def scrape(reports: Reports) -> list[str]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(reports))
    return [
        line for line in generate_latest(registry).decode().splitlines() if not line.startswith("#")
    ]


def test_outcomes_sessions_and_last_report(client: TestClient, reports: Reports) -> None:
    client.post("/tlsrpt", content=encode(report(report_id="a", successful=90, failed=4)))
    client.post("/tlsrpt", content=encode(report(report_id="a")))
    client.post("/tlsrpt", content=b"{")
    client.post("/tlsrpt", content=fixture("odd-fields.json"))
    assert scrape(reports) == [
        'mtasts_tlsrpt_reports_total{outcome="stored"} 2.0',
        'mtasts_tlsrpt_reports_total{outcome="duplicate"} 1.0',
        'mtasts_tlsrpt_reports_total{outcome="rejected"} 1.0',
        "mtasts_tlsrpt_store_up 1.0",
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="success"} 97.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="certificate-expired"} 4.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="other"} 2.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="sts-webpki-invalid"} 3.0',
        'mtasts_tlsrpt_last_report_timestamp_seconds{domain="example.com"} 1.7172432e+09',
    ]  # and nothing for not-configured.example


def test_an_unavailable_store_still_gives_the_outcomes(
    make_reports: Callable[..., Reports], tmp_path: Path
) -> None:
    reports = make_reports(f"sqlite:///{tmp_path}/missing/reports.db")
    assert scrape(reports) == [
        'mtasts_tlsrpt_reports_total{outcome="stored"} 0.0',
        'mtasts_tlsrpt_reports_total{outcome="duplicate"} 0.0',
        'mtasts_tlsrpt_reports_total{outcome="rejected"} 0.0',
        "mtasts_tlsrpt_store_up 0.0",
    ]


def test_a_scrape_while_a_table_is_locked_gives_the_policies_and_the_store_down(
    make_reports: Callable[..., Reports], postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It hung for as long as the lock was held (an ALTER TABLE, a VACUUM FULL): Prometheus
    # gave up on the scrape, and lost the policies' metrics with the reports'.
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", 0.1)
    reports = make_reports(postgres_url)
    client = TestClient(reports_app(reports), base_url="http://127.0.0.1")
    stored = client.post("/tlsrpt", content=encode(report()), headers={"host": REPORTS_HOST})
    assert stored.status_code == 201
    with table_locked(postgres_url, "tlsrpt_counted"):
        (response,) = within(10, lambda: client.get("/metrics"))
    lines = response.text.splitlines()
    assert "mtasts_domains 2.0" in lines
    assert "mtasts_tlsrpt_store_up 0.0" in lines


def test_the_sessions_counter_never_goes_down_when_reports_are_pruned(
    make_reports: Callable[..., Reports],
) -> None:
    # A counter that drops is a reset to Prometheus: rate() would count everything again.
    now = [NOW]
    reports = make_reports(clock=lambda: now[0])
    client = TestClient(reports_app(reports), base_url=f"https://{REPORTS_HOST}")
    client.post("/tlsrpt", content=encode(report(successful=90, failed=4)))
    before = [line for line in scrape(reports) if "sessions_total" in line]
    now[0] += 401 * DAY
    assert reports.intake.prune() == 1
    assert [line for line in scrape(reports) if "sessions_total" in line] == before


def test_a_scrape_reads_the_configured_domains_only(
    make_reports: Callable[..., Reports], store_url: str
) -> None:
    # 5000 policies of domains nobody configured, in five reports: each scrape read them all
    # (and every page), to give them no series.
    reports = make_reports(store_url)
    for n in range(5):
        raw = encode(flood(n, 1000))
        reports.store.add(parse_report(gzip.decompress(raw)), raw, NOW)
    tracemalloc.start()
    try:
        lines = scrape(reports)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 500_000
    assert [line for line in lines if "sessions_total" in line] == [
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="success"} 5000.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="certificate-expired"} 5000.0',
    ]


def test_the_sessions_counter_never_goes_down_when_a_replica_prunes_during_a_scrape(
    make_reports: Callable[..., Reports], postgres_url: str
) -> None:
    # In READ COMMITTED each query reads what has been committed before it: a prune committed
    # between the read of the pruned totals and that of the reports left its sessions out.
    now = [NOW]
    reports = make_reports(postgres_url, clock=lambda: now[0])
    client = TestClient(reports_app(reports), base_url=f"https://{REPORTS_HOST}")
    client.post("/tlsrpt", content=encode(report(successful=90, failed=4)))
    now[0] += 200 * DAY
    client.post("/tlsrpt", content=encode(report(day=TODAY + 199, successful=10)))
    before = [line for line in scrape(reports) if "sessions_total" in line]
    now[0] += 201 * DAY  # the first report is past the retention, the second is not
    replica = make_reports(postgres_url, clock=lambda: now[0])
    store, transaction = reports.store, reports.store.read_transaction
    pruned: list[int] = []

    class _PruneInBetween:
        """The scrape's connection: another replica prunes once it has read the totals."""

        def __init__(self, connection: Connection) -> None:
            self.connection = connection

        def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
            result = self.connection.execute(sql, params)
            if "tlsrpt_counted" in sql and not pruned:
                pruned.append(replica.intake.prune())
            return result

        def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
            return self.connection.executemany(sql, params)

    @contextlib.contextmanager
    def racing() -> Iterator[Connection]:
        with transaction() as connection:
            yield _PruneInBetween(connection)

    store.read_transaction = racing  # type: ignore[method-assign]
    try:
        during = [line for line in scrape(reports) if "sessions_total" in line]
    finally:
        store.read_transaction = transaction  # type: ignore[method-assign]
    assert pruned == [1]
    assert during == before
    assert [line for line in scrape(reports) if "sessions_total" in line] == before


def test_result_types_this_version_does_not_know_count_as_one_other_series(
    client: TestClient, reports: Reports
) -> None:
    # A newer replica sharing the store may store a result type RFC 8460's registry gained
    # since: one series with the sum, not a series with the same labels per unknown type.
    failures = [
        {"result-type": result, "failed-session-count": sessions}
        for result, sessions in [("validation-failure", 1), ("x-unknown", 2), ("tlsa-invalid", 4)]
    ]
    client.post("/tlsrpt", content=encode(report(successful=5, failed=7, failures=failures)))
    with reports.store.connection() as connection:
        connection.execute(
            "UPDATE tlsrpt_failures SET result_type = ? WHERE result_type = ?",
            ("tlsa-required-by-a-newer-rfc", "tlsa-invalid"),
        )
        connection.execute(  # and counted them as such
            "UPDATE tlsrpt_counted SET result = ? WHERE result = ?",
            ("tlsa-required-by-a-newer-rfc", "tlsa-invalid"),
        )
    assert [line for line in scrape(reports) if "sessions_total" in line] == [
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="success"} 5.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="other"} 6.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="validation-failure"} 1.0',
    ]


def test_one_scrape_reads_the_domains_of_one_snapshot(reports: Reports) -> None:
    # The policies' info and the reports' sessions each read the store's snapshot: a reload
    # between the two gave one scrape a domain's policy and not its sessions.
    app = PolicyApp(reports.policies, reports=reports, access_log=False)
    client = TestClient(app, base_url=f"https://{REPORTS_HOST}")
    for domain in ("example.com", "example.net"):
        client.post("/tlsrpt", content=encode(report(domain=domain)))
    assert app.registry is not None
    labels: dict[str, set[str]] = {}
    for family in app.registry.collect():
        labels[family.name] = {sample.labels.get("domain", "") for sample in family.samples}
        if family.name == "mtasts_policy":
            reports.policies.replace(parse_config(b"domains:\n  example.net: {mode: none}\n"))
    assert labels["mtasts_policy"] == {"example.com", "example.net"}
    assert labels["mtasts_tlsrpt_sessions"] == {"example.com", "example.net"}
    assert labels["mtasts_tlsrpt_last_report_timestamp_seconds"] == {"example.com", "example.net"}


def test_sessions_reported_against_an_older_mx_still_count(
    client: TestClient, reports: Reports
) -> None:
    older = report(report_id="older", successful=90, failed=4, failures=at_backup(4))
    client.post("/tlsrpt", content=encode(against(older, OLDER_POLICY)))
    assert reports.summaries()["example.com"].successful_sessions == 0  # left out there
    assert scrape(reports)[4:6] == [
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="success"} 90.0',
        'mtasts_tlsrpt_sessions_total{domain="example.com",result="certificate-host-mismatch"} 4.0',
    ]
