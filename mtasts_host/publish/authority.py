"""
The authoritative DNS, read through dnspython: the zone of each name (by SOA lookup), the
records at a name, and the zone's name servers, asked directly and without recursion, so
that no cache shows an old value.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from ..names import STS_PREFIX
from ..wire import name_text, txt_text
from .plan import Current, normal

TIMEOUT = 5.0
"""Seconds for one query."""
_PROBE = "_mtasts-host-probe"
"""A label no zone holds, asked below a name to tell a wildcard's answer from the name's."""
NAMESERVER_PORT = 53
"""Where the zone's other name servers answer."""


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
    ``timeout`` seconds (``TIMEOUT`` by default).

    Raises:
        Unreachable: no answer in time, or the connection was refused.
    """
    timeout = TIMEOUT if timeout is None else timeout
    query = dns.message.make_query(name, rdtype)
    query.flags &= ~dns.flags.RD
    try:
        response, _ = dns.query.udp_with_fallback(
            query, where.address, timeout=timeout, port=where.port
        )
    except dns.exception.Timeout:
        raise Unreachable(f"server {where} unreachable: no answer within {timeout:g} s") from None
    except (OSError, dns.exception.DNSException) as exc:
        raise Unreachable(f"server {where} unreachable: {reason(exc)}") from None
    return response


def reason(exc: Exception) -> str:
    """Why a server could not be reached, in a few words: the system's, for a socket error."""
    if isinstance(exc, OSError):
        return (exc.strerror or str(exc)).lower()
    return str(exc) or type(exc).__name__


def zone_of(where: Server, name: str) -> str:
    """
    The zone that holds ``name`` on ``where``: the owner of the SOA record its answer for
    ``name SOA`` carries (in the answer at an apex, else in the authority section). A name
    that holds a CNAME is no apex, and the server's answer follows the CNAME, so its parent
    is asked instead.

    Raises:
        DnsError: the server is not authoritative for any zone holding ``name``.
    """
    asked = dns.name.from_text(name)
    while True:
        response = ask(where, asked.to_text(), "SOA")
        rcode = response.rcode()
        if rcode not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            break
        if any(r.name == asked and r.rdtype == dns.rdatatype.CNAME for r in response.answer):
            if asked.parent() == dns.name.root:
                break
            asked = asked.parent()
            continue
        if response.flags & dns.flags.AA:
            for rrset in (*response.answer, *response.authority):
                if rrset.rdtype == dns.rdatatype.SOA:
                    return name_text(rrset.name)
        break
    why = dns.rcode.to_text(rcode) if rcode != dns.rcode.NOERROR else "no SOA in its answer"
    raise DnsError(f"zone not found for {name} at {where} ({why})")


def read(where: Server, name: str, rdtype: str, timeout: float | None = None) -> Current | None:
    """
    What ``where`` holds at ``name``: the RRset of ``rdtype``, or a CNAME there, or (for a
    wanted CNAME at an ``_mta-sts`` name) a TXT RRset it would replace; None if there is
    nothing of the kind.

    Raises:
        DnsError: the server refused or failed, or (for a wanted CNAME) the name holds
            records of other types, such as the A record of a policy host.
    """
    response = ask(where, name, rdtype, timeout)
    rcode = response.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return None
    if rcode != dns.rcode.NOERROR:
        raise DnsError(f"{where} answers {dns.rcode.to_text(rcode)} for {name} {rdtype}")
    owner = dns.name.from_text(name)
    for rrset in response.answer:
        type = dns.rdatatype.to_text(rrset.rdtype)
        if rrset.name == owner and type in (rdtype, "CNAME"):
            if _synthesised(where, name, rdtype, _own(response, name), timeout):
                break  # a wildcard's answer: the name holds nothing of its own
            return Current(
                type,
                rrset.ttl,
                tuple(normal(type, _value(rdata)) for rdata in rrset),
                tuple(rdata.to_text() for rdata in rrset),
            )
    if rdtype == "CNAME":
        if name.startswith(STS_PREFIX):
            # A TXT record there, as before a domain joined a txt_cname group, is replaced.
            found = read(where, name, "TXT", timeout)
            if found is not None:
                return found
        others = _others(where, name, timeout)
        if others:
            # Records someone else put there (RFC 1034 section 3.6.2: a CNAME stands alone):
            # deleting them would move every sender's policy fetches at once.
            them = "it" if len(others) == 1 else "them"
            raise DnsError(
                f"{name} holds {', '.join(others)}, which a CNAME may not sit beside "
                f"(RFC 1034 section 3.6.2); not replaced: delete {them} by hand once the "
                "CNAME's target serves the policy, or drop the domain's cname"
            )
    return None


