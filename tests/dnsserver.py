"""A real DNS server on loopback, fed with the records ``mtasts-host dns`` prints."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

from mtasts_host import dns
from mtasts_host.config import load_config
from mtasts_host.store import build_snapshot

# Real senders look _mta-sts.<domain> up through /etc/resolv.conf, which allows no port: the
# server listens on port 53 of a loopback address of its own.
NAMESERVER = "127.53.0.1"


class _Zone(ZoneResolver):  # type: ignore[misc]
    """
    dnslib's zone resolver, answering as a recursive resolver would: a CNAME is followed
    within the zone (``_mta-sts`` delegation, RFC 8461 section 8.2), and a name that exists
    without the asked type is NODATA, not NXDOMAIN (glibc may drop the A answer when the AAAA
    query says the name does not exist).
    """

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = super().resolve(request, handler)
        qtype = QTYPE[request.q.qtype]
        for answer in list(reply.rr):
            if QTYPE[answer.rtype] == "CNAME" and qtype != "CNAME":
                target = answer.rdata.label
                reply.rr.extend(
                    rr for name, rtype, rr in self.zone if name == target and rtype == qtype
                )
        if reply.header.rcode == RCODE.NXDOMAIN and any(
            request.q.qname == name for name, _, _ in self.zone
        ):
            reply.header.rcode = RCODE.NOERROR
        return reply


@contextlib.contextmanager
def dns_server(zone: str, address: str = NAMESERVER, port: int = 53) -> Iterator[None]:
    """An authoritative DNS server on address:port (UDP and TCP) answering from zone text."""
    resolver = _Zone(zone)
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(resolver, address=address, port=port, tcp=tcp, logger=logger)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    try:
        yield
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()
            server.thread.join(10)


def zone_for(config_path: Path, address: str, extra_domains: tuple[str, ...] = ()) -> str:
    """What the operator publishes (``mtasts-host dns``), plus A records for the policy hosts;
    ``extra_domains`` get a TXT record and an address but no configured policy."""
    config = load_config(config_path)
    lines = [dns.to_zone(build_snapshot(config))]
    for domain in (*config.domains, *extra_domains):
        lines.append(f"mta-sts.{domain}. 60 IN A {address}")
    for domain in extra_domains:
        lines.append(f'_mta-sts.{domain}. 60 IN TXT "v=STSv1; id=unknown1"')
    return "\n".join(lines) + "\n"
