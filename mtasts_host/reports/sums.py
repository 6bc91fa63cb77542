"""
The sums that the summaries, the page and the metrics read from the store: grouped in SQL, for
the configured domains only, so that what is read stays bounded by them whatever the store
holds (reports name domains and hosts by the thousand).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from .rows import FailureTotals, MxTotals, SessionCounts, Totals
from .store import FAILED, SESSIONS, SUCCESS, SUCCESSFUL, Connection, ReportStore

_CHUNK = 500
"""Domains one query names: SQLite takes at most 32,766 parameters, and a host may serve tens
of thousands of domains."""
_OLDER = "CASE WHEN p.policy_mx <> s.column2 THEN 1 ELSE 0 END"
"""1 for a policy row reported against an older policy: its ``mx`` known (not NULL) and not
the one served now (``s.column2``, NULL when unknown); else 0."""


def totals(store: ReportStore, since_day: int, served: Mapping[str, str | None]) -> list[Totals]:
    """
    Sessions of the ``served`` domains by domain, policy type, organisation and day, from
    ``since_day`` on, and whether they were reported against an older policy.

    Args:
        served: the domains, each with the ``mx_key`` of the policy it serves now; one
            without (None) has no older policy.
    """
    with store.connection(write=False) as connection:
        rows = _for_served(
            connection,
            "SELECT p.domain, p.policy_type, r.organization, p.day, COUNT(DISTINCT p.report),"
            f" {SUCCESSFUL}, {FAILED}, {_OLDER}"
            " FROM tlsrpt_policies p JOIN {served} ON s.column1 = p.domain"
            " JOIN tlsrpt_reports r ON r.id = p.report"
            " WHERE p.day >= ?"
            f" GROUP BY p.domain, p.policy_type, r.organization, p.day, {_OLDER}",
            served,
            after=(since_day,),
        )
    return [
        Totals(domain, kind, organization, day, reports, int(successful), int(failed), bool(older))
        for domain, kind, organization, day, reports, successful, failed, older in rows
    ]


def failure_totals(
    store: ReportStore, since_day: int, served: Mapping[str, str | None]
) -> list[FailureTotals]:
    """Failed sessions of the ``served`` domains by domain, policy type, day and result type, from
    ``since_day`` on; those reported against an older policy (see ``totals``) left out."""
    with store.connection(write=False) as connection:
        rows = _for_served(
            connection,
            f"SELECT p.domain, p.policy_type, p.day, f.result_type, {SESSIONS}"
            " FROM tlsrpt_failures f"
            " JOIN tlsrpt_policies p ON p.report = f.report AND p.position = f.policy"
            " JOIN {served} ON s.column1 = p.domain"
            f" WHERE p.day >= ? AND {_OLDER} = 0"
            " GROUP BY p.domain, p.policy_type, p.day, f.result_type",
            served,
            after=(since_day,),
        )
    return [
        FailureTotals(domain, kind, day, result_type, int(sessions))
        for domain, kind, day, result_type, sessions in rows
    ]


def failures_by_mx(
    store: ReportStore, first_day: int, last_day: int, served: Mapping[str, str | None], top: int
) -> list[MxTotals]:
    """
    The ``top`` MX hosts of each of the ``served`` domains with the most failed STS sessions from
    ``first_day`` to ``last_day``, most first, then by name; those reported against an
    older policy (see ``totals``) left out. Ranked by the database: a report may name
    thousands of hosts, and only these are read.
    """
    mx = "COALESCE(f.mx, '')"
    with store.connection(write=False) as connection:
        rows = _for_served(
            connection,
            f"SELECT domain, mx, sessions FROM (SELECT p.domain AS domain, {mx} AS mx,"
            f" {SESSIONS} AS sessions, ROW_NUMBER() OVER (PARTITION BY p.domain"
            f" ORDER BY {SESSIONS} DESC, {mx}{store.code_point_order}) AS n"
            " FROM tlsrpt_failures f"
            " JOIN tlsrpt_policies p ON p.report = f.report AND p.position = f.policy"
            " JOIN {served} ON s.column1 = p.domain"
            f" WHERE p.policy_type = 'sts' AND p.day BETWEEN ? AND ? AND {_OLDER} = 0"
            f" GROUP BY p.domain, {mx}) ranked WHERE n <= ?",
            served,
            after=(first_day, last_day, top),
        )
    return [MxTotals(domain, host, int(sessions)) for domain, host, sessions in rows]


def session_counts(store: ReportStore, domains: Collection[str]) -> list[SessionCounts]:
    """
    Every STS session of ``domains`` ever stored, by domain and result, for the metrics:
    those of pruned reports included, so that the counts never go down. Read from the
    totals the store keeps as it stores reports: a row or so per domain and result, however
    many reports there are.
    """
    with store.connection(write=False) as connection:
        rows = _for_domains(
            connection,
            "SELECT domain, result, sessions, received FROM tlsrpt_counted WHERE domain {domains}",
            domains,
        )
    successes: dict[str, float] = {}
    last_received: dict[str, int | None] = {}
    failures: dict[str, dict[str, float]] = {}
    for domain, result, sessions, received in rows:
        if result == SUCCESS:
            successes[domain], last_received[domain] = sessions, received
        else:
            failures.setdefault(domain, {})[result] = sessions
    return [
        SessionCounts(
            domain,
            int(successes.get(domain, 0)),
            {result: int(sessions) for result, sessions in failures.get(domain, {}).items()},
            last_received.get(domain),
        )
        for domain in sorted(successes.keys() | failures.keys())
    ]


def _for_domains(
    connection: Connection,
    sql: str,
    domains: Collection[str],
    *,
    before: Sequence[Any] = (),
    after: Sequence[Any] = (),
) -> list[Any]:
    """
    The rows of ``sql`` whose ``{domains}`` is an ``IN`` list of ``domains``, a chunk at a
    time: every query groups by domain. Its parameters are ``before``, the domains and
    ``after``; with no domains it still runs, matching nothing, so that a store that does
    not answer is known.
    """
    names = sorted(domains)
    rows: list[Any] = []
    for start in range(0, max(len(names), 1), _CHUNK):
        chunk = names[start : start + _CHUNK]
        among = f"IN ({', '.join('?' * len(chunk)) or 'NULL'})"
        rows += connection.execute(
            sql.replace("{domains}", among), (*before, *chunk, *after)
        ).fetchall()
    return rows


def _for_served(
    connection: Connection,
    sql: str,
    served: Mapping[str, str | None],
    *,
    after: Sequence[Any] = (),
) -> list[Any]:
    """
    The rows of ``sql`` whose ``{served}`` is a table ``s`` of the domains (``column1``,
    as both databases name a VALUES list's columns) and the ``mx_key`` each serves now
    (``column2``), a chunk at a time, as ``_for_domains``; its parameters are these pairs,
    then ``after``.
    """
    names = sorted(served)
    rows: list[Any] = []
    for start in range(0, max(len(names), 1), _CHUNK):
        chunk = names[start : start + _CHUNK]
        values = ", ".join("(?, ?)" for _ in chunk) or "(NULL, NULL)"
        pairs = [value for name in chunk for value in (name, served[name])]
        rows += connection.execute(
            sql.replace("{served}", f"(VALUES {values}) s"), (*pairs, *after)
        ).fetchall()
    return rows
