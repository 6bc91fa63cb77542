"""
TLS connections, with asyncio: the handshake and what its failures mean, and the policy
fetched over HTTPS (the SMTP dialogue up to STARTTLS is in ``smtpprobe``). Each probe is
bounded by one timeout as a whole (and one more for a second look at a chain out of its
dates, ``chain.unverified``), and returns what it saw, never raises.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import ssl
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .. import __version__
from ..policy import MAX_BODY_SIZE
from .chain import unverified, verified_chain
from .facts import Answer, Failure, Fetch, Session

POLICY_PATH = "/.well-known/mta-sts.txt"
USER_AGENT = f"mtasts-host-doctor/{__version__}"

# OpenSSL's X509_V_ERR_* codes, as ssl.SSLCertVerificationError.verify_code gives them.
_VERIFY_FAILURES = {
    9: Failure.NOT_YET_VALID,
    10: Failure.EXPIRED,
    62: Failure.NAME,
    2: Failure.UNTRUSTED,  # unable to get the issuer certificate
    18: Failure.UNTRUSTED,  # self-signed certificate
    19: Failure.UNTRUSTED,  # self-signed certificate in the chain
    20: Failure.UNTRUSTED,  # unable to get the local issuer certificate
    21: Failure.UNTRUSTED,  # unable to verify the first certificate
}
BROKEN = (OSError, EOFError, ValueError, asyncio.LimitOverrunError)
"""What a connection raises when the server misbehaves: SSL errors are OSErrors."""
_MAX_INTERIM = 10
"""Interim 1xx answers skipped before the final one."""
_MAX_HEAD = 65536
"""The most bytes of header lines read in one answer: the stream's own limit, for one line."""
_NO_ROUTE = (errno.ENETUNREACH, errno.EADDRNOTAVAIL, errno.EHOSTUNREACH)
_CHAIN = "a certificate of the chain (the server's or an intermediate)"
"""OpenSSL does not say which certificate of the chain failed its dates: the server's own,
or an intermediate it sends (an old one left in the chain file). ``chain.unverified`` looks."""
DATED = (Failure.EXPIRED, Failure.NOT_YET_VALID)
"""Failures that ``chain.unverified`` can name the certificate of."""
UNVERIFIED = frozenset({*_VERIFY_FAILURES.values(), Failure.INVALID})
"""Failures of a certificate that was sent: ``chain.unverified`` reads when it expires."""


@dataclass
class _Waiting:
    """What a policy fetch waits for, said in its error should the timeout strike."""

    what: str = "no HTTP answer"
    why: str = ""


def no_route(exc: OSError, address: str) -> bool:
    """The error says there is no route from here to ``address``, an IPv6 one: a host without
    IPv6 cannot check it, which says nothing of the address itself."""
    return exc.errno in _NO_ROUTE and ipaddress.ip_address(address).version == 6


