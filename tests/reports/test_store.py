"""The stores, SQLite and a real PostgreSQL, behaving the same way."""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from mtasts_host.reports import postgres, schema, sums
from mtasts_host.reports.parse import CUT, parse_report
from mtasts_host.reports.report import MAX_COUNT, Report
from mtasts_host.reports.rows import (
    DAY,
    MAX_MX_KEY,
    FailureTotals,
    MxTotals,
    Totals,
    report_day,
)
from mtasts_host.reports.sqlite import SQLiteStore
from mtasts_host.reports.store import (
    Connection,
    Outcome,
    ReportStore,
    StoreUnavailable,
    open_store,
)

from .conftest import (
    NOW,
    OLDER_POLICY,
    TODAY,
    against,
    another_replica_pruning,
    another_replica_upgrading,
    at_backup,
    encode,
    fixture,
    report,
    table_locked,
    unavailable,
    within,
)

DOMAINS = ("example.com", "example.org", "not-configured.example")
"""The domains each test asks for: those its reports name."""
CURRENT: dict[str, str | None] = dict.fromkeys(DOMAINS)
"""The domains, none serving a policy that reports could be older than."""


def add(store: ReportStore, document: dict[str, Any], received: float = NOW) -> Outcome:
    raw = encode(document)
    return store.add(parse_report(gzip.decompress(raw)), raw, received)


def add_as_before(store: ReportStore, report: Report) -> None:
    """Store a report as mtasts-host did up to schema version 4 (an old replica still does):
    without ``policy_mx``."""
    with store.connection() as connection:
        (key,) = connection.execute(
            "INSERT INTO tlsrpt_reports (organization, report_id, start_time, end_time, day,"
            " received, contact, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                report.organization_name,
                report.report_id,
                int(report.start.timestamp()),
                int(report.end.timestamp()),
                report_day(report),
                int(NOW),
                report.contact_info,
                b"",
            ),
        ).fetchone()
        for n, policy in enumerate(report.policies):
            connection.execute(
                "INSERT INTO tlsrpt_policies (report, position, policy_type, domain,"
                " successful, failed) VALUES (?, ?, ?, ?, ?, ?)",
                (key, n, policy.policy_type.value, policy.domain, policy.successful, policy.failed),
            )
            for m, failure in enumerate(policy.failures):
                connection.execute(
                    "INSERT INTO tlsrpt_failures (report, policy, position, result_type,"
                    " reported_type, mx, receiving_ip, sending_ip, sessions)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        n,
                        m,
                        failure.result_type.value,
                        failure.reported_type,
                        failure.receiving_mx_hostname,
                        failure.receiving_ip,
                        failure.sending_mta_ip,
                        failure.sessions,
                    ),
                )


def test_stored_once_then_duplicate(store: ReportStore) -> None:
    document = report(report_id="r1")
    assert add(store, document) is Outcome.STORED
    assert add(store, document) is Outcome.DUPLICATE
    # Same report-id from another organisation is another report.
    assert add(store, {**document, "organization-name": "Other"}) is Outcome.STORED
    assert len(sums.totals(store, 0, CURRENT)) == 2


def test_the_raw_report_is_kept_compressed(store: ReportStore) -> None:
    text = fixture("odd-fields.json")
    store.add(parse_report(text), gzip.compress(text), NOW)
    raw = store.raw("Small Sender GmbH", "small-sender-2024-05-01")
    assert raw is not None
    assert gzip.decompress(raw) == text  # not-configured.example's policy included
    assert store.raw("Small Sender GmbH", "another") is None


def test_totals_and_failures(store: ReportStore) -> None:
    text = fixture("odd-fields.json")
    store.add(parse_report(text), gzip.compress(text), NOW)
    day = 19844  # 2024-05-01
    assert sorted(
        sums.totals(store, 0, CURRENT), key=lambda row: (row.domain, row.policy_type)
    ) == [
        Totals("example.com", "no-policy-found", "Small Sender GmbH", day, 1, 3, 0),
        Totals("example.com", "sts", "Small Sender GmbH", day, 1, 7, 5),
        Totals("not-configured.example", "sts", "Small Sender GmbH", day, 1, 999, 999),
    ]
    assert sorted(sums.failure_totals(store, 0, CURRENT), key=lambda row: row.result_type) == [
        FailureTotals("example.com", "sts", day, "other", 2),
        FailureTotals("example.com", "sts", day, "sts-webpki-invalid", 3),
    ]
    assert sums.failures_by_mx(store, day, day, CURRENT, 20) == [
        MxTotals("example.com", "mail.example.com", 3),
        MxTotals("example.com", "", 2),
    ]
    assert sums.totals(store, day + 1, CURRENT) == []


