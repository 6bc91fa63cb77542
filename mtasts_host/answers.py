"""
What a policy host answers, as a pure function of the request: the rules of RFC 8461 and the
bytes on the wire, with no ASGI in sight.
"""

from __future__ import annotations

from typing import NamedTuple

from . import names
from .policy import POLICY_PATH
from .store import Snapshot

# RFC 8461 section 8.2 suggests 60 s for proxies in front of a multi-domain policy host; it
# bounds how long a proxy may serve an old policy after a reload.
CACHE_MAX_AGE = 60
CACHE_CONTROL = b"max-age=%d" % CACHE_MAX_AGE

Headers = tuple[tuple[bytes, bytes], ...]


class Answer(NamedTuple):
    """A complete response. ``domain`` is the policy domain asked for, if it is configured."""

    status: int
    headers: Headers
    body: bytes
    domain: str | None = None


def text_headers(body: bytes, cache_control: bytes) -> Headers:
    """The headers of every answer on a policy host, the policy or an error: plain text."""
    return (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
        (b"cache-control", cache_control),
        (b"x-content-type-options", b"nosniff"),
    )


def _plain(status: int, text: str, *extra: tuple[bytes, bytes]) -> Answer:
    body = text.encode() + b"\n"
    return Answer(status, (*text_headers(body, b"no-store"), *extra), body)


NO_POLICY = _plain(404, "No MTA-STS policy is served for this host.")
NOT_FOUND = _plain(404, f"Not found. The MTA-STS policy is at {POLICY_PATH}.")
NOT_ALLOWED = _plain(405, "Method not allowed.", (b"allow", b"GET, HEAD"))
BAD_HOST = _plain(400, "Bad request: more than one Host header.")
NO_HOST = _plain(400, "Bad request: no Host header.")

# The headers of a policy depend on its length alone: at most 64 KiB of them, made once.
_policy_headers: dict[int, Headers] = {}


def policy_domain(host: bytes) -> str | None:
    """The policy domain a Host header asks for (see ``names.policy_domain_of_host``)."""
    host = host.strip(b" \t").lower()
    if (
        host.startswith(b"mta-sts.")
        and host.isascii()
        and b":" not in host
        and not host.endswith(b".")
    ):
        return host[8:].decode()  # the usual Host header, with nothing to strip
    try:
        text = host.decode("ascii") if host.isascii() else host.decode("utf-8")
    except UnicodeDecodeError:
        return "" if host.startswith(names.POLICY_HOST_PREFIX.encode()) else None
    return names.policy_domain_of_host(text)


def answer(snapshot: Snapshot, domain: str, path: str, method: str) -> Answer:
    """
    The answer on the policy host of ``domain`` (as ``policy_domain`` found it). Only a GET
    or HEAD of the policy path of a configured domain gets the policy, always a plain 200:
    senders accept nothing else (RFC 8461 section 3.3). There is no redirect, no parent
    domain fallback (section 3.4), and conditional and range headers are not looked at.
    ``path`` is the path below any mount point.
    """
    served = snapshot.served.get(domain)
    if path != POLICY_PATH:
        refused = NOT_FOUND
    elif method != "GET" and method != "HEAD":
        refused = NOT_ALLOWED
    elif served is None:
        return NO_POLICY
    else:
        body = served.body
        headers = _policy_headers.get(len(body))
        if headers is None:
            headers = _policy_headers[len(body)] = text_headers(body, CACHE_CONTROL)
        return Answer(200, headers, body, domain)
    return refused if served is None else refused._replace(domain=domain)
