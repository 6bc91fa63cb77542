"""
One DNS query to one server, asked directly and without recursion: the servers, the query,
and the errors of the publisher's DNS.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.inet
import dns.message
import dns.query

TIMEOUT = 5.0
"""Seconds for one query."""
ATTEMPTS = 3
"""Datagrams sent for one query within its timeout, as a resolver retransmits: a run of
thousands of domains asks tens of thousands of questions, and one datagram lost on the way
to a remote primary failed the whole run (and the next, and the one after)."""


class DnsError(Exception):
    """A server gave no usable answer; the message says which and why, in one line."""


class Unreachable(DnsError):
    """The server did not answer at all: nothing more can be done with it in this run."""


@dataclass(frozen=True, slots=True)
class Server:
    """One DNS server, by address."""

    address: str
    port: int
    name: str = ""

    def __str__(self) -> str:
        where = f"[{self.address}]:{self.port}" if ":" in self.address else self.at()
        return f"{self.name} ({where})" if self.name else where

    def at(self) -> str:
        return f"{self.address}:{self.port}"


def server(host: str, port: int) -> Server:
    """
    The server of the ``publish`` block, its name resolved by the system.

    Raises:
        Unreachable: the name does not resolve.
    """
    try:
        info = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except OSError as exc:
        raise Unreachable(f"server {host}: {(exc.strerror or str(exc)).lower()}") from None
    address = str(info[0][4][0])
    return Server(address, port, "" if address == host else host)


def ask(where: Server, name: str, rdtype: str, timeout: float | None = None) -> dns.message.Message:
    """
    One query to ``where``, without recursion, over UDP (TCP if truncated), for at most
    ``timeout`` seconds (``TIMEOUT`` by default), sent ``ATTEMPTS`` times in that time if
    unanswered.

    Raises:
        Unreachable: no answer in time, or the connection was refused.
    """
    timeout = TIMEOUT if timeout is None else timeout
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    try:
        # One socket for every attempt: a late answer to the first still counts.
        udp = socket.socket(dns.inet.af_for_address(where.address), socket.SOCK_DGRAM)
    except OSError as exc:
        raise Unreachable(f"server {where} unreachable: {reason(exc)}") from None
    with udp:
        udp.setblocking(False)
        for _ in range(ATTEMPTS):
            try:
                response, _ = dns.query.udp_with_fallback(
                    query, where.address, timeout / ATTEMPTS, where.port, udp_sock=udp
                )
            except dns.exception.Timeout:
                continue
            except (OSError, dns.exception.DNSException) as exc:
                raise Unreachable(f"server {where} unreachable: {reason(exc)}") from None
            return response
    raise Unreachable(f"server {where} unreachable: no answer within {timeout:g} s")


def reason(exc: Exception) -> str:
    """Why a server could not be reached, in a few words: the system's, for a socket error."""
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower()
    return str(exc) or type(exc).__name__
