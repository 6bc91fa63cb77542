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
from .report import PolicyType, Report
from .rows import report_day, reported_mx

# Sums of counts (each up to 2**53 - 1) pass 2**63 after 1025 rows, where SQLite's integer SUM
# fails, and so would a cast of PostgreSQL's NUMERIC sum to BIGINT. A double overflows on no
# number of rows, and is exact while a sum stays under 2**53, which no real sender reaches.
SUCCESSFUL = "SUM(CAST(p.successful AS DOUBLE PRECISION))"
FAILED = "SUM(CAST(p.failed AS DOUBLE PRECISION))"
SESSIONS = "SUM(CAST(f.sessions AS DOUBLE PRECISION))"
SUCCESS = "success"
"""The ``tlsrpt_counted`` result of successful sessions; failures carry their result type."""
_COUNT = (
    "INSERT INTO tlsrpt_counted (domain, result, sessions, received) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (domain, result) DO UPDATE SET"
    " sessions = tlsrpt_counted.sessions + excluded.sessions,"
    " received = CASE WHEN tlsrpt_counted.received IS NULL"
    " OR excluded.received > tlsrpt_counted.received"
    " THEN excluded.received ELSE tlsrpt_counted.received END"
)
"""Add a report's STS sessions of one domain and result to those counted for ever."""


PRUNE_BATCH = 10_000
"""Reports a prune deletes in one transaction, or a few more (those ending at the same time go
together): SQLite lets one transaction write at a time, and the 1.8 million reports of 5,000
domains' 120 days deleted in one (``retention_days`` lowered, a store back from a long
outage) held every sender's report back past the 10 s a writer waits: a 503 each."""


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
        each would delete the same reports (and a replica of an earlier version add their
        sessions to its pruned totals twice). False if another process prunes now: it
        removes the same reports, so this one need not."""
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
            key, day = row[0], report_day(report)
            # Each table's rows at once: one by one, the 120,000 failure details of a report
            # at the size limits were as many round trips to PostgreSQL, 10 s on a local
            # socket and a network's latency as many times more.
            connection.executemany(
                "INSERT INTO tlsrpt_policies (report, position, policy_type, domain,"
                " successful, failed, policy_mx, day) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        key,
                        n,
                        policy.policy_type.value,
                        policy.domain,
                        policy.successful,
                        policy.failed,
                        reported_mx(policy),
                        day,
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
            connection.executemany(_COUNT, _counted(report, int(received)))
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
        """
        Delete the reports whose date range ended before ``before``, the oldest first, some
        ``PRUNE_BATCH`` in each transaction; return how many. Their STS sessions stay
        counted (``tlsrpt_counted``): the metrics count them for ever.
        """
        removed = 0
        while True:
            with self.connection() as connection:
                if not self.lock_prune(connection):
                    return removed
                # The rows a replica of an earlier version inserted without their day, which
                # the summaries read by: they count from now on (an index of them alone makes
                # this nothing to ask when there are none).
                connection.execute(
                    f"UPDATE tlsrpt_policies SET day = {schema.REPORT_DAY} WHERE day IS NULL"
                )
                last = connection.execute(
                    "SELECT end_time FROM tlsrpt_reports WHERE end_time < ?"
                    " ORDER BY end_time LIMIT 1 OFFSET ?",
                    (int(before), PRUNE_BATCH - 1),
                ).fetchone()
                # Up to the batch's last end time, those ending with it too (a day's reports
                # end at the same midnight); the rest at once, if it is no more than a batch.
                ended, bound = ("end_time <= ?", last[0]) if last else ("end_time < ?", int(before))
                # Children first: SQLite enforces ON DELETE CASCADE only when asked to.
                for table in ("tlsrpt_failures", "tlsrpt_policies"):
                    connection.execute(
                        f"DELETE FROM {table} WHERE report IN"
                        f" (SELECT id FROM tlsrpt_reports WHERE {ended})",
                        (bound,),
                    )
                cursor = connection.execute(f"DELETE FROM tlsrpt_reports WHERE {ended}", (bound,))
                removed += int(cursor.rowcount)
            if last is None:
                return removed


def _counted(report: Report, received: int) -> list[tuple[str, str, float, int | None]]:
    """
    The rows ``_COUNT`` adds for ``report``: its STS sessions by domain and result, the
    "success" ones with when it was received. In the order of their keys, so that two
    reports stored at once lock the rows they share in the same order (PostgreSQL would
    otherwise end one of them as a deadlock).
    """
    sessions: dict[tuple[str, str], float] = {}
    for policy in report.policies:
        if policy.policy_type is not PolicyType.STS:
            continue
        key = (policy.domain, SUCCESS)
        sessions[key] = sessions.get(key, 0.0) + policy.successful
        for failure in policy.failures:
            key = (policy.domain, failure.result_type.value)
            sessions[key] = sessions.get(key, 0.0) + failure.sessions
    return [
        (domain, result, count, received if result == SUCCESS else None)
        for (domain, result), count in sorted(sessions.items())
    ]


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
