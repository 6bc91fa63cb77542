"""The reports in a running server: the summaries read from a store, and readiness."""

from __future__ import annotations

import gzip
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from mtasts_host.policy import Mode
from mtasts_host.reports import Reports, service
from mtasts_host.reports.parse import parse_report
from mtasts_host.reports.service import read_summaries
from mtasts_host.reports.store import ReportStore

from .conftest import NOW, encode
from .flood import flood, name


def test_a_summary_reads_the_top_hosts_of_configured_domains_only(store: ReportStore) -> None:
    # Five reports of 60 KB gzip each, naming 1000 hosts and 1000 other domains: the summary
    # read every row of them (5 MB here, 387 MB with names of 18 KB), then showed five hosts.
    for n in range(5):
        raw = encode(flood(n, 1000))
        store.add(parse_report(gzip.decompress(raw)), raw, NOW)
    tracemalloc.start()
    try:
        summaries = read_summaries(store, {"example.com": Mode.TESTING}, now=NOW)
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
