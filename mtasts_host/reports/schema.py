"""
The tables, as a list of versions: each store applies those it has not applied yet, in one
transaction, when it first connects. Append a version; never change one that has shipped.
"""

from __future__ import annotations

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
)
LATEST = len(VERSIONS)
