"""
DNS lookups, through dnspython: the system's resolver, or one server given as HOST:PORT.
Every lookup is bounded by the timeout and returns what it saw, never raises.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncquery
import dns.asyncresolver
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.resolver

from .._digits import decimal
from ..names import MAX_NAME, split_host_port
from ..wire import name_text, txt_text
from .facts import Authority, Names, Txt
from .tlsprobe import no_route

_MAX_CNAMES = 8
_CACHED = 1024
"""Answers a run's resolver keeps, the least recently used dropped first: room for what the
domains checked at once share (their zones' SOA and NS, MX hosts), each answer a whole DNS
message. Kept for the whole run, every answer took some 25 KB a domain: 340 MB at 10,000."""
_REFUSALS = {
    dns.rcode.SERVFAIL: (
        "the resolver answers SERVFAIL: the name servers of the zone do not answer for it "
        "(a lame or broken delegation), or its DNSSEC signatures do not validate; check the "
        "zone's NS and DS records and its name servers"
    ),
    dns.rcode.REFUSED: (
        "the resolver refuses the query: it resolves no such name for this machine (a name "
        "server without the zone, or one that offers no recursion to this address); give "
        "--resolver one that does"
    ),
}
"""What the resolver's error answer means, and what to do, when every server asked gave it."""


def resolver_address(text: str) -> tuple[str, int]:
    """
    Parse ``--resolver``: an IP address with an optional port (``127.0.0.1:5353``,
    ``[::1]:5353``, ``::1``); the port defaults to 53.

    Raises:
        ValueError: the text is not such an address.
    """
    try:
        host, port = split_host_port(text)
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(
            "expected an IP address and an optional port, like 127.0.0.1:5353"
        ) from None
    number = decimal("53" if port is None else port, 1, 65535)
    if number is None:
        raise ValueError("expected a port 1..65535 after the address")
    return str(address), number


def _untangle(exc: dns.exception.DNSException) -> None:
    """
    Break the reference cycle dnspython leaves in a lookup where a server did not answer:
    the errors it raises with (NoNameservers, LifetimeTimeout) are its resolution's list, in
    which each server's exception holds a traceback, which holds the frame that holds the
    resolution. About 70 objects a lookup, that only the cyclic collector frees: at 100,000
    domains, full collections long enough to stall the policy answers of ``serve``. What
    the errors say is kept, as ``Lookup._reason`` reads it; where they were raised is not.
    """
    for error in exc.kwargs.get("errors", ()):
        # From Python 3.12, asyncio.wait_for chains a TimeoutError and a CancelledError to a
        # server's timeout, each with a traceback of its own: the whole chain is cleared.
        chain: list[BaseException] = []
        cause = error[3]
        while isinstance(cause, BaseException) and cause not in chain:
            chain.append(cause)
            cause.__traceback__ = None
            cause = cause.__cause__ or cause.__context__


class Lookup:
    """
    Lookups for one run of the doctor, with a cache for that run (of ``_CACHED`` answers).

    Args:
        nameserver: the server for every query, or None for the system's resolver.
        timeout: the bound of each lookup, in seconds.

    Raises:
        dns.resolver.NoResolverConfiguration: no nameserver given and no system resolver.
    """

    def __init__(self, nameserver: tuple[str, int] | None, timeout: float) -> None:
        if nameserver is None:
            self.resolver = dns.asyncresolver.Resolver()
            self.port = 53
        else:
            self.resolver = dns.asyncresolver.Resolver(configure=False)
            self.resolver.nameservers = [nameserver[0]]
            self.resolver.port = self.port = nameserver[1]
        self.resolver.lifetime = timeout
        self.resolver.timeout = min(timeout, 2.0)  # then retried, within the lifetime
        self.resolver.cache = dns.resolver.LRUCache(_CACHED)
        self.timeout = timeout

    def _reason(self, exc: dns.exception.DNSException) -> str:
        """Why a lookup through the resolver failed, and, where that tells, what to do."""
        if isinstance(exc, dns.exception.Timeout):
            return f"no answer within {self.timeout:g} s; check the domain's DNS"
        if isinstance(exc, dns.resolver.NoNameservers):
            # dnspython's own text names its classes ("Server Do53:192.0.2.1@53 answered
            # SERVFAIL"), and says nothing of what the answer means.
            errors = exc.kwargs.get("errors", ())
            rcodes = {error[4].rcode() if error[4] else None for error in errors}
            if len(rcodes) == 1 and (rcode := rcodes.pop()) in _REFUSALS:
                return _REFUSALS[rcode]
            if errors and all(isinstance(error[3], dns.message.ChainTooLong) for error in errors):
                return f"its CNAMEs loop, or chain more than {dns.message.MAX_CHAIN} times"
        return str(exc) or type(exc).__name__

    async def _resolve(self, name: dns.name.Name | str, rdtype: str) -> dns.resolver.Answer:
        try:
            return await self.resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)
        except dns.exception.DNSException as exc:
            _untangle(exc)
            raise

    async def txt(self, name: str) -> Txt:
        """The TXT records at ``name``, following CNAMEs wherever they lead."""
        try:
            target = dns.name.from_text(name)
        except dns.name.NameTooLong:
            # _smtp._tls.<domain> of a policy domain of 243 or 244 characters, which the
            # config allows: no sender can look a record up there.
            error = f"it is {len(name)} characters long, more than a DNS name can hold ({MAX_NAME})"
            return Txt(name, error=error)
        for _ in range(_MAX_CNAMES):
            try:
                answer = await self._resolve(target, "TXT")
            except dns.resolver.NXDOMAIN as exc:
                # A CNAME to a name that does not exist: the chain ends there, not at name.
                return Txt(name, final=name_text(exc.canonical_name))
            except dns.exception.DNSException as exc:
                return Txt(name, final=name_text(target), error=self._reason(exc))
            if answer.rrset is not None:
                values = tuple(txt_text(rdata.strings) for rdata in answer.rrset)
                return Txt(name, values, name_text(answer.canonical_name))
            if answer.canonical_name == target:
                return Txt(name, final=name_text(target))
            # A CNAME whose target the server did not answer for: ask for the target.
            target = answer.canonical_name
        return Txt(name, final=name_text(target), error=f"more than {_MAX_CNAMES} CNAMEs")

    async def mx(self, domain: str) -> Names:
        """The MX hosts of ``domain``, most preferred first; ``.`` for a null MX."""
        try:
            answer = await self._resolve(domain, "MX")
        except dns.resolver.NXDOMAIN:
            return Names(error=f"{domain} does not exist (NXDOMAIN)")
        except dns.exception.DNSException as exc:
            return Names(error=self._reason(exc))
        exchanges = sorted(answer.rrset or (), key=lambda rdata: rdata.preference)
        return Names(tuple(dict.fromkeys(name_text(rdata.exchange) for rdata in exchanges)))

    async def addresses(self, host: str) -> Names:
        """The IPv4 and IPv6 addresses of ``host``."""
        values: list[str] = []
        errors = []
        for result in await asyncio.gather(
            self._resolve(host, "A"), self._resolve(host, "AAAA"), return_exceptions=True
        ):
            if isinstance(result, dns.resolver.Answer):
                values.extend(rdata.address for rdata in result.rrset or ())
            elif isinstance(result, dns.exception.DNSException):
                if not isinstance(result, dns.resolver.NXDOMAIN):
                    errors.append(self._reason(result))
            else:
                raise result
        if errors and not values:
            return Names(error=errors[0])
        return Names(tuple(values))

    async def authorities(self, name: str) -> tuple[Authority, ...]:
        """
        What every authoritative server of the zone holding ``name`` answers for its TXT
        records, each asked directly on port 53 (or the port of the one nameserver given).
        None if the zone's servers cannot be found. IPv6 addresses without a route from here
        are left out, as the connection probes skip them: most zones have some, and a host
        without IPv6 would otherwise find every one of them silent.
        """
        try:
            zone = await dns.asyncresolver.zone_for_name(name, resolver=self.resolver)
            answer = await self._resolve(zone, "NS")
        except dns.exception.DNSException as exc:
            _untangle(exc)
            return ()
        servers = sorted({name_text(rdata.target) for rdata in answer.rrset or ()})
        found = await asyncio.gather(*(self.addresses(server) for server in servers))
        asked = [
            (server, address)
            for server, addresses in zip(servers, found, strict=True)
            for address in addresses.values
        ]
        answers = await asyncio.gather(
            *(self._ask(name, server, address) for server, address in asked)
        )
        return tuple(answer for answer in answers if answer is not None)

    async def _ask(self, name: str, server: str, address: str) -> Authority | None:
        query = dns.message.make_query(name, "TXT")
        query.flags &= ~dns.flags.RD  # an authoritative answer, not a recursive one
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(
                query, address, timeout=self.timeout, port=self.port
            )
        except OSError as exc:
            if no_route(exc, address):
                return None
            return Authority(server, address, error=str(exc))
        except dns.exception.Timeout:
            return Authority(server, address, error=f"no answer within {self.timeout:g} s")
        except dns.exception.DNSException as exc:
            return Authority(server, address, error=str(exc) or type(exc).__name__)
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:
            return Authority(server, address)
        if rcode != dns.rcode.NOERROR:
            return Authority(server, address, error=dns.rcode.to_text(rcode))
        values = tuple(
            txt_text(rdata.strings)
            for rrset in response.answer
            if rrset.rdtype == dns.rdatatype.TXT
            for rdata in rrset
        )
        return Authority(server, address, values)
