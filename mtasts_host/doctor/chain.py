"""
The certificates a server sends, beyond its own: the intermediates that its verified chain
runs through, whose expiry breaks senders' validation as its own does, and, once the chain
failed its dates, which certificate did.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from .facts import Certificate
from .findings import date

_NAMES = {"commonName": "CN", "organizationName": "O", "countryName": "C"}


def _name(info: dict[str, Any], key: str) -> str:
    """A subject or issuer as OpenSSL prints it: ``C=US, O=Let's Encrypt, CN=R11``."""
    parts = [(name, value) for rdn in info.get(key, ()) for name, value in rdn]
    return ", ".join(f"{_NAMES.get(name, name)}={value}" for name, value in parts) or "(none)"


def _certificate(info: dict[str, Any]) -> Certificate:
    subject = _name(info, "subject")
    not_after = ssl.cert_time_to_seconds(info["notAfter"])
    return Certificate(subject, not_after, subject == _name(info, "issuer"))


def _connection(tls: Any) -> Any:
    """The chains are on the private ``_sslobj`` from Python 3.10 on (made public, as DER,
    in 3.13); None without them."""
    connection = getattr(tls, "_sslobj", None)
    return connection if hasattr(connection, "get_verified_chain") else None


def verified_chain(tls: Any) -> tuple[Certificate, ...]:
    """The CA certificates of ``tls`` (an SSLObject) that the server sent and that the chain
    that verified runs through; none if Python cannot tell."""
    connection = _connection(tls)
    if connection is None:
        return ()
    sent = connection.get_unverified_chain() or []
    return tuple(
        _certificate(certificate.get_info())
        for certificate in (connection.get_verified_chain() or [])[1:]
        if certificate in sent
    )


def _out_of_date(tls: Any, now: float) -> str | None:
    """Each certificate the server sent that is out of its dates, named, and since when or
    until when; None if none is, or Python cannot tell."""
    connection = _connection(tls)
    if connection is None:
        return None
    found = []
    for index, certificate in enumerate(connection.get_unverified_chain() or []):
        info = certificate.get_info()
        ca = _certificate(info)
        which = "the certificate" if index == 0 else f"{ca.named} that it sends"
        not_before = ssl.cert_time_to_seconds(info["notBefore"])
        if ca.not_after < now:
            found.append(f"{which} expired {date(ca.not_after)}")
        elif not_before > now:
            found.append(f"{which} is not valid before {date(not_before)}")
    return "; ".join(found) or None


def _unchecked() -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


async def unverified(
    connect: Callable[[], Awaitable[asyncio.StreamWriter]], host: str, timeout: float
) -> tuple[str | None, float | None]:
    """
    Once a handshake failed verification, a second connection, which verifies nothing,
    looks at the certificates: which of them are out of their dates (OpenSSL does not say
    which; None if none is, or it cannot tell), and when the chain expires, the earliest of
    the server's certificate and the intermediates it sends (None if it cannot tell): an
    expired or self-signed certificate still expires, and its expiry is still wanted.

    Args:
        connect: opens the connection, up to where TLS starts.
    """
    writer = None
    try:
        async with asyncio.timeout(timeout):
            writer = await connect()
            await writer.start_tls(_unchecked(), server_hostname=host)
            tls = writer.get_extra_info("ssl_object")
            return _out_of_date(tls, time.time()), _expiry(tls)
    except (TimeoutError, OSError, EOFError, ValueError, asyncio.LimitOverrunError):
        return None, None
    finally:
        if writer is not None:
            writer.transport.abort()


def _expiry(tls: Any) -> float | None:
    """The earliest end of the server's certificate and of the CA certificates it sends
    (roots aside, which no chain needs), or the server's alone where Python cannot tell."""
    connection = _connection(tls)
    if connection is None:
        certificate = tls.getpeercert()
        return ssl.cert_time_to_seconds(certificate["notAfter"]) if certificate else None
    sent = [_certificate(c.get_info()) for c in connection.get_unverified_chain() or []]
    ends = [c.not_after for c in sent[1:] if not c.root]
    return min([sent[0].not_after, *ends]) if sent else None