def test_totals_add_up_by_organisation_and_day(store: ReportStore) -> None:
    for n in range(3):
        add(store, report(organization="A", day=TODAY - 1, successful=10 + n, failed=n))
    add(store, report(organization="B", day=TODAY - 1, successful=5))
    add(store, report(organization="A", day=TODAY - 2, successful=7))
    rows = sorted(sums.totals(store, 0, CURRENT), key=lambda row: (row.organization, row.day))
    assert rows == [
        Totals("example.com", "sts", "A", TODAY - 2, 1, 7, 0),
        Totals("example.com", "sts", "A", TODAY - 1, 3, 33, 3),
        Totals("example.com", "sts", "B", TODAY - 1, 1, 5, 0),
    ]
    (failures,) = sums.failure_totals(store, 0, CURRENT)
    assert failures.sessions == 3


def test_session_counts_for_the_metrics(store: ReportStore) -> None:
    text = fixture("odd-fields.json")
    store.add(parse_report(text), gzip.compress(text), NOW)
    add(store, report(successful=100, failed=4), received=NOW + 60)
    counts = {count.domain: count for count in sums.session_counts(store, DOMAINS)}
    example = counts["example.com"]
    assert example.successful == 107  # the no-policy-found sessions are not among them
    assert example.failures == {"certificate-expired": 4, "other": 2, "sts-webpki-invalid": 3}
    assert example.last_received == int(NOW + 60)


def test_session_counts_read_the_totals_kept_not_the_reports(store: ReportStore) -> None:
    # Summed from every row of the reports at each scrape: a year of 5,000 domains took 46 s
    # on PostgreSQL and minutes on SQLite, each scrape, so that Prometheus gave up on all of it.
    for n in range(3):
        add(store, report(report_id=f"r{n}", successful=10, failed=n))
    store.ping()
    sent = _statements(store, "read_transaction")
    (counts,) = sums.session_counts(store, DOMAINS)
    assert (counts.successful, counts.failures) == (30, {"certificate-expired": 3})
    assert {table for sql in sent for table in re.findall(r"tlsrpt_\w+", sql)} == {"tlsrpt_counted"}


def _plans(store: SQLiteStore, read: Callable[[], object]) -> list[list[str]]:
    """SQLite's plan of each statement that ``read`` sends, a line per table it reads."""
    sent: list[tuple[str, Sequence[Any]]] = []
    begin = store.read_transaction

    class _Recording(_Counting):
        def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
            sent.append((sql, params))
            return self.connection.execute(sql, params)

    @contextlib.contextmanager
    def recording() -> Iterator[Connection]:
        with begin() as connection:
            yield _Recording(connection, [])

    store.read_transaction = recording  # type: ignore[method-assign]
    try:
        read()
    finally:
        store.read_transaction = begin  # type: ignore[method-assign]
    with sqlite3.connect(store.path) as connection:
        return [
            [
                detail
                for *_, detail in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)
                if detail.startswith(("SEARCH", "SCAN tlsrpt"))
            ]
            for sql, params in sent
        ]


def test_session_counts_find_their_domains_by_the_totals_key(sqlite_url: str) -> None:
    store = SQLiteStore(sqlite_url)
    add(store, report())
    assert _plans(store, lambda: sums.session_counts(store, DOMAINS)) == [
        ["SEARCH tlsrpt_counted USING INDEX sqlite_autoindex_tlsrpt_counted_1 (domain=?)"]
    ]


DAYS = "SEARCH p USING INDEX tlsrpt_policies_day (domain=? AND day>?)"
"""Each domain's rows of the summary's days, and no other."""


