"""The policy as ``verify_url`` serves it: one plain GET, a fresh connection each time."""

from __future__ import annotations

import http.client
import socket
import ssl
from urllib.parse import urlsplit

from .. import __version__
from ..policy import MAX_BODY_SIZE
from ..tls import sender_context

USER_AGENT = f"mtasts-host-publish/{__version__}"


class FetchError(Exception):
    """The URL gave no policy body; the message says why, in one line."""


def fetch(
    url: str,
    *,
    connect: tuple[str, int] | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = 10.0,
) -> bytes:
    """
    GET ``url`` and return the body of a 200 answer, never following a redirect. A new
    connection each time, closed afterwards, so that a balancer may send each to another
    replica.

    Args:
        connect: connect to this address and port instead of the URL's, keeping the URL's
            host name in ``Host`` and, for https, in SNI and the certificate check.
        context: for https; the system's trust store by default.

    Raises:
        FetchError: no connection, no TLS, or an answer that is not a 200 with a body.
    """
    try:
        parts = urlsplit(url)
        given = parts.port
    except ValueError as exc:
        raise FetchError(f"not a usable URL: {str(exc).lower()}") from None
    https = parts.scheme == "https"
    host = parts.hostname or ""
    if not host:
        raise FetchError("not a usable URL: no host in it")
    default = 443 if https else 80
    port = default if given is None else given
    address = connect or (host, port)
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    headers = {
        "Host": _host_header(host, port, default),
        "User-Agent": USER_AGENT,
        "Connection": "close",
        "Accept": "*/*",
    }
    try:
        sock = socket.create_connection(address, timeout=timeout)
        if https:
            sock = (context or sender_context()).wrap_socket(sock, server_hostname=host)
        connection.sock = sock  # http.client then skips its own connect()
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers=headers)
        response = connection.getresponse()
        body = response.read(MAX_BODY_SIZE + 1)
    except ssl.SSLCertVerificationError as exc:
        message = f"the certificate of {host} fails verification: {exc.verify_message}"
        raise FetchError(message) from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(_reason(exc, address, timeout)) from None
    finally:
        connection.close()
    if response.status != 200:
        raise FetchError(f"HTTP {response.status} {response.reason}".rstrip())
    return body


def _host_header(host: str, port: int, default: int) -> str:
    """As senders send it: the port only when it is not the scheme's (RFC 9110 section 7.2)."""
    name = f"[{host}]" if ":" in host else host
    return name if port == default else f"{name}:{port}"


def _reason(exc: Exception, address: tuple[str, int], timeout: float) -> str:
    where = f"{address[0]}:{address[1]}"
    if isinstance(exc, TimeoutError):
        return f"no answer from {where} within {timeout:g} s"
    if isinstance(exc, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS with {where} failed: {exc.reason or exc}"
    if isinstance(exc, OSError):
        return f"{(exc.strerror or str(exc)).lower()} ({where})"
    return f"a broken HTTP answer from {where} ({type(exc).__name__})"
