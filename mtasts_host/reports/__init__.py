"""TLS reports (RFC 8460): receive them over HTTPS and by mail, store, summarise, judge."""

from .body import MAX_REPORT_SIZE, MAX_WIRE_SIZE, TooLarge
from .command import ingest_command, summary_command
from .intake import Intake
from .parse import parse_report
from .report import (
    BadReport,
    FailureDetail,
    PolicyResult,
    PolicyType,
    Report,
    ResultType,
)
from .service import Reports, read_summaries
from .settings import ReportsSettings, Thresholds
from .store import Outcome, ReportStore, StoreUnavailable, open_store
from .summary import DomainSummary, summarize
from .verdict import Verdict

__all__ = [
    "MAX_REPORT_SIZE",
    "MAX_WIRE_SIZE",
    "BadReport",
    "DomainSummary",
    "FailureDetail",
    "Intake",
    "Outcome",
    "PolicyResult",
    "PolicyType",
    "Report",
    "ReportStore",
    "Reports",
    "ReportsSettings",
    "ResultType",
    "StoreUnavailable",
    "Thresholds",
    "TooLarge",
    "Verdict",
    "ingest_command",
    "open_store",
    "parse_report",
    "read_summaries",
    "summarize",
    "summary_command",
]
