"""DNS lookups, against the world's knot servers."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import re
from typing import Any

import dns.asyncquery
import dns.message
import pytest

from mtasts_host.doctor import resolver_address
from mtasts_host.doctor.dnsprobe import Lookup
from mtasts_host.doctor.facts import Authority, Names, Txt

from ..processes import free_port
from .conftest import World, cyclic_garbage
from .world import DNS1, DNS2, SILENT_DNS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("127.0.0.1", ("127.0.0.1", 53), id="ipv4"),
        pytest.param("127.0.0.1:5353", ("127.0.0.1", 5353), id="ipv4-port"),
        pytest.param("::1", ("::1", 53), id="ipv6"),
        pytest.param("[::1]:5353", ("::1", 5353), id="ipv6-port"),
        pytest.param("[2001:DB8::1]", ("2001:db8::1", 53), id="ipv6-brackets"),
    ],
)
def test_resolver_addresses(text: str, expected: tuple[str, int]) -> None:
    assert resolver_address(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "dns.example",
            "expected an IP address and an optional port, like 127.0.0.1:5353",
            id="name",
        ),
        pytest.param("127.0.0.1:0", "expected a port 1..65535 after the address", id="port-0"),
        pytest.param("127.0.0.1:dns", "expected a port 1..65535 after the address", id="port-name"),
        pytest.param(
            "127.0.0.1:" + "5" * 5000, "expected a port 1..65535 after the address", id="port-huge"
        ),
        pytest.param(
            "[::1", "expected an IP address and an optional port, like 127.0.0.1:5353", id="bracket"
        ),
    ],
)
def test_bad_resolver_addresses(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        resolver_address(text)


def test_cnames_are_followed_into_another_zone(world: World) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    txt = asyncio.run(lookup.txt("_mta-sts.hosted1.test"))
    assert txt.target == "_mta-sts.provider.example"
    assert len(txt.records) == 1
    assert txt.records[0].startswith("v=STSv1; id=")


def test_split_strings_are_joined_and_names_lower_cased(world: World) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    txt = asyncio.run(lookup.txt("_mta-sts.split.test"))
    (record,) = txt.records
    assert record.startswith("v=STSv1; id=")
    assert record.endswith("; ext=1")
    assert asyncio.run(lookup.mx("split.test")) == Names(("mx.split.test",))


def test_missing_names_are_no_error(world: World) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    assert asyncio.run(lookup.txt("_mta-sts.missing.test")) == Txt(
        "_mta-sts.missing.test", final="_mta-sts.missing.test"
    )
    assert asyncio.run(lookup.addresses("mta-sts.missing.test")) == Names()
    assert asyncio.run(lookup.mx("missing.test")) == Names(
        error="missing.test does not exist (NXDOMAIN)"
    )


def test_a_cname_to_a_missing_name_ends_there(world: World) -> None:
    # The server answers NXDOMAIN with the chain: the doctor must say where it leads, as
    # no TXT record can be published beside the CNAME.
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    assert asyncio.run(lookup.txt("_mta-sts.dangling.test")) == Txt(
        "_mta-sts.dangling.test", final="gone.test"
    )


@pytest.mark.parametrize(
    ("name", "message"),
    [
        pytest.param(
            "_mta-sts.broken.test",
            "the resolver answers SERVFAIL: the name servers of the zone do not answer for it "
            "(a lame or broken delegation), or its DNSSEC signatures do not validate; check the "
            "zone's NS and DS records and its name servers",
            id="servfail",
        ),
        pytest.param(
            "_mta-sts.elsewhere.example",
            "the resolver refuses the query: it resolves no such name for this machine (a name "
            "server without the zone, or one that offers no recursion to this address); give "
            "--resolver one that does",
            id="refused",
        ),
    ],
)
def test_error_answers_say_what_they_mean(world: World, name: str, message: str) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    assert asyncio.run(lookup.txt(name)).error == message
    assert asyncio.run(lookup.mx(name)).error == message
    assert asyncio.run(lookup.addresses(name)).error == message


def test_a_cname_loop_is_named(world: World) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    txt = asyncio.run(lookup.txt("_mta-sts.loop.test"))
    assert txt.error == "its CNAMEs loop, or chain more than 16 times"


def test_a_name_longer_than_dns_allows_is_an_error_not_a_crash(world: World) -> None:
    # The config allows policy domains of up to 244 characters, for _mta-sts.<domain>:
    # _smtp._tls.<domain> is two characters longer.
    domain = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 48, "com"])
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    txt = asyncio.run(lookup.txt(f"_smtp._tls.{domain}"))
    assert txt == Txt(
        f"_smtp._tls.{domain}",
        error="it is 255 characters long, more than a DNS name can hold (253)",
    )


def test_every_authoritative_server_is_asked(world: World) -> None:
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    answers = asyncio.run(lookup.authorities("_mta-sts.disagree.test"))
    assert [(a.server, a.address) for a in answers] == [("ns1.test", DNS1), ("ns2.test", DNS2)]
    assert answers[1] == Authority("ns2.test", DNS2, ("v=STSv1; id=20240101000000",))


def test_a_server_that_does_not_answer() -> None:
    lookup = Lookup((SILENT_DNS, free_port(SILENT_DNS)), 0.5)
    txt = asyncio.run(lookup.txt("_mta-sts.example.com"))
    assert txt.records == ()
    assert txt.error is not None


def test_lookups_without_an_answer_leave_no_reference_cycles() -> None:
    # dnspython keeps each server's exception, whose traceback holds the frame that holds
    # the list of them: about 70 objects a lookup, before they were untangled.
    lookup = Lookup((SILENT_DNS, free_port(SILENT_DNS)), 0.3)
    names = [f"d{i}.silent.test" for i in range(25)]

    async def lookups() -> list[object]:
        return await asyncio.gather(
            *(lookup.txt(f"_mta-sts.{name}") for name in names),
            *map(lookup.mx, names),
            *map(lookup.addresses, names),
            *(lookup.authorities(f"_mta-sts.{name}") for name in names),
        )

    assert cyclic_garbage(lambda: asyncio.run(lookups())) < len(names)
    assert (
        asyncio.run(lookup.mx(names[0])).error == "no answer within 0.3 s; check the domain's DNS"
    )


def test_authorities_without_a_route_from_here_are_left_out(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A host without IPv6 gets ENETUNREACH from every IPv6 name server, which most zones
    # have: that says nothing of the servers, so they are skipped, as the connection probes
    # skip such addresses. (This host may have IPv6, and taking it away needs root: the
    # error is made here.)
    query = dns.asyncquery.udp_with_fallback

    async def without_ipv6(q: dns.message.Message, where: str, **kwargs: Any) -> Any:
        if ipaddress.ip_address(where).version == 6:
            raise OSError(errno.ENETUNREACH, "Network is unreachable")
        return await query(q, where, **kwargs)

    monkeypatch.setattr(dns.asyncquery, "udp_with_fallback", without_ipv6)
    assert world.options.resolver is not None
    lookup = Lookup(world.options.resolver, 2.0)
    answers = asyncio.run(lookup.authorities("_mta-sts.v6ns.test"))
    assert answers == (Authority("ns1.test", DNS1, ("v=STSv1; id=v6ns1",)),)