def test_summaries_read_the_rows_of_their_days_only(sqlite_url: str) -> None:
    # Each domain's rows of every day were read, and each one's report looked up, to keep
    # those of the last 30 days: minutes for a year of 5,000 domains, for the page and the
    # command alike.
    store = SQLiteStore(sqlite_url)
    add(store, report(failed=1))
    pk = "SEARCH r USING INTEGER PRIMARY KEY (rowid=?)"
    failures = "SEARCH f USING INDEX sqlite_autoindex_tlsrpt_failures_1 (report=? AND policy=?)"
    assert _plans(store, lambda: sums.totals(store, TODAY - 30, SERVED)) == [[DAYS, pk]]
    assert _plans(store, lambda: sums.failure_totals(store, TODAY - 30, SERVED)) == [
        [DAYS, failures]
    ]
    (by_mx,) = _plans(store, lambda: sums.failures_by_mx(store, TODAY - 30, TODAY, SERVED, 20))
    assert by_mx == [DAYS.replace("day>?", "day>? AND day<?"), failures]


def test_an_upgrade_counts_the_sessions_stored_and_pruned_before(store: ReportStore) -> None:
    latest = schema.VERSIONS
    try:
        schema.VERSIONS, schema.LATEST = latest[:5], 5
        old = open_store(store.url)
        add_as_before(old, parse_report(json.dumps(report(successful=10, failed=3)).encode()))
        tlsa = report(policy_type="tlsa", successful=100, failed=100)
        add_as_before(old, parse_report(json.dumps(tlsa).encode()))
        with old.connection() as connection:
            connection.execute(
                "INSERT INTO tlsrpt_pruned (domain, result, sessions) VALUES"
                " ('example.com', 'success', 5), ('example.com', 'starttls-not-supported', 2),"
                " ('example.org', 'success', 4)"
            )
    finally:
        schema.VERSIONS, schema.LATEST = latest, len(latest)
    counts = {count.domain: count for count in sums.session_counts(store, DOMAINS)}
    assert (counts["example.com"].successful, counts["example.com"].failures) == (
        15,
        {"certificate-expired": 3, "starttls-not-supported": 2},
    )
    assert counts["example.com"].last_received == NOW
    assert (counts["example.org"].successful, counts["example.org"].last_received) == (4, None)
    # Dated by the upgrade: the summaries find the rows by their day.
    assert sorted(row.policy_type for row in sums.totals(store, 0, CURRENT)) == ["sts", "tlsa"]
    add(store, report(report_id="after", successful=1), received=NOW + 60)
    (example, _) = sums.session_counts(store, DOMAINS)
    assert (example.successful, example.last_received) == (16, NOW + 60)


def test_sums_past_64_bits_do_not_overflow(store: ReportStore) -> None:
    # The largest count a report may give, in 1025 policies: their sum passes 2**63.
    poison = report(organization="P", successful=MAX_COUNT, failed=MAX_COUNT)
    poison["policies"] *= 1025
    add(store, poison)
    add(store, report(organization="Q", successful=1000, failed=2))
    huge = pytest.approx(1025 * MAX_COUNT, rel=1e-9)
    totals = {row.organization: row for row in sums.totals(store, 0, CURRENT)}
    assert totals["P"].successful == huge
    assert totals["P"].failed == huge
    assert (totals["Q"].successful, totals["Q"].failed) == (1000, 2)  # exact
    assert [row.sessions for row in sums.failure_totals(store, 0, CURRENT)] == [
        pytest.approx(1025 * MAX_COUNT + 2, rel=1e-9)
    ]
    (counts,) = sums.session_counts(store, DOMAINS)
    assert counts.successful == pytest.approx(1025 * MAX_COUNT + 1000, rel=1e-9)
    assert isinstance(counts.successful, int)


def test_prune_removes_reports_that_ended_before(store: ReportStore) -> None:
    add(store, report(report_id="old", day=TODAY - 400))
    add(store, report(report_id="new", day=TODAY - 1))
    assert store.prune((TODAY - 300) * DAY) == 1
    assert store.raw("Google Inc.", "old") is None
    assert store.raw("Google Inc.", "new") is not None
    assert [row.day for row in sums.totals(store, 0, CURRENT)] == [TODAY - 1]
    assert sums.failure_totals(store, 0, CURRENT) == []
    # A pruned report can be received again.
    assert add(store, report(report_id="old", day=TODAY - 400)) is Outcome.STORED


