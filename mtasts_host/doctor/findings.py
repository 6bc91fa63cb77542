"""What the doctor found: one finding per domain and check, and the report that holds them."""

from __future__ import annotations

import enum
import json
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .._text import printable


class Check(enum.Enum):
    """The checks, by their stable ids: also metric labels and alert keys."""

    DNS_TXT = "dns-txt"
    """``_mta-sts.<domain>`` holds exactly one valid ``v=STSv1`` record."""
    DNS_ID = "dns-id"
    """The published id is the one ``mtasts-host dns`` prints."""
    HTTPS = "https"
    """``mta-sts.<domain>`` resolves and presents a valid certificate over TLS 1.2+."""
    POLICY = "policy"
    """The policy URL answers 200, ``text/plain``, with this config's body byte for byte."""
    MX_COVERAGE = "mx-coverage"
    """Every MX matches a policy pattern, and every pattern matches an MX."""
    MX_TLS = "mx-tls"
    """Every address of every MX offers STARTTLS with a valid certificate."""
    TLSRPT = "tlsrpt"
    """``_smtp._tls.<domain>`` holds one valid record with the configured ``rua``."""


class Status(enum.Enum):
    """How a check came out."""

    OK = "ok"
    """Nothing to do."""
    WARN = "warn"
    """Mail still flows, but something should be fixed."""
    FAIL = "fail"
    """Mail bounces or goes unprotected, or senders ignore the policy: fix it now."""

    @property
    def level(self) -> int:
        """0, 1 or 2: the value of the ``mtasts_doctor_check`` metric."""
        return _LEVELS[self]


_LEVELS = {Status.OK: 0, Status.WARN: 1, Status.FAIL: 2}


@dataclass(frozen=True, slots=True)
class Finding:
    """The outcome of one check for one domain, with one message saying what to do."""

    domain: str
    check: Check
    status: Status
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"check": self.check.value, "status": self.status.value, "message": self.message}

    def __str__(self) -> str:
        # Messages quote what servers said (an SMTP reply, a Location header): shown on a
        # terminal, an escape sequence or a carriage return there must not rewrite the report.
        return printable(f"{self.domain}: {self.status.value}: {self.check.value}: {self.message}")


def worst(findings: tuple[Finding, ...] | list[Finding]) -> Status:
    """The most severe status among ``findings``; OK if there are none."""
    return max((finding.status for finding in findings), key=_LEVELS.__getitem__, default=Status.OK)


@dataclass(frozen=True, slots=True)
class Report:
    """
    One run of the doctor.

    ``domains`` maps each domain checked, in config order, to its findings, in the order of
    ``Check``; ``certificates`` maps each host name whose certificate verified (policy hosts,
    and MX hosts their policies cover) to the earliest expiry seen for it.
    """

    domains: Mapping[str, tuple[Finding, ...]]
    certificates: Mapping[str, float] = field(default_factory=dict)
    started_at: float = 0.0
    finished_at: float = 0.0

    def findings(self) -> list[Finding]:
        return [finding for findings in self.domains.values() for finding in findings]

    def exit_code(self) -> int:
        """0 when nothing fails (warnings allowed), 1 when any check fails."""
        return int(any(finding.status is Status.FAIL for finding in self.findings()))

    def to_text(self) -> str:
        """Per domain: one line per warning or failure, then one summary line."""
        lines: list[str] = []
        for domain, findings in self.domains.items():
            lines.extend(str(finding) for finding in findings if finding.status is not Status.OK)
            counts = Counter(finding.status for finding in findings)
            summary = ", ".join(
                f"{counts[status]} {status.value}" for status in Status if counts[status]
            )
            lines.append(f"{domain}: {summary or 'no checks'}")
        return "\n".join(lines)

    def to_json(self) -> str:
        """``{"domains": {"<domain>": [{"check", "status", "message"}, ...]}}``, ok included."""
        domains = {
            domain: [finding.as_dict() for finding in findings]
            for domain, findings in self.domains.items()
        }
        return json.dumps({"domains": domains}, indent=2)

    def summary(self) -> dict[str, object]:
        """
        The latest results for ``/readyz``: when the run ended, counts, and only the findings
        that are not ok, so that the answer stays small however many domains are served.
        """
        findings = self.findings()
        counts = Counter(finding.status for finding in findings)
        return {
            "finished_at": _iso(self.finished_at),
            "duration_seconds": round(self.finished_at - self.started_at, 3),
            "domains": len(self.domains),
            "status": worst(findings).value,
            "warnings": counts[Status.WARN],
            "failures": counts[Status.FAIL],
            "problems": [
                {"domain": finding.domain, **finding.as_dict()}
                for finding in findings
                if finding.status is not Status.OK
            ],
        }


def date(timestamp: float) -> str:
    """A time as findings give it: ``2026-12-05 16:10 UTC``."""
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(timestamp))


def _iso(timestamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp))
