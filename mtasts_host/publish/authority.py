"""
The authoritative DNS, read through dnspython: the zone of each name (by SOA lookup), the
records at a name, and the zone's name servers, asked directly and without recursion, so
that no cache shows an old value.
"""

from __future__ import annotations

import socket

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
import dns.resolver

from .._resolver import system_resolver
from ..dns import STS_VERSION
from ..names import STS_PREFIX
from ..wire import name_text, txt_text
from . import occupants
from .plan import Current, normal
from .query import DnsError, Server, Unreachable, ask

NAMESERVER_PORT = 53
"""Where the zone's other name servers answer."""
READERS = 16
"""Records read at once, before a run's updates (step 1) and after (step 4): a run reads
every record of every domain, several queries each, and one at a time from a primary 30 ms
away 5,000 domains took 25 minutes. Reads need no order (the updates keep theirs), and 16
queries at once are nothing to knot or BIND."""


class Occupied(DnsError):
    """The name of a wanted CNAME holds records a CNAME may not sit beside."""


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
    raise DnsError(f"zone not found for {name} at {where} ({_why(response)})")


def _why(response: dns.message.Message) -> str:
    """Why an answer to an SOA query names no zone: its rcode, or the zone cut it refers to."""
    rcode = response.rcode()
    if rcode != dns.rcode.NOERROR:
        return dns.rcode.to_text(rcode)
    if not response.flags & dns.flags.AA:
        for rrset in response.authority:
            if rrset.rdtype == dns.rdatatype.NS:
                hosts = ", ".join(sorted(name_text(rdata.target) for rdata in rrset))
                return f"it delegates {name_text(rrset.name)} to {hosts}, and holds no zone of it"
        return "it does not answer with authority"
    return "no SOA in its answer"


def read(where: Server, name: str, rdtype: str, timeout: float | None = None) -> Current | None:
    """
    What ``where`` holds at ``name``: the RRset of ``rdtype``, or a CNAME there, or (for a
    wanted CNAME at an ``_mta-sts`` name) a TXT RRset it would replace; None if there is
    nothing of the kind.

    Raises:
        DnsError: the server refused or failed, or answered without authority.
        Occupied: (for a wanted CNAME) the name holds records of other types, such as the
            A record of a policy host.
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
            if not response.flags & dns.flags.AA:
                # A cache's copy (a resolver named as the server), not the zone's record.
                raise DnsError(f"{where} does not answer for {name} {rdtype} with authority")
            if occupants.synthesised(where, name, rdtype, occupants.own(response, name), timeout):
                break  # a wildcard's answer: the name holds nothing of its own
            # Sorted: servers may give an RRset's records in any order, another each time
            # (BIND's default rrset-order is random), and two reads must compare equal.
            pairs = sorted((normal(type, _value(rdata)), rdata.to_text()) for rdata in rrset)
            return Current(
                type,
                rrset.ttl,
                tuple(value for value, _ in pairs),
                tuple(text for _, text in pairs),
            )
    if rdtype == "CNAME":
        sts = name.startswith(STS_PREFIX)
        found = read(where, name, "TXT", timeout) if sts else None
        if found is not None:
            # Our TXT record there, as before a domain joined a txt_cname group, is replaced;
            # one of another kind (a site verification) is someone else's, kept as at any
            # other name, and so in the way.
            foreign = [f'TXT "{value}"' for value in found.values if not _ours(value)]
            if foreign:
                them = "it" if len(foreign) == 1 else "them"
                raise Occupied(
                    f"{name} holds {', '.join(foreign)}, which a CNAME may not sit beside "
                    f"(RFC 1034 section 3.6.2); not replaced: delete {them} by hand (senders "
                    "ignore it), or drop the domain's txt_cname"
                )
        # Records of other types (our TXT records aside) are someone else's. A CNAME may not
        # sit beside them (RFC 1034 section 3.6.2), and knot and BIND drop one added there
        # without a word (RFC 2136 section 3.4.2.2), after deleting the TXT record it replaces.
        others = [
            other
            for other in occupants.others(where, name, timeout)
            if found is None or not other.startswith("TXT ")
        ]
        if others:
            # Deleting them would move every sender's policy fetches at once.
            them = "it" if len(others) == 1 else "them"
            how = (
                f"delete {them} by hand, or drop the domain's txt_cname"
                if sts
                else f"delete {them} by hand once the CNAME's target serves the policy, or "
                "drop the domain's cname"
            )
            raise Occupied(
                f"{name} holds {', '.join(others)}, which a CNAME may not sit beside "
                f"(RFC 1034 section 3.6.2); not replaced: {how}"
            )
        return found
    return None


def _ours(value: str) -> bool:
    return value.startswith(STS_VERSION)


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


def check_resolver() -> None:
    """
    Check that dnspython can configure the system's resolver, through which ``primary_for``
    finds each zone's name servers: once a run, rather than failing for every name.

    Raises:
        NoSystemResolver: it cannot; the message says why.
    """
    system_resolver(dns.resolver.get_default_resolver)


def primary_for(name: str, known: dict[str, Server] | None = None) -> Server:
    """
    Without a ``server``: a name server of the zone holding ``name``, found through the
    system's resolver, to read from directly. The zone's primary (its SOA MNAME) comes
    first if it is one of its name servers, then the others by name; the first that
    answers for the zone with authority is the one. ``known`` keeps it by zone, so that
    each zone's servers are tried once in a run, and one that does not answer waited for
    once.

    Raises:
        DnsError: the zone or its name servers cannot be found.
        Unreachable: none of them answers for the zone.
    """
    try:
        zone = dns.resolver.zone_for_name(name)
        answer = dns.resolver.resolve(zone, "NS", search=False)
    except (dns.exception.DNSException, OSError) as exc:
        raise DnsError(f"zone not found for {name} by the system resolver: {exc}") from None
    known = {} if known is None else known
    if name_text(zone) not in known:
        known[name_text(zone)] = _answering(zone, answer)
    return known[name_text(zone)]


def _answering(zone: dns.name.Name, answer: dns.resolver.Answer) -> Server:
    """The first of the zone's name servers (``answer``) that answers for it with authority."""
    hosts = sorted(name_text(rdata.target) for rdata in answer)
    primary = _mname(zone)
    if primary in hosts:
        hosts.remove(primary)
        hosts.insert(0, primary)
    lame: DnsError | None = None
    down: Unreachable | None = None
    for host in hosts:
        for address in _resolved(host):
            where = Server(address, NAMESERVER_PORT, host)
            try:
                response = ask(where, zone.to_text(), "SOA")
            except Unreachable as exc:
                down = exc
                continue
            if response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA:
                return where
            why = f"with authority ({dns.rcode.to_text(response.rcode())})"
            lame = DnsError(f"{where} does not answer for {name_text(zone)} {why}")
    # One that answers without authority for the zone says more than one that is down.
    raise lame or down or DnsError(f"no name server of {name_text(zone)} resolves")


def _mname(zone: dns.name.Name) -> str | None:
    """The zone's primary name server, as its SOA record names it."""
    try:
        answer = dns.resolver.resolve(zone, "SOA", search=False)
    except (dns.exception.DNSException, OSError):
        return None
    return name_text(answer[0].mname)


def _resolved(host: str) -> list[str]:
    """The first addresses of ``host`` the system's resolver finds: IPv4, else IPv6."""
    for rdtype in ("A", "AAAA"):
        try:
            return [
                str(rdata.address) for rdata in dns.resolver.resolve(host, rdtype, search=False)
            ]
        except (dns.exception.DNSException, OSError):
            continue
    return []