def test_a_prune_deletes_a_batch_at_a_time(
    store: ReportStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A year's backlog (retention_days lowered) was deleted in one transaction: SQLite's
    # other writers, every sender's report, waited for all of it, past their 10 s (a 503).
    monkeypatch.setattr("mtasts_host.reports.store.PRUNE_BATCH", 2)
    for day in (TODAY - 405, TODAY - 404, TODAY - 403, TODAY - 402):
        add(store, report(report_id=f"old-{day}", day=day))
    for organization in ("A", "B", "C"):  # ending at the same time: pruned together
        add(store, report(organization=organization, report_id="old", day=TODAY - 401))
    add(store, report(report_id="new", day=TODAY - 1))
    left: list[int] = []
    begin = store.transaction

    @contextlib.contextmanager
    def counting() -> Iterator[Connection]:
        with begin() as connection:
            yield connection
        with open_store(store.url).connection(write=False) as reading:
            (count,) = reading.execute("SELECT COUNT(*) FROM tlsrpt_reports").fetchone()
        left.append(count)

    store.transaction = counting  # type: ignore[method-assign]
    assert store.prune((TODAY - 300) * DAY) == 7
    assert left == [6, 4, 1, 1]  # each batch committed before the next; the last found none
    assert store.raw("Google Inc.", "new") is not None


def test_pruned_sessions_stay_counted_for_the_metrics(store: ReportStore) -> None:
    add(store, report(report_id="old", day=TODAY - 400, successful=10, failed=3))
    add(store, report(report_id="older", day=TODAY - 401, successful=5, failed=1))
    add(store, report(report_id="new", day=TODAY - 1, successful=7, failed=2))
    add(store, report(report_id="gone", day=TODAY - 400, domain="example.org", successful=4))
    before = {count.domain: count for count in sums.session_counts(store, DOMAINS)}
    assert store.prune((TODAY - 300) * DAY) == 3
    after = {count.domain: count for count in sums.session_counts(store, DOMAINS)}
    assert after["example.com"].successful == before["example.com"].successful == 22
    assert (
        after["example.com"].failures
        == before["example.com"].failures
        == {"certificate-expired": 6}
    )
    assert after["example.com"].last_received == NOW
    # Its last report was received then, pruned or not.
    assert (after["example.org"].successful, after["example.org"].last_received) == (4, NOW)
    add(store, report(report_id="old2", day=TODAY - 400, successful=1))
    store.prune((TODAY - 300) * DAY)
    assert {count.domain: count.successful for count in sums.session_counts(store, DOMAINS)} == {
        "example.com": 23,
        "example.org": 4,
    }


def test_nothing_is_half_written(store: ReportStore) -> None:
    document = report(report_id="half", failed=2)
    parsed = parse_report(json.dumps(document).encode())
    (policy,) = parsed.policies
    # A second policy whose failure no database column can hold: all of it is rolled back.
    unstorable = replace(policy.failures[0], sessions=2**70)
    bad = replace(parsed, policies=(policy, replace(policy, failures=(unstorable,))))
    with pytest.raises((StoreUnavailable, OverflowError)):
        store.add(bad, b"", NOW)
    assert store.raw("Google Inc.", "half") is None
    assert sums.totals(store, 0, CURRENT) == []
    assert add(store, document) is Outcome.STORED


class _Counting:
    """A connection counting the statements sent: each is a round trip to PostgreSQL."""

    def __init__(self, connection: Connection, sent: list[str]) -> None:
        self.connection, self.sent = connection, sent

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        self.sent.append(sql)
        return self.connection.execute(sql, params)

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
        self.sent.append(sql)
        return self.connection.executemany(sql, params)


def _statements(store: ReportStore, transaction: str) -> list[str]:
    """The statements sent from now on in the store's ``transaction`` (the method's name)."""
    sent: list[str] = []
    begin = getattr(store, transaction)

    @contextlib.contextmanager
    def counting() -> Iterator[Connection]:
        with begin() as connection:
            yield _Counting(connection, sent)

    setattr(store, transaction, counting)
    return sent


def test_a_report_takes_as_many_statements_however_many_failure_details_it_has(
    store: ReportStore,
) -> None:
    store.ping()
    sent = _statements(store, "transaction")
    failures = [
        {
            "result-type": "certificate-expired",
            "receiving-mx-hostname": f"mx{n}.example.com",
            "failed-session-count": 1,
        }
        for n in range(100)
    ]
    add(store, report(report_id="one", failed=1, failures=failures[:1]))
    one = len(sent)
    sent.clear()
    add(store, report(report_id="hundred", failed=100, failures=failures))
    assert len(sent) == one
    assert [row.sessions for row in sums.failure_totals(store, 0, CURRENT)] == [101]


class _PrunedAfterTheFirst:
    """A connection after whose first statement another replica prunes, and commits."""

    def __init__(self, connection: Connection, prune: Callable[[], object]) -> None:
        self.connection, self.prune = connection, prune

    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any:
        result = self.connection.execute(sql, params)
        prune, self.prune = self.prune, lambda: None
        prune()
        return result

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any:
        return self.connection.executemany(sql, params)


def test_session_counts_read_while_another_replica_prunes(store_url: str) -> None:
    """The metrics' counters never go down: a prune moves sessions from the reports to the
    pruned totals, and a reading sees all of either side of it, never half."""
    reader, other = open_store(store_url), open_store(store_url)
    add(reader, report(report_id="old", day=TODAY - 400, successful=10, failed=3))
    other.ping()
    begin = reader.read_transaction

    @contextlib.contextmanager
    def pruned_meanwhile() -> Iterator[Connection]:
        with begin() as connection:
            yield _PrunedAfterTheFirst(connection, lambda: other.prune((TODAY - 300) * DAY))

    reader.read_transaction = pruned_meanwhile  # type: ignore[method-assign]
    assert [
        (counts.successful, counts.failures) for counts in sums.session_counts(reader, DOMAINS)
    ] == [(10, {"certificate-expired": 3})]
    assert sums.session_counts(reader, DOMAINS)[0].successful == 10  # pruned, still counted


def test_a_new_store_gets_the_latest_schema(store: ReportStore) -> None:
    assert store.version() == 0
    assert store.upgrade() == schema.LATEST
    assert store.version() == schema.LATEST
    assert store.upgrade() == schema.LATEST  # again: nothing to do


def test_an_old_schema_is_upgraded_and_keeps_its_reports(store: ReportStore) -> None:
    latest = schema.VERSIONS
    try:
        schema.VERSIONS, schema.LATEST = latest[:1], 1
        old = open_store(store.url)
        add_as_before(old, parse_report(json.dumps(report(report_id="from-v1")).encode()))
        assert old.version() == 1
    finally:
        schema.VERSIONS, schema.LATEST = latest, len(latest)
    upgraded = open_store(store.url)
    assert upgraded.raw("Google Inc.", "from-v1") is not None  # first use upgrades
    assert upgraded.version() == schema.LATEST


def test_values_stored_before_they_were_cut_are_cut_by_the_upgrade(store: ReportStore) -> None:
    document = report(report_id="long", failed=2)
    document["policies"][0]["failure-details"].append(
        {"result-type": "validation-failure", "failed-session-count": 1}
    )
    parsed = parse_report(json.dumps(document).encode())
    (policy,) = parsed.policies
    first, second = policy.failures
    long = replace(
        first,
        reported_type="t" * 5000,
        receiving_mx_hostname="mx." + "a" * 18_000,
        receiving_ip="1" * 300,
        sending_mta_ip="2" * 300,
    )
    as_once = replace(
        parsed, contact_info="c" * 5000, policies=(replace(policy, failures=(long, second)),)
    )
    latest = schema.VERSIONS
    try:
        schema.VERSIONS, schema.LATEST = latest[:3], 3
        old = open_store(store.url)
        add_as_before(old, as_once)
    finally:
        schema.VERSIONS, schema.LATEST = latest, len(latest)
    upgraded = open_store(store.url)
    assert upgraded.upgrade() == schema.LATEST
    with upgraded.transaction() as connection:
        rows = connection.execute(
            "SELECT mx, receiving_ip, sending_ip, reported_type FROM tlsrpt_failures"
            " ORDER BY position"
        ).fetchall()
        (contact,) = connection.execute("SELECT contact FROM tlsrpt_reports").fetchone()
    assert [tuple(row) for row in rows] == [
        (
            "mx." + "a" * 249 + "\u2026",
            "1" * 252 + "\u2026",
            "2" * 252 + "\u2026",
            "t" * 999 + "\u2026",
        ),
        (None, None, None, "validation-failure"),  # untouched
    ]
    assert contact == "c" * 999 + CUT


def test_a_store_that_comes_back_empty_gets_its_tables_again(store: ReportStore) -> None:
    """A database server restarted without its volume, or an SQLite file deleted."""
    assert add(store, report(report_id="before")) is Outcome.STORED
    with store.transaction() as connection:
        for table in ("failures", "policies", "reports", "pruned", "counted", "schema"):
            connection.execute(f"DROP TABLE tlsrpt_{table}")
    with pytest.raises(StoreUnavailable):
        add(store, report(report_id="during"))  # that use finds it empty
    assert add(store, report(report_id="after")) is Outcome.STORED
    assert store.version() == schema.LATEST


def test_a_newer_schema_is_refused(store: ReportStore) -> None:
    store.upgrade()
    with store.transaction() as connection:
        connection.execute("INSERT INTO tlsrpt_schema (version) VALUES (?)", (schema.LATEST + 1,))
    newer = open_store(store.url)
    with pytest.raises(StoreUnavailable, match=f"schema version {schema.LATEST + 1};"):
        newer.ping()


def test_sqlite_in_a_missing_directory_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/missing/reports.db")
    with pytest.raises(StoreUnavailable, match="unable to open database file"):
        store.ping()
    (tmp_path / "missing").mkdir()
    store.ping()  # back


def test_sqlite_uses_wal(sqlite_url: str) -> None:
    store = open_store(sqlite_url)
    store.ping()
    assert isinstance(store, SQLiteStore)
    # closing: a connection's own "with" ends a transaction, not the connection.
    with contextlib.closing(sqlite3.connect(store.path)) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_sqlite_reads_while_another_transaction_writes(sqlite_url: str) -> None:
    """The summaries, the metrics and /readyz wait neither for the intake nor for ingest."""
    store = open_store(sqlite_url)
    add(store, report(report_id="r1"))
    assert isinstance(store, SQLiteStore)
    writer = sqlite3.connect(store.path, isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")
        writer.execute("DELETE FROM tlsrpt_policies")
        store.ping()
        assert [row.successful for row in sums.totals(store, 0, CURRENT)] == [1000]
        assert store.raw("Google Inc.", "r1") is not None
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_postgresql_that_does_not_answer_is_unavailable(tmp_path: Path) -> None:
    store = open_store(f"postgresql://postgres@/none?host={tmp_path}")
    with pytest.raises(StoreUnavailable, match=r"^postgresql: connection (failed|is bad)"):
        store.ping()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("mysql://x", "expected a sqlite:/// or postgresql:// URL, got 'mysql://x'"),
        ("sqlite:///", "expected sqlite:///relative.db or sqlite:////absolute.db"),
        ("sqlite:///:memory:", "an in-memory SQLite store would lose every report"),
    ],
)
def test_urls_that_name_no_store(url: str, message: str) -> None:
    with pytest.raises(ValueError, match="^" + message):
        open_store(url)


