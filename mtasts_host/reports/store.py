"""
Where reports are kept: the raw report (gzip) and its counts as rows, in SQLite or
PostgreSQL, through the same parameterised SQL. Each call opens its own connection, so a
store that was unreachable is used again as soon as it is back.
"""

from __future__ import annotations

import contextlib
import enum
import threading
from collections.abc import Iterable, Iterator, Sequence
from typing import Any, Protocol

from . import schema
from .report import Report
from .rows import report_day, reported_mx

# Sums of counts (each up to 2**53 - 1) pass 2**63 after 1025 rows, where SQLite's integer SUM
# fails, and so would a cast of PostgreSQL's NUMERIC sum to BIGINT. A double overflows on no
# number of rows, and is exact while a sum stays under 2**53, which no real sender reaches.
SUCCESSFUL = "SUM(CAST(p.successful AS DOUBLE PRECISION))"
FAILED = "SUM(CAST(p.failed AS DOUBLE PRECISION))"
SESSIONS = "SUM(CAST(f.sessions AS DOUBLE PRECISION))"
SUCCESS = "success"
"""The ``tlsrpt_pruned`` result of successful sessions; failures carry their result type."""
STS_POLICIES = (
    " FROM tlsrpt_policies p JOIN tlsrpt_reports r ON r.id = p.report WHERE p.policy_type = 'sts'"
)
"""The STS policy results of the reports, for the sessions counted for ever."""
STS_FAILURES = (
    " FROM tlsrpt_failures f"
    " JOIN tlsrpt_policies p ON p.report = f.report AND p.position = f.policy"
    " JOIN tlsrpt_reports r ON r.id = f.report"
    " WHERE p.policy_type = 'sts'"
)
"""Their failure details, likewise."""


class StoreUnavailable(Exception):
    """The store cannot be reached or written now; the message says why, in one line."""


class Outcome(enum.Enum):
    """What became of a report handed to the store."""

    STORED = "stored"
    """Stored now, raw and counted."""
    DUPLICATE = "duplicate"
    """Already stored: the same ``organization-name`` and ``report-id``."""


