"""
One RFC 8460 report, parsed once into immutable values: lenient where real senders deviate
from the RFC, strict where counts matter.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

MAX_COUNT = 2**53 - 1
"""The largest integer every JSON reader keeps exactly (I-JSON, RFC 7493 section 2.2)."""


class BadReport(ValueError):
    """The bytes are not a report we can count; the message is one line saying why."""


class PolicyType(enum.Enum):
    """The kind of policy a sender applied (RFC 8460 section 4.4)."""

    STS = "sts"
    """An MTA-STS policy: the only kind this host's summaries count."""
    TLSA = "tlsa"
    """DANE TLSA records, reported apart."""
    NO_POLICY_FOUND = "no-policy-found"
    """The sender found no policy at all, reported apart."""
    OTHER = "other"
    """A type RFC 8460 does not define: kept in the raw report, never counted."""


class ResultType(enum.Enum):
    """Why sessions failed (RFC 8460 section 4.3 and its registry, section 6.6)."""

    STARTTLS_NOT_SUPPORTED = "starttls-not-supported"
    """The MX did not offer STARTTLS."""
    CERTIFICATE_HOST_MISMATCH = "certificate-host-mismatch"
    """The certificate does not name the MX host."""
    CERTIFICATE_EXPIRED = "certificate-expired"
    """The certificate has expired."""
    CERTIFICATE_NOT_TRUSTED = "certificate-not-trusted"
    """The certificate does not chain to a root the sender trusts."""
    VALIDATION_FAILURE = "validation-failure"
    """Any other failure to validate the certificate."""
    TLSA_INVALID = "tlsa-invalid"
    """DANE: the TLSA records are invalid."""
    DNSSEC_INVALID = "dnssec-invalid"
    """DANE: DNSSEC validation failed."""
    DANE_REQUIRED = "dane-required"
    """DANE: required but not usable."""
    STS_POLICY_FETCH_ERROR = "sts-policy-fetch-error"
    """MTA-STS: the policy could not be fetched."""
    STS_POLICY_INVALID = "sts-policy-invalid"
    """MTA-STS: the policy did not parse."""
    STS_WEBPKI_INVALID = "sts-webpki-invalid"
    """MTA-STS: the policy host's certificate did not validate."""
    OTHER = "other"
    """A result type RFC 8460 does not register; counted, under this name."""


_RESULT_TYPES = {member.value: member for member in ResultType if member is not ResultType.OTHER}
_POLICY_TYPES = {member.value: member for member in PolicyType if member is not PolicyType.OTHER}


@dataclass(frozen=True, slots=True)
class FailureDetail:
    """One ``failure-details`` entry."""

    result_type: ResultType
    reported_type: str
    """The result type as the sender wrote it, registered or not."""
    sessions: int
    """``failed-session-count``."""
    sending_mta_ip: str | None = None
    receiving_mx_hostname: str | None = None
    receiving_mx_helo: str | None = None
    receiving_ip: str | None = None
    additional_information: str | None = None
    failure_reason_code: str | None = None


@dataclass(frozen=True, slots=True)
class PolicyResult:
    """One element of ``policies``: a policy as applied, and how its sessions went."""

    policy_type: PolicyType
    domain: str
    """``policy-domain``, lower case, without a trailing dot, as A-labels where it is a
    valid host name."""
    successful: int
    failed: int
    failures: tuple[FailureDetail, ...] = ()
    policy_strings: tuple[str, ...] = ()
    mx_hosts: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Report:
    """A TLS report; ``organization_name`` and ``report_id`` identify it."""

    organization_name: str
    report_id: str
    start: datetime
    end: datetime
    """The date range, always in UTC (a sender's naive times are taken as UTC)."""
    policies: tuple[PolicyResult, ...]
    contact_info: str | None = None