def test_postgresql_role_that_may_only_read_and_write_the_tables(postgres_url: str) -> None:
    """The owner made the tables; the role serving reports has no right to create any."""
    open_store(postgres_url).upgrade()
    role = f"writer_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(postgres_url, autocommit=True) as connection:
        connection.execute(f"CREATE ROLE {role} LOGIN")  # a name of ours, not input
        connection.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")  # before PG 15
        connection.execute(
            f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {role}"
        )
    writer = open_store(postgres_url.replace("postgres@", f"{role}@", 1))
    assert add(writer, report(report_id="r1")) is Outcome.STORED
    assert writer.prune(NOW) == 1
    assert writer.version() == schema.LATEST


def test_relative_and_absolute_sqlite_paths() -> None:
    assert SQLiteStore("sqlite:///reports.db").path == "reports.db"
    assert SQLiteStore("sqlite:////var/lib/reports.db").path == "/var/lib/reports.db"


def test_concurrent_prunes_count_pruned_sessions_once(store_url: str) -> None:
    """Two replicas sharing a store prune at once: the pruned sessions count once."""
    first, second = open_store(store_url), open_store(store_url)
    add(first, report(report_id="old", day=TODAY - 400, successful=10, failed=3))
    add(first, report(report_id="new", day=TODAY - 1, successful=7))
    second.ping()
    pruned, release = threading.Event(), threading.Event()
    begin = first.transaction

    @contextlib.contextmanager
    def held() -> Iterator[Any]:
        with begin() as connection:
            yield connection
            pruned.set()
            release.wait(10)  # the first replica's prune, done but not yet committed

    first.transaction = held  # type: ignore[method-assign]
    one = threading.Thread(target=first.prune, args=((TODAY - 300) * DAY,))
    one.start()
    assert pruned.wait(10)
    other = threading.Thread(target=second.prune, args=((TODAY - 300) * DAY,))
    other.start()
    time.sleep(0.5)  # the second replica's prune has found the first one under way
    release.set()
    one.join(10)
    other.join(10)
    (counts,) = sums.session_counts(open_store(store_url), DOMAINS)
    assert (counts.successful, counts.failures) == (17, {"certificate-expired": 3})


