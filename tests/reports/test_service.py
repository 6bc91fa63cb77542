"""The reports in a running server: the summaries read from a store, and readiness."""

from __future__ import annotations

import gzip
import sqlite3
import time
import tracemalloc
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import anyio
import anyio.to_thread
import pytest
from starlette.testclient import TestClient

from mtasts_host.app import create_app
from mtasts_host.policy import Mode
from mtasts_host.reports import Reports, service, sqlite
from mtasts_host.reports.page import page_parts
from mtasts_host.reports.parse import parse_report
from mtasts_host.reports.service import read_summaries
from mtasts_host.reports.sessions import Sessions
from mtasts_host.reports.store import Outcome, ReportStore
from mtasts_host.reports.verdict import Verdict

from .conftest import (
    CONFIG,
    NOW,
    OLDER_POLICY,
    TODAY,
    against,
    another_replica_pruning,
    at_backup,
    encode,
    report,
    serving,
    within,
)
from .flood import flood, name


def test_a_summary_reads_the_top_hosts_of_configured_domains_only(store: ReportStore) -> None:
    # Five reports of 60 KB gzip each, naming 1000 hosts and 1000 other domains: the summary
    # read every row of them (5 MB here, 387 MB with names of 18 KB), then showed five hosts.
    for n in range(5):
        raw = encode(flood(n, 1000))
        store.add(parse_report(gzip.decompress(raw)), raw, NOW)
    tracemalloc.start()
    try:
        summaries = read_summaries(store, serving({"example.com": Mode.TESTING}), now=NOW)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 500_000
    summary = summaries["example.com"]
    assert (summary.reports, summary.failed_sessions) == (5, 5000)
    assert summary.failures_by_type == {"certificate-expired": 5000}
    assert len(summary.failures_by_mx) == 21  # the top 20, and the others
    assert summary.failures_by_mx["(other hosts)"] == 5000 - 20
    assert list(summary.failures_by_mx)[1:3] == [name("mx0-0"), name("mx0-1")]  # then by name


def test_a_replica_does_not_wait_for_another_replicas_prune(
    make_reports: Callable[..., Reports], postgres_url: str
) -> None:
    """
    Another replica sharing the store prunes a large backlog: a replica starting meanwhile
    served no policy, not even /healthz (so its liveness probe failed), and a sender whose
    report it stored got no answer, until that prune ended.
    """
    reports = make_reports(postgres_url)
    reports.store.upgrade()  # the tables as the other replica made them
    with another_replica_pruning(postgres_url):
        assert within(10, reports.open) == [None]
        stored = within(10, lambda: reports.intake.accept(encode(report()))[0])
        assert stored == [Outcome.STORED]


def test_policies_are_served_while_the_store_is_being_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # create_app opened the store before it returned, and so before serving: a lock held
    # elsewhere (a sqlite3 shell, another replica upgrading a PostgreSQL store, a server that
    # never answers) kept every policy, and /healthz, waiting as long as the store did.
    monkeypatch.setattr(sqlite, "BUSY_TIMEOUT", 60.0)
    store = tmp_path / "reports.db"
    config = tmp_path / "config.yaml"
    config.write_text(CONFIG + f"reports: {{store: 'sqlite:///{store}'}}\n")
    holder = sqlite3.connect(store, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        (app,) = within(10, lambda: create_app(config, watch=False, access_log=False))
        client = TestClient(app)
        policy = client.get("https://mta-sts.example.com/.well-known/mta-sts.txt")
        opening = client.get("http://127.0.0.1/readyz?format=json").json()["reports_store"]
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (policy.status_code, opening) == (200, service.OPENING)
    for _ in range(200):  # until the opening, waiting for the lock until now, has ended
        opened = client.get("http://127.0.0.1/readyz?format=json").json()["reports_store"]
        if opened != service.OPENING:
            break
        time.sleep(0.05)
    assert opened == "ok"


def test_readiness_asks_again_after_a_probe_that_got_no_thread(
    make_reports: Callable[..., Reports], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reports = make_reports(f"sqlite:///{tmp_path}/later/reports.db")
    problem = f"{tmp_path}/later/reports.db: unable to open database file"
    assert reports.open() == problem
    (tmp_path / "later").mkdir()

    async def busy_then_idle() -> tuple[str | None, str | None]:
        threads = anyio.to_thread.current_default_thread_limiter()
        holders = [object() for _ in range(int(threads.total_tokens))]
        for holder in holders:  # every worker thread taken, as by requests waiting
            await threads.acquire_on_behalf_of(holder)
        reports.intake.checked_at = 0
        busy = await reports.readiness()  # gives up waiting for a thread
        for holder in holders:
            threads.release_on_behalf_of(holder)
        reports.intake.checked_at = 0
        monkeypatch.setattr(service, "READINESS_WAIT", 60.0)  # this one is waited for
        return busy, await reports.readiness()

    assert anyio.run(busy_then_idle) == (problem, None)


def test_the_page_leaves_out_sessions_reported_against_an_older_mx(
    store_url: str, make_reports: Callable[..., Reports]
) -> None:
    reports = make_reports(store_url)  # example.com in testing, mx mail.example.com only
    older = report(
        organization="A", day=TODAY - 2, successful=900, failed=100, failures=at_backup(100)
    )
    reports.intake.accept(encode(against(older, OLDER_POLICY)))
    reports.intake.accept(encode(report(organization="A", successful=5000)))
    reports.intake.accept(encode(report(organization="B", successful=5000)))
    summary = reports.summaries()["example.com"]
    assert (summary.verdict, summary.failed_sessions, dict(summary.failures_by_mx)) == (
        Verdict.READY,
        0,
        {},
    )
    assert summary.older_policy == Sessions(1, 900, 100)
    html = "".join(page_parts(reports.summaries(), generated=datetime.now(UTC)))
    assert (
        "<h3>Older policy (other mx, not counted above)</h3><table><tr><th>reports</th>"
        "<th>successful</th><th>failed</th></tr><tr><td class=n>1</td>"
        "<td class=n>900</td><td class=n>100</td></tr></table>"
    ) in html
    assert "not counted: 1000 sessions from 1 report against an older policy (other mx)" in html