class Connection(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...

    def executemany(self, sql: str, params: Iterable[Sequence[Any]]) -> Any: ...


class ReportStore:
    """
    Base of both stores: the SQL is written once with ``?`` placeholders; a subclass
    provides connections, in a transaction, and turns its driver's errors into
    ``StoreUnavailable``.
    """

    id_type = ""
    blob_type = ""
    code_point_order = ""
    """The collation that orders text by code point, as Python does."""
    table_exists = ""
    """The query giving a row if the table its one parameter names exists."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._schema_checked = False
        self._lock = threading.Lock()
        self._checks = 0
        """Schema checks ended, checked or not: a thread that waited for one knows it ended."""
        self._check_failed: str | None = None

    def transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection in a transaction that commits at the end, or rolls back on error."""
        raise NotImplementedError

    def read_transaction(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection in a transaction that only reads: by default, ``transaction``."""
        return self.transaction()

    def absent(self) -> str | None:
        """Why the store is not there at all, if it is not: for a command that only reads,
        where a mistyped path must not become an empty store that says "no reports"."""
        return None

    def lock_schema(self, connection: Connection) -> None:
        """Keep other processes from upgrading the schema at the same time."""

    def lock_prune(self, connection: Connection) -> bool:
        """Keep other processes from pruning at the same time, until this transaction ends:
        each would add the sessions of the same reports to the pruned totals. False if
        another process prunes now: it removes the same reports, so this one need not."""
        return True

    @contextlib.contextmanager
    def connection(self, *, write: bool = True) -> Iterator[Connection]:
        """
        A connection in a transaction, the schema checked first (once per store).

        Args:
            write: whether the transaction writes; one that only reads does not wait for
                one that writes, where the database allows it.
        """
        if not self._schema_checked:
            self._check_schema()
        try:
            with self.transaction() if write else self.read_transaction() as connection:
                yield connection
        except StoreUnavailable:
            # It may come back empty (a database server without its volume, a deleted
            # file): the next use checks the schema again, so the tables are made again.
            self._schema_checked = False
            raise

    def _check_schema(self) -> None:
        checks = self._checks
        with self._lock:
            if self._schema_checked:
                return
            if self._checks != checks and self._check_failed is not None:
                # Another thread checked while this one waited, and the store failed it: its
                # answer is this one's. Each trying again in turn waited as long again (a lock
                # another replica held, a server that never answered), a scrape queued
                # behind four senders five times as long.
                raise StoreUnavailable(self._check_failed)
            self._check_failed = None
            try:
                self.upgrade()
            except StoreUnavailable as exc:
                self._check_failed = str(exc)
                raise
            finally:
                self._checks += 1

    def upgrade(self) -> int:
        """
        Create the tables, or bring them to the latest version; return that version.

        Raises:
            StoreUnavailable: the store cannot be reached, or its schema is newer than this
                program.
        """
        with self.transaction() as connection:
            self.lock_schema(connection)
            current = schema.current(connection, self.table_exists)
            if current > schema.LATEST:
                raise StoreUnavailable(
                    f"the store has schema version {current}; this mtasts-host knows up to "
                    f"{schema.LATEST}: upgrade mtasts-host"
                )
            schema.apply(connection, current, self.id_type, self.blob_type)
        self._schema_checked = True
        return schema.LATEST

    def version(self) -> int:
        """The schema version the store has (0 for an empty store)."""
        with self.transaction() as connection:
            return schema.current(connection, self.table_exists)

    def ping(self) -> None:
        """Raise ``StoreUnavailable`` unless the store answers."""
        with self.connection(write=False) as connection:
            connection.execute("SELECT 1 FROM tlsrpt_schema")

    def add(self, report: Report, raw: bytes, received: float) -> Outcome:
        """
        Store a report and its counts in one transaction: all of it or nothing.

        Args:
            report: the parsed report.
            raw: the report as received, gzip-compressed.
            received: when it arrived, in seconds since the epoch.
        """
        with self.connection() as connection:
            row = connection.execute(
                "INSERT INTO tlsrpt_reports (organization, report_id, start_time, end_time, day,"
                " received, contact, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (organization, report_id) DO NOTHING RETURNING id",
                (
                    report.organization_name,
                    report.report_id,
                    int(report.start.timestamp()),
                    int(report.end.timestamp()),
                    report_day(report),
                    int(received),
                    report.contact_info,
                    raw,
                ),
            ).fetchone()
            if row is None:
                return Outcome.DUPLICATE
            key = row[0]
            # Each table's rows at once: one by one, the 120,000 failure details of a report
            # at the size limits were as many round trips to PostgreSQL, 10 s on a local
            # socket and a network's latency as many times more.
            connection.executemany(
                "INSERT INTO tlsrpt_policies (report, position, policy_type, domain,"
                " successful, failed, policy_mx) VALUES (?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        n,
                        policy.policy_type.value,
                        policy.domain,
                        policy.successful,
                        policy.failed,
                        reported_mx(policy),
                    )
                    for n, policy in enumerate(report.policies)
                ],
            )
            connection.executemany(
                "INSERT INTO tlsrpt_failures (report, policy, position, result_type,"
                " reported_type, mx, receiving_ip, sending_ip, sessions)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
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
                    )
                    for n, policy in enumerate(report.policies)
                    for m, failure in enumerate(policy.failures)
                ],
            )
        return Outcome.STORED

    def raw(self, organization: str, report_id: str) -> bytes | None:
        """The report as received (gzip), or None if it is not stored."""
        with self.connection(write=False) as connection:
            row = connection.execute(
                "SELECT raw FROM tlsrpt_reports WHERE organization = ? AND report_id = ?",
                (organization, report_id),
            ).fetchone()
        return None if row is None else bytes(row[0])

    def prune(self, before: float) -> int:
        """Delete the reports whose date range ended before ``before``; return how many."""
        upsert = (
            " ON CONFLICT (domain, result)"
            " DO UPDATE SET sessions = tlsrpt_pruned.sessions + excluded.sessions"
        )
        with self.connection() as connection:
            if not self.lock_prune(connection):
                return 0
            # Their STS sessions are kept as totals: the metrics count them for ever.
            connection.execute(
                "INSERT INTO tlsrpt_pruned (domain, result, sessions)"
                f" SELECT p.domain, '{SUCCESS}', {SUCCESSFUL}{STS_POLICIES}"
                " AND r.end_time < ? GROUP BY p.domain" + upsert,
                (int(before),),
            )
            connection.execute(
                "INSERT INTO tlsrpt_pruned (domain, result, sessions)"
                f" SELECT p.domain, f.result_type, {SESSIONS}{STS_FAILURES}"
                " AND r.end_time < ? GROUP BY p.domain, f.result_type" + upsert,
                (int(before),),
            )
            # Children first: SQLite enforces ON DELETE CASCADE only when asked to.
            connection.execute(
                "DELETE FROM tlsrpt_failures WHERE report IN"
                " (SELECT id FROM tlsrpt_reports WHERE end_time < ?)",
                (int(before),),
            )
            connection.execute(
                "DELETE FROM tlsrpt_policies WHERE report IN"
                " (SELECT id FROM tlsrpt_reports WHERE end_time < ?)",
                (int(before),),
            )
            cursor = connection.execute(
                "DELETE FROM tlsrpt_reports WHERE end_time < ?", (int(before),)
            )
            return int(cursor.rowcount)


def open_store(url: str) -> ReportStore:
    """
    The store a URL names, without connecting to it yet: the first call connects, creating
    or upgrading the tables.

    Args:
        url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
            ``postgresql://user@host/database`` (any libpq URL).

    Raises:
        ValueError: the URL names no store this program supports, or psycopg is missing.
    """
    scheme = url.partition(":")[0].lower()
    if scheme == "sqlite":
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgreSQLStore

        return PostgreSQLStore(url)
    raise ValueError(f"expected a sqlite:/// or postgresql:// URL, got {url!r}")