def test_a_prune_while_another_replica_prunes_is_left_to_that_one(postgres_url: str) -> None:
    # It waited for the other's prune to end, however long that took.
    store = open_store(postgres_url)
    add(store, report(report_id="old", day=TODAY - 400))
    with another_replica_pruning(postgres_url):
        assert within(10, lambda: store.prune((TODAY - 300) * DAY)) == [0]
    assert store.prune((TODAY - 300) * DAY) == 1


LOCK_TIMEOUT = "postgresql: canceling statement due to lock timeout"


def test_an_upgrade_by_another_replica_is_waited_for_no_longer_than_the_lock_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was waited for however long it took: a replica starting meanwhile served no policy.
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", 0.1)
    store = open_store(postgres_url)
    with another_replica_upgrading(postgres_url):
        assert within(10, lambda: unavailable(store.upgrade)) == [LOCK_TIMEOUT]
    assert store.upgrade() == schema.LATEST


def test_a_locked_table_is_waited_for_no_longer_than_the_lock_timeout(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A scrape, the page and a sender's post each waited for as long as the lock was held
    # (an ALTER TABLE, a VACUUM FULL), and each took one of the server's threads meanwhile.
    # The message is the server's alone, without the statement that waited: each statement
    # made one problem a new one, logged anew.
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", 0.1)
    store = open_store(postgres_url)
    add(store, report(report_id="r1"))
    with table_locked(postgres_url, "tlsrpt_counted"):
        counting = within(10, lambda: unavailable(lambda: sums.session_counts(store, DOMAINS)))
        adding = within(10, lambda: unavailable(lambda: add(store, report(report_id="r2"))))
    assert (counting, adding) == ([LOCK_TIMEOUT], [LOCK_TIMEOUT])
    assert add(store, report(report_id="r2")) is Outcome.STORED


def test_requests_waiting_for_a_schema_check_that_fails_take_its_answer(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Each tried again after the other, waiting the lock timeout each: the last of a scrape
    # and four senders queued behind another replica's upgrade waited 25 s for its 503.
    monkeypatch.setattr(postgres, "LOCK_TIMEOUT", 2.0)
    store = open_store(postgres_url)
    checks: list[None] = []
    lock_schema = store.lock_schema

    def counted(connection: Connection) -> None:
        checks.append(None)
        lock_schema(connection)

    monkeypatch.setattr(store, "lock_schema", counted)
    answers: list[str] = []
    threads = [
        threading.Thread(target=lambda: answers.append(unavailable(store.ping))) for _ in range(4)
    ]
    with (
        another_replica_upgrading(postgres_url),
        psycopg.connect(postgres_url, autocommit=True) as watcher,
    ):
        threads[0].start()
        waiting = (
            "SELECT 1 FROM pg_stat_activity"
            " WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        while watcher.execute(waiting).fetchone() is None:  # the first waits for the lock
            time.sleep(0.01)
        for thread in threads[1:]:  # the others wait for the first
            thread.start()
        for thread in threads:
            thread.join(30)
    assert (answers, len(checks)) == ([LOCK_TIMEOUT] * 4, 1)
    store.ping()  # and once it has ended, the next request checks again


SERVED = {**CURRENT, "example.com": "mail.example.com"}
"""The ``mx_key`` of the policy example.com serves now: backup.example.com dropped."""


def test_sessions_reported_against_an_older_mx_are_told_apart(store: ReportStore) -> None:
    older = report(organization="A", successful=900, failed=100, failures=at_backup(100))
    add(store, against(older, OLDER_POLICY))
    add(store, report(organization="B", successful=1000))
    day = TODAY - 1
    totals = sums.totals(store, 0, SERVED)
    assert sorted(totals, key=lambda row: row.organization) == [
        Totals("example.com", "sts", "A", day, 1, 900, 100, older=True),
        Totals("example.com", "sts", "B", day, 1, 1000, 0),
    ]
    # The failures the summary shows agree with the sessions it counts.
    assert sums.failure_totals(store, 0, SERVED) == []
    assert sums.failures_by_mx(store, day, day, SERVED, 20) == []
    # Without the served mx, nothing is older.
    assert [row.older for row in sums.totals(store, 0, CURRENT)] == [False, False]
    assert len(sums.failures_by_mx(store, day, day, CURRENT, 20)) == 1
    # The metrics count what senders reported, whatever the policy.
    (counts,) = sums.session_counts(store, DOMAINS)
    assert (counts.successful, counts.failures) == (1900, {"certificate-host-mismatch": 100})


@pytest.mark.parametrize(
    ("policy_type", "policy_string", "stored"),
    [
        (
            "sts",
            [
                "version: STSv1",
                "mode: enforce",
                "mx: Mail.Example.COM.",
                "mx: *.example.com",
                "mx:mail.example.com",
                "max_age: 86400",
            ],
            "*.example.com mail.example.com",
        ),
        # Packed into one string, as some senders do TLSA policies.
        (
            "sts",
            ["version: STSv1\r\nmode: testing\r\nmx: b.example\r\nmx: a.example\r\n"],
            "a.example b.example",
        ),
        # International names as A-labels, as the configured mx are.
        (
            "sts",
            ["mx: MX.Bu\u0308cher.example.", "mx: *.bücher.example"],
            "*.xn--bcher-kva.example mx.xn--bcher-kva.example",
        ),
        ("sts", ["version: STSv1", "mode: testing", "max_age: 86400"], None),  # no mx line
        ("sts", None, None),  # no policy-string
        ("sts", [], None),
        ("tlsa", ["3 1 1 0123", "mx: mail.example.com"], None),
        ("no-policy-found", ["mx: mail.example.com"], None),
    ],
)
def test_the_reported_mx_is_stored_normalised(
    store: ReportStore, policy_type: str, policy_string: list[str] | None, stored: str | None
) -> None:
    add(store, against(report(policy_type=policy_type), policy_string))
    with store.connection() as connection:
        rows = connection.execute("SELECT policy_mx FROM tlsrpt_policies").fetchall()
    assert [tuple(row) for row in rows] == [(stored,)]


def test_a_huge_reported_mx_is_cut(store: ReportStore) -> None:
    patterns = [f"mx: mx{n:06}.example.com" for n in range(10_000)]
    add(store, against(report(), patterns))
    with store.connection() as connection:
        (stored,) = connection.execute("SELECT policy_mx FROM tlsrpt_policies").fetchone()
    assert len(stored) == MAX_MX_KEY
    assert stored.endswith(CUT)


def test_reports_of_version_4_and_of_an_older_replica_count_as_current(store: ReportStore) -> None:
    def parsed(organization: str) -> Report:
        document = against(report(organization=organization, failed=5), OLDER_POLICY)
        return parse_report(json.dumps(document).encode())

    latest = schema.VERSIONS
    try:
        schema.VERSIONS, schema.LATEST = latest[:4], 4
        old = open_store(store.url)
        add_as_before(old, parsed("A"))
        assert old.version() == 4
    finally:
        schema.VERSIONS, schema.LATEST = latest, len(latest)
    upgraded = open_store(store.url)
    assert upgraded.upgrade() == schema.LATEST
    # A replica that still runs the older version inserts as it did, without the column.
    add_as_before(old, parsed("B"))
    upgraded.add(parsed("C"), b"", NOW)
    # Without the day the summaries find rows by: the next prune (hourly) dates them.
    assert upgraded.prune(0) == 0
    totals = sums.totals(upgraded, 0, SERVED)
    assert {row.organization: row.older for row in totals} == {"A": False, "B": False, "C": True}
    failures = sums.failure_totals(upgraded, 0, SERVED)
    assert [row.sessions for row in failures] == [10]  # A's and B's, not C's
