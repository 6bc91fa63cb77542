"""
The ``mtasts-host reports`` commands, for the CLI to call once it has parsed its options:
the summary of each domain, and the intake by mail.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from typing import BinaryIO, TextIO

from .. import names
from .._digits import decimal, fraction
from .._text import counted, last_days, printable
from ..config import Config
from ..options import Option, choice, given_as, positive_int, text
from ..policy import Policy
from . import mail
from .intake import Intake
from .service import read_summaries
from .settings import DEFAULT_THRESHOLDS, ReportsSettings, Thresholds
from .store import StoreUnavailable, open_store
from .summary import DomainSummary
from .verdict import Verdict

EX_UNAVAILABLE = 69
"""``reports`` could not read the store (sysexits.h ``EX_UNAVAILABLE``)."""
EX_TEMPFAIL = mail.EX_TEMPFAIL
MAX_DAYS = 36_500
"""The most days a summary looks back: the longest ``retention_days`` keeps reports, while
each day is one of the chart's in memory (``--days 999999999`` ran out of memory)."""


def _days(text: str) -> int:
    value = decimal(text, 1, MAX_DAYS)
    if value is None:
        raise ValueError(f"expected a number of days from 1 to {MAX_DAYS}")
    return value


def _rate(text: str) -> float:
    value = fraction(text)
    if value is None or not 0 <= value <= 1:
        raise ValueError("expected a share of sessions from 0 to 1, like 0.001")
    return value


OPTIONS = (
    Option("domain", text, None, "only this configured domain", "D"),
    Option("days", _days, 30, "reports whose date range ended in the last N days", "N"),
    Option(
        "format", choice("text", "json"), "text", "a few lines a domain, or JSON", "{text,json}"
    ),
    Option(
        "window-days",
        _days,
        DEFAULT_THRESHOLDS.window_days,
        "the days of reports the verdict looks at",
        "N",
    ),
    Option(
        "min-organizations",
        positive_int,
        DEFAULT_THRESHOLDS.min_organizations,
        "the reporting organisations a testing domain needs to be ready",
        "N",
    ),
    Option(
        "max-failure-rate",
        _rate,
        DEFAULT_THRESHOLDS.max_failure_rate,
        "the share of failed sessions a ready domain stays under; 0 allows none",
        "RATE",
    ),
)
INGEST_OPTIONS = (
    Option("maildir", text, None, "take the messages in DIR/new, moving each to DIR/cur", "DIR"),
)


def summary(config: Config, args: argparse.Namespace) -> int:
    """``mtasts-host reports``, with the options parsed: see ``summary_command``."""
    if config.reports is None:
        print(f"mtasts-host: error: {config.path} has no 'reports' block", file=sys.stderr)
        return 2
    try:
        # As doctor and publish say it, in the canonical form (any case, U-labels) too.
        given = () if args.domain is None else (args.domain,)
        domains = config.select(given, given_as(args, "domain"))
    except ValueError as exc:
        print(f"mtasts-host: error: {exc}", file=sys.stderr)
        return 2
    return summary_command(
        config.reports,
        {domain: settings.policy for domain, settings in config.domains.items()},
        out=sys.stdout,
        err=sys.stderr,
        domain=None if args.domain is None else domains[0],
        days=args.days,
        format=args.format,
        thresholds=Thresholds(args.window_days, args.min_organizations, args.max_failure_rate),
    )


def ingest(config: Config, args: argparse.Namespace) -> int:
    """``mtasts-host reports ingest``, with the options parsed: see ``ingest_command``."""
    if config.reports is None:
        print(f"mtasts-host: error: {config.path} has no 'reports' block", file=sys.stderr)
        return EX_TEMPFAIL
    # Usage errors, 75 as the others of ingest (see cli): the mail system tries again.
    if args.files and args.maildir:
        print("mtasts-host: error: give FILEs or --maildir, not both", file=sys.stderr)
        return EX_TEMPFAIL
    if (not (args.files or args.maildir) or "-" in args.files) and sys.stdin is None:
        print(
            "mtasts-host: error: standard input is closed: give FILEs or --maildir", file=sys.stderr
        )
        return EX_TEMPFAIL
    # The intake's log lines are serve's: here each report has a line of its own, which
    # Python's last-resort handler printed a second time, bare (a traceback for a store error).
    logging.getLogger(Intake.__module__).addHandler(logging.NullHandler())
    return ingest_command(
        config.reports,
        files=args.files,
        maildir=args.maildir,
        stdin=sys.stdin.buffer if sys.stdin is not None else io.BytesIO(),
        log=sys.stderr,
    )


