"""
The tables, as a list of versions: each store applies those it has not applied yet, in one
transaction, when it first connects. Append a version; never change one that has shipped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .store import Connection

REPORT_DAY = "(SELECT r.day FROM tlsrpt_reports r WHERE r.id = tlsrpt_policies.report)"
"""The day of a ``tlsrpt_policies`` row: its report's."""

# {id} is the auto-numbered primary key, {blob} the binary type, of each database.
VERSIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE tlsrpt_reports (
            id {id},
            organization TEXT NOT NULL,
            report_id TEXT NOT NULL,
            start_time BIGINT NOT NULL,
            end_time BIGINT NOT NULL,
            day INTEGER NOT NULL,
            received BIGINT NOT NULL,
            contact TEXT,
            raw {blob} NOT NULL,
            UNIQUE (organization, report_id)
        )""",
        """CREATE TABLE tlsrpt_policies (
            report BIGINT NOT NULL REFERENCES tlsrpt_reports (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            policy_type TEXT NOT NULL,
            domain TEXT NOT NULL,
            successful BIGINT NOT NULL,
            failed BIGINT NOT NULL,
            PRIMARY KEY (report, position)
        )""",
        """CREATE TABLE tlsrpt_failures (
            report BIGINT NOT NULL REFERENCES tlsrpt_reports (id) ON DELETE CASCADE,
            policy INTEGER NOT NULL,
            position INTEGER NOT NULL,
            result_type TEXT NOT NULL,
            reported_type TEXT NOT NULL,
            mx TEXT,
            receiving_ip TEXT,
            sending_ip TEXT,
            sessions BIGINT NOT NULL,
            PRIMARY KEY (report, policy, position)
        )""",
        "CREATE INDEX tlsrpt_reports_day ON tlsrpt_reports (day)",
    ),
    (
        # Version 2: pruning by end time, and the metrics' per-domain sums.
        "CREATE INDEX tlsrpt_reports_end ON tlsrpt_reports (end_time)",
        "CREATE INDEX tlsrpt_policies_domain ON tlsrpt_policies (domain, policy_type)",
    ),
    (
        # Version 3: the STS sessions of pruned reports, by domain and result ("success" or a
        # result type), so that the metrics' sessions counter never goes down.
        """CREATE TABLE tlsrpt_pruned (
            domain TEXT NOT NULL,
            result TEXT NOT NULL,
            sessions DOUBLE PRECISION NOT NULL,
            PRIMARY KEY (domain, result)
        )""",
    ),
    (
        # Version 4: the values the intake now cuts (a host's name or address to 253
        # characters, a result type and contact-info to 1000, "…" last), cut alike in the
        # reports stored before: a receiving-mx-hostname of 18 KB was read back by every
        # summary.
        "UPDATE tlsrpt_failures SET"
        " mx = CASE WHEN LENGTH(mx) > 253 THEN SUBSTR(mx, 1, 252) || '\u2026' ELSE mx END,"
        " receiving_ip = CASE WHEN LENGTH(receiving_ip) > 253"
        " THEN SUBSTR(receiving_ip, 1, 252) || '\u2026' ELSE receiving_ip END,"
        " sending_ip = CASE WHEN LENGTH(sending_ip) > 253"
        " THEN SUBSTR(sending_ip, 1, 252) || '\u2026' ELSE sending_ip END,"
        " reported_type = CASE WHEN LENGTH(reported_type) > 1000"
        " THEN SUBSTR(reported_type, 1, 999) || '\u2026' ELSE reported_type END"
        " WHERE LENGTH(mx) > 253 OR LENGTH(receiving_ip) > 253 OR LENGTH(sending_ip) > 253"
        " OR LENGTH(reported_type) > 1000",
        "UPDATE tlsrpt_reports SET contact = SUBSTR(contact, 1, 999) || '\u2026'"
        " WHERE LENGTH(contact) > 1000",
    ),
    (
        # Version 5: the mx patterns of the policy an sts result was reported against
        # (rows.mx_key), so that a failure at a host since dropped from the policy stops
        # counting. NULL where the report names none, for the reports stored before (only
        # their raw gzip holds them) and for rows an older replica still inserts: current.
        "ALTER TABLE tlsrpt_policies ADD COLUMN policy_mx TEXT",
    ),
    (
        # Version 6: every STS session ever stored, by domain and result ("success" or a
        # result type), added to as each report is stored, and when the domain's last report
        # was received ("success" rows only): a scrape summed every row of the reports
        # instead, 46 s on PostgreSQL and minutes on SQLite for a year of 5,000 domains. It
        # starts as the pruned totals and the stored reports' sums; tlsrpt_pruned is no
        # longer read, nor written but by a replica of an earlier version still running.
        """CREATE TABLE tlsrpt_counted (
            domain TEXT NOT NULL,
            result TEXT NOT NULL,
            sessions DOUBLE PRECISION NOT NULL,
            received BIGINT,
            PRIMARY KEY (domain, result)
        )""",
        "INSERT INTO tlsrpt_counted (domain, result, sessions, received)"
        " SELECT domain, result, SUM(sessions), MAX(received) FROM ("
        " SELECT domain, result, sessions, CAST(NULL AS BIGINT) AS received FROM tlsrpt_pruned"
        " UNION ALL SELECT p.domain, 'success', CAST(p.successful AS DOUBLE PRECISION),"
        " r.received FROM tlsrpt_policies p JOIN tlsrpt_reports r ON r.id = p.report"
        " WHERE p.policy_type = 'sts'"
        " UNION ALL SELECT p.domain, f.result_type, CAST(f.sessions AS DOUBLE PRECISION),"
        " CAST(NULL AS BIGINT) FROM tlsrpt_failures f"
        " JOIN tlsrpt_policies p ON p.report = f.report AND p.position = f.policy"
        " WHERE p.policy_type = 'sts'"
        ") stored GROUP BY domain, result",
        # And the day of each policy result, its report's, so that a summary reads the rows
        # of its days alone: it read every row of its domains, a year's, and looked up each
        # one's report, 36 s on PostgreSQL and minutes on SQLite for 5,000 domains. NULL in the
        # rows a replica of an earlier version still inserts, until a prune dates them.
        "ALTER TABLE tlsrpt_policies ADD COLUMN day INTEGER",
        f"UPDATE tlsrpt_policies SET day = {REPORT_DAY}",
        "CREATE INDEX tlsrpt_policies_day ON tlsrpt_policies (domain, day)",
        "CREATE INDEX tlsrpt_policies_undated ON tlsrpt_policies (report) WHERE day IS NULL",
    ),
)
LATEST = len(VERSIONS)


def current(connection: Connection, table_exists: str) -> int:
    """
    The version a store has applied, 0 if none; the version table is made if missing.

    Args:
        table_exists: the SQL giving a row if the table its one parameter names exists.
    """
    # Looked for, not CREATE TABLE IF NOT EXISTS: PostgreSQL checks the right to create
    # first, and a role that may only read and write the tables would be refused.
    if connection.execute(table_exists, ("tlsrpt_schema",)).fetchone() is None:
        connection.execute("CREATE TABLE tlsrpt_schema (version INTEGER NOT NULL)")
        return 0
    (version,) = connection.execute("SELECT MAX(version) FROM tlsrpt_schema").fetchone()
    return int(version or 0)


def apply(connection: Connection, current: int, id_type: str, blob_type: str) -> None:
    """Apply every version after ``current``, in order, and record each."""
    for version in range(current + 1, LATEST + 1):
        for statement in VERSIONS[version - 1]:
            connection.execute(statement.format(id=id_type, blob=blob_type))
        connection.execute("INSERT INTO tlsrpt_schema (version) VALUES (?)", (version,))
