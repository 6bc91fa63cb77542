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
from ..names import split_host_port
from ..wire import name_text, txt_text
from .facts import Authority, Names, Txt

_MAX_CNAMES = 8


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


class Lookup:
    """
    Lookups for one run of the doctor, with a cache for that run.

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
        self.resolver.cache = dns.resolver.Cache()
        self.timeout = timeout

    def _reason(self, exc: dns.exception.DNSException) -> str:
        if isinstance(exc, dns.exception.Timeout):
            return f"no answer within {self.timeout:g} s"
        return str(exc) or type(exc).__name__

    async def _resolve(self, name: dns.name.Name | str, rdtype: str) -> dns.resolver.Answer:
        return await self.resolver.resolve(name, rdtype, raise_on_no_answer=False, search=False)

    async def txt(self, name: str) -> Txt:
        """The TXT records at ``name``, following CNAMEs wherever they lead."""
        target = dns.name.from_text(name)
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
        None if the zone's servers cannot be found.
        """
        try:
            zone = await dns.asyncresolver.zone_for_name(name, resolver=self.resolver)
            answer = await self._resolve(zone, "NS")
        except dns.exception.DNSException:
            return ()
        servers = sorted({name_text(rdata.target) for rdata in answer.rrset or ()})
        found = await asyncio.gather(*(self.addresses(server) for server in servers))
        asked = [
            (server, address)
            for server, addresses in zip(servers, found, strict=True)
            for address in addresses.values
        ]
        return tuple(
            await asyncio.gather(*(self._ask(name, server, address) for server, address in asked))
        )

    async def _ask(self, name: str, server: str, address: str) -> Authority:
        query = dns.message.make_query(name, "TXT")
        query.flags &= ~dns.flags.RD  # an authoritative answer, not a recursive one
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(
                query, address, timeout=self.timeout, port=self.port
            )
        except (dns.exception.DNSException, OSError) as exc:
            reason = self._reason(exc) if isinstance(exc, dns.exception.DNSException) else exc
            return Authority(server, address, error=str(reason))
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