def summary_command(
    settings: ReportsSettings,
    policies: Mapping[str, Policy],
    *,
    out: TextIO,
    err: TextIO,
    domain: str | None = None,
    days: int = 30,
    format: str = "text",
    thresholds: Thresholds = DEFAULT_THRESHOLDS,
    now: float | None = None,
) -> int:
    """
    ``mtasts-host reports``: print each configured domain's summary and verdict.

    Args:
        settings: the ``reports:`` block.
        policies: the configured domains and their policies: sessions reported against
            other ``mx`` are left out (see ``read_summaries``).
        domain: only this one (it must be configured).
        days: the period, in days up to now.
        format: ``text`` or ``json`` (``{"domains": {"<domain>": {...}}}``).

    Returns:
        0; 1 when a domain's verdict is ``failing`` (as the doctor's for a failed check,
        for a cron job to mail); 2 for a domain that is not configured; 69 when the store
        cannot be read.
    """
    if domain is not None:
        try:
            name = names.policy_domain(domain)
        except ValueError:
            name = domain
        if name not in policies:
            print(f"mtasts-host: error: --domain {domain!r}: not configured", file=err)
            return 2
        policies = {name: policies[name]}
    try:
        store = open_store(settings.store)
        absent = store.absent()
        if absent is not None:
            raise StoreUnavailable(f"{absent} (no report was ever stored there)")
        # No chart: the text and JSON show none.
        summaries = read_summaries(
            store, policies, days=days, now=now, thresholds=thresholds, daily=False
        )
    except (ValueError, StoreUnavailable) as exc:
        print(f"mtasts-host: report store unavailable: {exc}", file=err)
        return EX_UNAVAILABLE
    out.write(to_json(summaries) if format == "json" else to_text(summaries))
    return int(any(summary.verdict is Verdict.FAILING for summary in summaries.values()))


def ingest_command(
    settings: ReportsSettings,
    *,
    files: Sequence[str] = (),
    maildir: str | None = None,
    stdin: BinaryIO,
    log: TextIO,
) -> int:
    """
    ``mtasts-host reports ingest``: store the reports in files, in a maildir's ``new/``, or
    else in the one message on standard input (as Postfix's ``pipe`` delivers it), which a FILE
    ``-`` also names.

    Returns:
        0 when stored or duplicate, 65 (``EX_DATAERR``) for a message without a report or
        with a bad one, 66 (``EX_NOINPUT``) for a file or maildir that cannot be read, 75
        (``EX_TEMPFAIL``) when the store is unavailable.
    """
    try:
        store = open_store(settings.store)
    except ValueError as exc:
        print(f"mtasts-host: {exc}", file=log)
        return mail.EX_TEMPFAIL
    intake = Intake(store, settings.retention_days)
    if maildir is not None:
        return mail.ingest_maildir(intake, maildir, log)
    if files:
        return mail.ingest_files(intake, files, log, stdin)
    return mail.ingest_stdin(intake, stdin, log)


def to_json(summaries: Mapping[str, DomainSummary]) -> str:
    """``{"domains": {"<domain>": {...}}}``, one document."""
    domains = {domain: summary.to_json() for domain, summary in summaries.items()}
    return json.dumps({"domains": domains}, indent=2) + "\n"


def to_text(summaries: Mapping[str, DomainSummary]) -> str:
    """A few lines per domain; what senders wrote is shown with control characters escaped."""
    lines = []
    for domain, summary in summaries.items():
        organizations = ", ".join(_organization(name) for name in summary.organizations)
        lines += [
            f"{domain} ({summary.mode.value}): {summary.verdict.value}",
            f"  {summary.verdict_reason}",
            f"  {last_days(summary.days)}: {counted(summary.reports, 'report')} from "
            f"{counted(len(summary.organizations), 'organization')}"
            + (f" ({organizations})" if organizations else ""),
            f"  sessions: {summary.successful_sessions} successful, "
            f"{summary.failed_sessions} failed",
        ]
        if summary.failures_by_type:
            lines.append(f"  failures by type: {_counts(summary.failures_by_type)}")
            lines.append(f"  failures by MX: {_counts(summary.failures_by_mx)}")
        older = summary.older_policy
        if older.reports:
            lines.append(
                f"  older policy (other mx, not counted): {counted(older.reports, 'report')}, "
                f"{older.successful} successful, {older.failed} failed"
            )
        for kind, sessions in summary.other_policies.items():
            lines.append(
                f"  {kind} policies (not counted): {counted(sessions.reports, 'report')}, "
                f"{sessions.successful} successful, {sessions.failed} failed"
            )
    return "".join(line + "\n" for line in lines)


def _organization(name: str) -> str:
    # The names are listed in parentheses, after a comma each: a name holding one of them,
    # "Google Inc., Microsoft Corporation", would pass for two; it is shown in quotes.
    return printable(
        json.dumps(name, ensure_ascii=False) if any(c in name for c in ',()"') else name
    )


def _counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{printable(key)} {count}" for key, count in counts.items())
