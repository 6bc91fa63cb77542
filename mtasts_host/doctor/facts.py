"""
What the probes observed, as plain values: the checks judge these, and never touch a socket.

A probe that could not observe something says why in ``error`` (DNS) or ``failure`` and
``detail`` (connections); an answer that exists but is empty (NXDOMAIN, no records of the
type) is no error.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Txt:
    """The TXT records at a name, after following CNAMEs."""

    name: str
    """The name asked for."""
    records: tuple[str, ...] = ()
    """Each record with its strings joined without spaces (RFC 8461 section 3.1)."""
    final: str = ""
    """The name the CNAMEs lead to; ``name`` itself if there are none."""
    error: str | None = None

    @property
    def target(self) -> str:
        return self.final or self.name


@dataclass(frozen=True, slots=True)
class Names:
    """Host names from a lookup (MX exchanges, or addresses of one host)."""

    values: tuple[str, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Authority:
    """What one authoritative server answers for the TXT records at a name."""

    server: str
    """The server's name, from the zone's NS records."""
    address: str
    records: tuple[str, ...] = ()
    error: str | None = None


class Failure(enum.Enum):
    """Why a connection gave no verified TLS session."""

    TIMEOUT = "timeout"
    """No answer within the timeout."""
    UNREACHABLE = "unreachable"
    """Refused, reset or unreachable."""
    NO_ROUTE = "no-route"
    """No route from here to the address (an IPv6 address on a host without IPv6)."""
    REFUSED = "refused"
    """The SMTP server refuses the session (421, or a 4xx or 5xx greeting): perhaps only to
    the doctor's address, as a blocklist does; others may be served."""
    EHLO = "ehlo"
    """The SMTP server refuses the EHLO: perhaps for the name the doctor gave."""
    NO_STARTTLS = "no-starttls"
    """The SMTP server does not offer STARTTLS, or refuses it."""
    PROTOCOL = "protocol"
    """The server's answers are not the protocol expected."""
    HANDSHAKE = "handshake"
    """The TLS handshake failed: no TLS 1.2 or newer, no certificate for the name (SNI), ..."""
    EXPIRED = "expired"
    """The certificate has expired."""
    NOT_YET_VALID = "not-yet-valid"
    """The certificate is not valid yet."""
    NAME = "name"
    """The certificate is not valid for the host name."""
    UNTRUSTED = "untrusted"
    """The certificate does not chain to a trusted root."""
    INVALID = "invalid"
    """The certificate fails verification for another reason."""


@dataclass(frozen=True, slots=True)
class Certificate:
    """A CA certificate that the server sends and that the chain senders verify runs through:
    an intermediate, which breaks validation when it expires as the server's own does."""

    subject: str
    not_after: float
    root: bool = False
    """Self-signed: a root the server sends too, where most send intermediates only."""

    @property
    def named(self) -> str:
        """``the intermediate certificate 'CN=R11'``, as findings name it."""
        return f"the {'root' if self.root else 'intermediate'} certificate {self.subject!r}"


@dataclass(frozen=True, slots=True)
class Session:
    """
    A TLS connection to one address for one host name: the negotiated version and when the
    certificate, which verified, expires; or why there is no such session, with when the
    certificate expires all the same if one was sent that failed verification.
    """

    host: str
    address: str
    version: str = ""
    not_after: float | None = None
    chain: tuple[Certificate, ...] = ()
    """The CA certificates the server sent that its verified chain runs through."""
    failure: Failure | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP response, its body cut off after ``limit`` + 1 bytes."""

    status: int
    content_type: str | None = None
    location: str | None = None
    body: bytes = b""
    too_large: bool = False
    """The body is longer than the limit; ``body`` holds its beginning."""
    content_encoding: str | None = None
    """A Content-Encoding other than identity, though the request asked for identity."""


@dataclass(frozen=True, slots=True)
class Fetch:
    """The policy fetched from one address: its TLS session, then the answer or an error."""

    session: Session
    answer: Answer | None = None
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Publishing:
    """
    The automatic publisher of ``serve`` has a domain's ``_mta-sts`` records pending: a run
    in progress or scheduled is to put the id of the policy served in place, after the new
    policy is served and proxies' caches have let the old one go (RFC 8461 section 8.1).
    """

    failed_runs: int = 0
    """Its runs in a row that failed, each retried; 0 while none has."""