def _others(where: Server, name: str, timeout: float | None) -> list[str]:
    """
    The records at ``name`` other than a CNAME, as ``TYPE data``: its addresses, its TXT
    records, and whatever else an ANY query shows (servers may show one type only, RFC
    8482). None if they are a wildcard's: they are no records of the name (RFC 4592).
    """
    found = _records(where, name, timeout)
    if not found or found == _records(where, f"{_PROBE}.{name}", timeout):
        return []  # a wildcard's (see _synthesised)
    return [record for records in found.values() for record in records]


def _synthesised(
    where: Server, name: str, rdtype: str, answer: frozenset[str], timeout: float | None
) -> bool:
    """
    Whether ``answer``, what ``where`` answers for ``name`` and ``rdtype``, comes from a
    wildcard (RFC 4592 section 4.1), whose records are none of the name's own and which an
    update's prerequisites never see. A name below it then gets the same answer; below a
    name of the zone there is nothing (NXDOMAIN, or an empty answer), or another wildcard's.
    """
    probe = f"{_PROBE}.{name}"
    try:
        response = ask(where, probe, rdtype, timeout)
    except (DnsError, dns.exception.DNSException):
        return False  # no answer, or a name too long to ask: taken as the name's own
    return response.rcode() == dns.rcode.NOERROR and _own(response, probe) == answer


def _own(response: dns.message.Message, name: str) -> frozenset[str]:
    """What ``response`` answers at ``name`` itself, as ``TYPE data``."""
    owner = dns.name.from_text(name)
    return frozenset(
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
        for rrset in response.answer
        if rrset.name == owner
        for rdata in rrset
    )


def _records(where: Server, name: str, timeout: float | None) -> dict[str, list[str]]:
    try:
        owner = dns.name.from_text(name)
    except dns.exception.DNSException:
        return {}  # a probe's name too long to ask
    found: dict[str, list[str]] = {}
    for rdtype in ("A", "AAAA", "TXT", "ANY"):
        try:
            response = ask(where, name, rdtype, timeout)
        except (DnsError, dns.exception.DNSException):
            continue  # some servers drop ANY queries; a probe's name may be too long
        for rrset in response.answer:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            # HINFO is what servers answer ANY with instead (RFC 8482 section 4.2).
            if rrset.name == owner and kind not in ("CNAME", "RRSIG", "NSEC", "HINFO"):
                found.setdefault(kind, sorted(f"{kind} {rdata.to_text()}" for rdata in rrset))
    return found


def _value(rdata: object) -> str:
    strings = getattr(rdata, "strings", None)
    if strings is not None:
        return txt_text(strings)
    return name_text(getattr(rdata, "target"))  # noqa: B009 (a CNAME, by elimination)


def nameservers(where: Server, zone: str) -> list[Server]:
    """
    The zone's name servers other than ``where``, each address on ``NAMESERVER_PORT``; the
    addresses as ``where`` knows them, else as the system resolves them.
    """
    try:
        response = ask(where, zone, "NS")
    except DnsError:
        return []
    hosts = sorted(
        name_text(rdata.target)
        for rrset in response.answer
        if rrset.rdtype == dns.rdatatype.NS
        for rdata in rrset
    )
    found = []
    for host in hosts:
        for address in _addresses(where, host):
            if address != where.address:
                found.append(Server(address, NAMESERVER_PORT, host))
    return found


def _addresses(where: Server, host: str) -> list[str]:
    addresses = []
    for rdtype in ("A", "AAAA"):
        try:
            response = ask(where, host, rdtype)
        except DnsError:
            break
        addresses += [
            rdata.address
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.from_text(rdtype)
            for rdata in rrset
        ]
    if addresses:
        return addresses
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, NAMESERVER_PORT)})
    except OSError:
        return []


def primary_for(name: str) -> Server:
    """
    Without a ``server``: the first name server of the zone holding ``name``, found through
    the system's resolver, to read from directly.

    Raises:
        DnsError: the zone or its name servers cannot be found.
    """
    try:
        zone = dns.resolver.zone_for_name(name)
        answer = dns.resolver.resolve(zone, "NS", search=False)
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsError(f"zone not found for {name} by the system resolver: {exc}") from None
    for host in sorted(name_text(rdata.target) for rdata in answer):
        for rdtype in ("A", "AAAA"):
            try:
                addresses = dns.resolver.resolve(host, rdtype, search=False)
            except (dns.exception.DNSException, OSError):
                continue
            return Server(str(addresses[0].address), NAMESERVER_PORT, host)
    raise DnsError(f"no name server of {name_text(zone)} resolves")
