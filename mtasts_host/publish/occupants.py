"""
What else is at a name than the record wanted there: the records a CNAME may not sit beside,
and whether an answer is a wildcard's rather than the name's own (RFC 4592).
"""

from __future__ import annotations

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from .query import DnsError, Server, ask

_PROBE = "_mtasts-host-probe"
"""A label no zone holds, asked below a name to tell a wildcard's answer from the name's."""
_TYPES = ("A", "AAAA", "TXT", "CAA", "HTTPS", "SVCB", "MX", "SRV", "TLSA", "HINFO", "ANY")
"""What a name of a web or mail setup may hold, each asked for: knot answers ANY with one
RRset (RFC 8482 section 4.1), which may be the very TXT record a CNAME replaces."""
_RFC8482 = b"RFC8482"
"""The CPU field of the HINFO record a server answers ANY with instead (RFC 8482 section 4.2)."""


def others(where: Server, name: str, timeout: float | None) -> list[str]:
    """
    The records at ``name`` other than a CNAME, as ``TYPE data``: those of ``_TYPES``, and
    whatever else an ANY query shows (servers may show one type only, RFC 8482). Empty if
    they are a wildcard's: they are no records of the name (RFC 4592).
    """
    found = _records(where, name, timeout)
    if not found:
        return []
    kind, records = next(iter(found.items()))  # a wildcard answers with all its types alike
    if synthesised(where, name, kind, frozenset(records), timeout):
        return []
    return [record for records in found.values() for record in records]


def synthesised(
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
    return response.rcode() == dns.rcode.NOERROR and own(response, probe) == answer


def own(response: dns.message.Message, name: str) -> frozenset[str]:
    """What ``response`` answers at ``name`` itself, as ``TYPE data``."""
    owner = dns.name.from_text(name)
    return frozenset(
        f"{dns.rdatatype.to_text(rrset.rdtype)} {rdata.to_text()}"
        for rrset in response.answer
        if rrset.name == owner
        for rdata in rrset
    )


def _records(where: Server, name: str, timeout: float | None) -> dict[str, list[str]]:
    owner = dns.name.from_text(name)
    found: dict[str, list[str]] = {}
    for rdtype in _TYPES:
        try:
            response = ask(where, name, rdtype, timeout)
        except DnsError:
            continue  # some servers drop ANY queries
        for rrset in response.answer:
            kind = dns.rdatatype.to_text(rrset.rdtype)
            if rrset.name != owner or kind in ("CNAME", "RRSIG", "NSEC"):
                continue
            if kind == "HINFO" and all(getattr(r, "cpu", b"") == _RFC8482 for r in rrset):
                continue
            found.setdefault(kind, sorted(f"{kind} {rdata.to_text()}" for rdata in rrset))
    return found