def classify(exc: BaseException, host: str, address: str, port: int) -> tuple[Failure, str]:
    """What a connection's exception (one of ``BROKEN``) says went wrong, and its message."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        failure = _VERIFY_FAILURES.get(exc.verify_code, Failure.INVALID)
        reason = str(exc.verify_message).rstrip(".")
        return failure, {
            Failure.EXPIRED: f"{_CHAIN} has expired",
            Failure.NOT_YET_VALID: f"{_CHAIN} is not valid yet",
            Failure.NAME: f"the certificate is not valid for {host}",
            Failure.UNTRUSTED: f"the certificate does not chain to a trusted root ({reason})",
        }.get(failure, f"the certificate fails verification ({reason})")
    if isinstance(exc, ssl.SSLError):
        return Failure.HANDSHAKE, f"the TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, asyncio.IncompleteReadError):
        return Failure.PROTOCOL, "the server closed the connection"
    if isinstance(exc, ConnectionRefusedError):
        return Failure.UNREACHABLE, f"connection refused on port {port}"
    if isinstance(exc, ConnectionResetError):
        # asyncio's own, without an errno: the connection was lost before TLS was up; with
        # one, a reset (RST): the connection was made, so it came during the handshake.
        how = "closed" if exc.errno is None else "reset"
        return Failure.HANDSHAKE, f"the server {how} the connection during the TLS handshake"
    if isinstance(exc, OSError):
        if no_route(exc, address):
            return Failure.NO_ROUTE, f"no route to port {port}"
        reason = exc.strerror or str(exc) or type(exc).__name__
        return Failure.UNREACHABLE, f"{reason.lower()} on port {port}"
    return Failure.PROTOCOL, f"the server's answers make no sense ({exc})"


def untangle(exc: BaseException) -> None:
    """
    Clear the finished frames of ``exc``'s traceback. The exception that ends a connection
    stays in its stream reader and its protocol, and the frames of its traceback hold the
    streams: a cycle of about 45 objects a failed connection, the TLS objects among them,
    that only the cyclic collector frees. The frame that caught ``exc`` is still running and
    is not cleared: it drops its streams itself before it returns.
    """
    traceback.clear_frames(exc.__traceback__)


def _session(host: str, address: str, writer: asyncio.StreamWriter) -> Session:
    tls = writer.get_extra_info("ssl_object")
    certificate = tls.getpeercert()
    not_after = ssl.cert_time_to_seconds(certificate["notAfter"])
    return Session(host, address, tls.version() or "", not_after, verified_chain(tls))


async def failed(
    failure: Failure,
    detail: str,
    host: str,
    address: str,
    timeout: float,
    connect: Callable[[], Awaitable[asyncio.StreamWriter]],
) -> Session:
    """The session of a failed handshake: for a certificate that failed verification, when
    it expires, and which certificate is out of its dates, from a second look."""
    if failure not in UNVERIFIED:
        return Session(host, address, failure=failure, detail=detail)
    dated, not_after = await unverified(connect, host, timeout)
    if failure in DATED and dated is not None:
        detail = dated
    return Session(host, address, not_after=not_after, failure=failure, detail=detail)


async def handshake(
    writer: asyncio.StreamWriter, host: str, address: str, context: ssl.SSLContext
) -> Session:
    await writer.start_tls(context, server_hostname=host)
    return _session(host, address, writer)


async def fetch_policy(
    address: str, host: str, port: int, context: ssl.SSLContext, timeout: float
) -> Fetch:
    """GET the policy from ``address`` with SNI ``host``, never following a redirect."""
    step = "no connection"
    reader: asyncio.StreamReader | None = None
    writer = None
    session = None
    waiting = _Waiting()
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            step = "no TLS handshake"
            session = await handshake(writer, host, address, context)
            try:
                return Fetch(session, await _get(reader, writer, host, waiting))
            except asyncio.IncompleteReadError:
                # Closed before the answer ended: nginx's "return 444", a proxy that lost its
                # upstream, a Content-Length longer than the body.
                error = f"the server closed the connection: {waiting.what}{waiting.why}"
                return Fetch(session, error=error)
            except BROKEN as exc:
                untangle(exc)
                return Fetch(session, error=f"the HTTP answer is broken ({exc})")
    except TimeoutError:
        if session is not None:
            error = f"{waiting.what} within {timeout:g} s{waiting.why}"
            return Fetch(session, error=error)
        detail = f"{step} within {timeout:g} s on port {port}"
        return Fetch(Session(host, address, failure=Failure.TIMEOUT, detail=detail))
    except BROKEN as exc:
        untangle(exc)
        failure, detail = classify(exc, host, address, port)
        return Fetch(
            await failed(failure, detail, host, address, timeout, lambda: _connect(address, port))
        )
    finally:
        if writer is not None:
            writer.transport.abort()
        reader = writer = None  # see untangle


async def _connect(address: str, port: int) -> asyncio.StreamWriter:
    return (await asyncio.open_connection(address, port))[1]


async def _get(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, waiting: _Waiting
) -> Answer:
    """The answer; ``waiting`` is kept up to date, should the timeout strike."""
    request = (
        f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: {USER_AGENT}\r\n"
        "Accept: */*\r\nAccept-Encoding: identity\r\nConnection: close\r\n\r\n"
    )
    writer.write(request.encode("ascii"))
    # Interim 1xx answers (100 Continue, 103 Early Hints) may come first: a client MUST
    # skip them (RFC 9110 section 15.2); a few at most, to stay bounded.
    for _ in range(_MAX_INTERIM + 1):
        status_line, *header_lines = await _head(reader, waiting)
        version, _, rest = status_line.partition(" ")
        if not version.startswith("HTTP/1."):
            raise ValueError(f"not HTTP: {status_line[:40]!r}")
        status = int(rest[:3])
        if not 100 <= status < 200 or status == 101:
            break
    else:
        raise ValueError(f"more than {_MAX_INTERIM} interim 1xx answers")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, colon, value = line.partition(":")
        if colon:
            headers.setdefault(name.strip().lower(), value.strip())
    answer = Answer(status, headers.get("content-type"), headers.get("location"))
    if status != 200:
        return answer
    waiting.what, waiting.why = "the body did not arrive in full", " (the headers did)"
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, too_large = await _chunked(reader)
    elif "content-length" in headers:
        length = int(headers["content-length"])
        too_large = length > MAX_BODY_SIZE
        body = b"" if too_large else await reader.readexactly(length)
    else:
        waiting.why = " (no Content-Length, not chunked, and the connection stayed open)"
        body = await reader.read(MAX_BODY_SIZE + 1)
        while len(body) <= MAX_BODY_SIZE and (more := await reader.read(MAX_BODY_SIZE + 1)):
            body += more
        too_large = len(body) > MAX_BODY_SIZE
    coding = headers.get("content-encoding", "").strip().lower()
    return Answer(
        status,
        answer.content_type,
        answer.location,
        body[:MAX_BODY_SIZE],
        too_large,
        None if coding in ("", "identity") else coding,
    )


async def _head(reader: asyncio.StreamReader, waiting: _Waiting) -> list[str]:
    """
    The status line and the header lines, up to the empty line. A line may end in a bare LF,
    which RFC 9112 section 2.2 lets a recipient accept: some servers written by hand send it.
    From the first line on, ``waiting`` says that the headers are awaited.
    """
    lines: list[str] = []
    size = 0
    while line := (await reader.readuntil(b"\n")).removesuffix(b"\n").removesuffix(b"\r"):
        size += len(line)
        if size > _MAX_HEAD:
            raise ValueError(f"headers longer than {_MAX_HEAD} bytes")
        lines.append(line.decode("latin-1"))
        waiting.what = "the headers did not arrive in full"
    return lines


async def _chunked(reader: asyncio.StreamReader) -> tuple[bytes, bool]:
    body = b""
    while size := int((await reader.readuntil(b"\n")).split(b";")[0], 16):
        if len(body) + size > MAX_BODY_SIZE:
            return body, True
        body += await reader.readexactly(size)
        await reader.readuntil(b"\n")  # the chunk's CRLF, or bare LF
    return body, False
