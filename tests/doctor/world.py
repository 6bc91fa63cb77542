"""
The test world: configured domains, each good or broken in exactly one way, and the DNS
zones that publish them. Addresses are in 127.60.0.0/16, which no other test uses.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from mtasts_host import dns
from mtasts_host.store import Snapshot

from .servers import zone

DNS1 = "127.60.0.1"
DNS2 = "127.60.0.2"
"""A second authoritative server for disagree.test, with an older zone."""
DNS6 = "2001:db8::53"
"""The IPv6 address of a name server of v6ns.test, which no server has."""
NGINX = "127.60.1.1"
REDIRECT = "127.60.1.2"
"""nginx in front of the policy host, answering with a redirect."""
ALTER = "127.60.1.3"
"""nginx in front of the policy host, changing the body on its way."""
MX_GOOD = "127.60.2.1"
MX_EXPIRED = "127.60.2.2"
MX_WRONG_NAME = "127.60.2.3"
MX_PLAIN = "127.60.2.4"
"""SMTP without STARTTLS."""
SILENT = "127.60.2.5"
"""Accepts connections, never speaks."""
MX_SOON = "127.60.2.6"
"""A certificate expiring in five days."""
SILENT_DNS = "127.60.3.2"
"""No name server: every query goes unanswered."""
REFUSING = "127.60.3.3"
"""A name server without zones: REFUSED to every query."""


@dataclass(frozen=True)
class Domain:
    """One domain of the world: its config, what DNS publishes, and the checks not ok."""

    name: str
    settings: str = ""
    """YAML flow mapping; by default enforce with the one pattern ``mx.<name>``."""
    expect: Mapping[str, str] = field(default_factory=dict)
    sts: Sequence[str] | None = None
    """TXT strings at ``_mta-sts`` (zone syntax, ``{id}`` for the right id); None: as
    ``mtasts-host dns`` prints them."""
    policy_host: str | None = NGINX
    more_policy_hosts: Sequence[str] = ()
    """More A records of ``mta-sts.<name>``, beside ``policy_host``."""
    certificate: str = "valid"
    """That of ``mta-sts.<name>`` on nginx: valid, expired, wrong-name, soon, or
    intermediate-soon (valid, sent with an intermediate of another root expiring in five
    days)."""
    mx: Sequence[tuple[str, str]] = ()
    """MX hosts and their addresses; by default ``mx.<name>`` on MX_GOOD."""
    tlsrpt: Sequence[str] | None = None
    """TXT strings at ``_smtp._tls``; None: as ``mtasts-host dns`` prints them."""

    @property
    def mx_hosts(self) -> Sequence[tuple[str, str]]:
        return self.mx or [(f"mx.{self.name}", MX_GOOD)]


FAIL_TXT = {"dns-txt": "fail", "dns-id": "fail"}
FAIL_HTTPS = {"https": "fail", "policy": "fail"}

DOMAINS = [
    Domain(
        "good.test",
        '{mx: [mx.good.test, "*.mx.good.test"], tlsrpt_rua: [mailto:tlsrpt@good.test]}',
        mx=[("mx.good.test", MX_GOOD), ("eu.mx.good.test", MX_GOOD)],
    ),
    # Split strings, an extension field, and upper case in the MX.
    Domain(
        "split.test",
        sts=['"v=STSv1; " "id={id}; ext=1"'],
        mx=[("MX.Split.TEST", MX_GOOD)],
    ),
    # An unrelated record beside it: discarded by RFC 8461, counted by some senders.
    Domain(
        "beside.test",
        expect={"dns-txt": "warn"},
        sts=['"v=STSv1; id={id}"', '"google-site-verification=x1"'],
    ),
    # One shared _mta-sts record, in another zone (RFC 8461 section 8.2).
    Domain(
        "hosted1.test",
        "{mode: testing, mx: [mx.hosted.test], txt_cname: _mta-sts.provider.example}",
        mx=[("mx.hosted.test", MX_GOOD)],
    ),
    Domain(
        "hosted2.test",
        "{mode: testing, mx: [mx.hosted.test], max_age: 1209600,"
        " txt_cname: _mta-sts.provider.example}",
        mx=[("mx.hosted.test", MX_GOOD)],
    ),
    # The shared record is a configured domain's own, as the provider's of section 8.2: one
    # TXT record there, whose id covers both policies.
    Domain("anchor.test", mx=[("mx.anchor.test", MX_GOOD)]),
    Domain(
        "joined.test",
        "{mx: [mx.anchor.test], max_age: 1209600, txt_cname: _mta-sts.anchor.test}",
        mx=[("mx.anchor.test", MX_GOOD)],
    ),
    Domain(
        "none.test",
        "{mode: none, mx: [mx.none.test], max_age: 86400}",
        mx=[("mx.none.test", MX_PLAIN)],
    ),
    Domain("notxt.test", expect=FAIL_TXT, sts=[]),
    Domain("twotxt.test", expect=FAIL_TXT, sts=['"v=STSv1; id={id}"', '"v=STSv1; id=other1"']),
    Domain("badid.test", expect=FAIL_TXT, sts=['"v=STSv1; id=2024-01-01"']),
    # A byte-order mark before the record, as an editor may save it: senders ignore it.
    Domain("bom.test", expect=FAIL_TXT, sts=['"\\239\\187\\191v=STSv1; id={id}"']),
    # The record in quotes of its own, as a DNS panel keeps the quotes typed into it.
    Domain("quoted.test", expect=FAIL_TXT, sts=['"\\"v=STSv1; id={id}\\""']),
    Domain("oldid.test", expect={"dns-id": "fail"}, sts=['"v=STSv1; id=20240101T000000"']),
    Domain("disagree.test", expect={"dns-id": "warn"}),
    Domain("nohost.test", expect=FAIL_HTTPS, policy_host=None),
    Domain("expired.test", expect=FAIL_HTTPS, certificate="expired"),
    Domain("wrongname.test", expect=FAIL_HTTPS, certificate="wrong-name"),
    Domain("soon.test", expect={"https": "warn"}, certificate="soon"),
    Domain("middlesoon.test", expect={"https": "warn"}, certificate="intermediate-soon"),
    Domain("redirect.test", expect={"policy": "fail"}, policy_host=REDIRECT),
    Domain("altered.test", expect={"policy": "fail"}, policy_host=ALTER),
    Domain(
        "uncovered.test",
        expect={"mx-coverage": "fail"},
        mx=[("mx.uncovered.test", MX_GOOD), ("backup.uncovered.test", MX_GOOD)],
    ),
    Domain(
        "uncovered-testing.test",
        "{mode: testing, mx: [mx.uncovered-testing.test]}",
        expect={"mx-coverage": "warn"},
        mx=[("mx.uncovered-testing.test", MX_GOOD), ("backup.uncovered-testing.test", MX_GOOD)],
    ),
    Domain("unused.test", "{mx: [mx.unused.test, old.unused.test]}", {"mx-coverage": "warn"}),
    Domain("mxexpired.test", expect={"mx-tls": "fail"}, mx=[("mx.mxexpired.test", MX_EXPIRED)]),
    Domain(
        "mxwrongname.test", expect={"mx-tls": "fail"}, mx=[("mx.mxwrongname.test", MX_WRONG_NAME)]
    ),
    Domain("nostarttls.test", expect={"mx-tls": "fail"}, mx=[("mx.nostarttls.test", MX_PLAIN)]),
    Domain("mxsilent.test", expect={"mx-tls": "fail"}, mx=[("mx.mxsilent.test", SILENT)]),
    Domain("mxsoon.test", expect={"mx-tls": "warn"}, mx=[("mx.mxsoon.test", MX_SOON)]),
    Domain(
        "mxtesting.test",
        "{mode: testing, mx: [mx.mxtesting.test]}",
        expect={"mx-tls": "warn"},
        mx=[("mx.mxtesting.test", MX_EXPIRED)],
    ),
    Domain(
        "notlsrpt.test",
        "{mx: [mx.notlsrpt.test], tlsrpt_rua: [mailto:tlsrpt@notlsrpt.test]}",
        expect={"tlsrpt": "warn"},
        tlsrpt=[],
    ),
    Domain(
        "twotlsrpt.test",
        expect={"tlsrpt": "fail"},
        tlsrpt=['"v=TLSRPTv1; rua=mailto:a@twotlsrpt.test"', '"v=TLSRPTv1; rua=mailto:b@x.test"'],
    ),
    Domain(
        "difftlsrpt.test",
        "{mx: [mx.difftlsrpt.test], tlsrpt_rua: [mailto:tlsrpt@difftlsrpt.test]}",
        expect={"tlsrpt": "warn"},
        tlsrpt=['"v=TLSRPTv1; rua=mailto:someone@elsewhere.test"'],
    ),
    # Valid by RFC 8460, but Postfix's reporter splits at ',' and keeps the space.
    Domain(
        "spacedtlsrpt.test",
        "{mx: [mx.spacedtlsrpt.test], tlsrpt_rua: [mailto:a@spacedtlsrpt.test,"
        " mailto:b@spacedtlsrpt.test]}",
        expect={"tlsrpt": "warn"},
        tlsrpt=['"v=TLSRPTv1; rua=mailto:a@spacedtlsrpt.test, mailto:b@spacedtlsrpt.test"'],
    ),
    # RFC 8461 section 3.2: a duplicated non-repeated field in a TXT record: the first wins.
    Domain("dupid.test", expect={"dns-txt": "fail"}, sts=['"v=STSv1; id={id}; id=other1"']),
    # A null MX: mx-coverage warns (set mode none); nothing else to check, nothing fails.
    Domain("nullmx.test", expect={"mx-coverage": "warn", "mx-tls": "warn"}, mx=[(".", "")]),
    # A null MX beside another, which RFC 7505 forbids: some senders bounce, some deliver.
    Domain(
        "nullmixed.test",
        expect={"mx-coverage": "warn"},
        mx=[(".", ""), ("mx.nullmixed.test", MX_GOOD)],
    ),
    # One of two policy-host addresses refuses connections: some senders cannot fetch.
    Domain(
        "nonepartial.test",
        "{mode: none, mx: [mx.nonepartial.test], max_age: 86400}",
        expect={"policy": "fail"},
        more_policy_hosts=[MX_GOOD],
    ),
    Domain("partial.test", expect={"https": "fail", "policy": "fail"}, more_policy_hosts=[MX_GOOD]),
]
GOOD = [
    "good.test",
    "split.test",
    "hosted1.test",
    "hosted2.test",
    "anchor.test",
    "joined.test",
    "none.test",
]
SLOW = [f"slow{number:02}.test" for number in range(1, 51)]
"""Domains whose policy host and MX host accept connections and never answer."""


def config_text(domains: Sequence[Domain]) -> str:
    lines = ["defaults: {mode: enforce, max_age: 604800}", "domains:"]
    for domain in domains:
        lines.append(f"  {domain.name}: {domain.settings or f'{{mx: [mx.{domain.name}]}}'}")
    return "\n".join(lines) + "\n"


def slow_config_text() -> str:
    return config_text([Domain(name) for name in SLOW])


def _published(snapshot: Snapshot) -> dict[str, list[str]]:
    """Owner name to the zone lines ``mtasts-host dns`` prints for it."""
    result: dict[str, list[str]] = {}
    for line in dns.to_zone(snapshot).splitlines():
        result.setdefault(line.split("\t")[0].removesuffix("."), []).append(line)
    return result


def zones(snapshot: Snapshot, slow: Snapshot) -> tuple[dict[str, str], dict[str, str]]:
    """The zones of the two DNS servers: DNS1 holds the world, DNS2 an older disagree.test."""
    published = _published(snapshot) | _published(slow)
    ids = {r.name: r.value for r in dns.records(snapshot) if r.type == "TXT"}
    test: list[str] = ["ns1 A " + DNS1, "ns2 A " + DNS2, "disagree NS ns1", "disagree NS ns2"]
    # CNAMEs to a name that does not exist, and CNAMEs in a loop, of no configured domain:
    # for the probe's tests.
    test += ["_mta-sts.dangling.test. CNAME hop.test.", "hop.test. CNAME gone.test."]
    test += ["_mta-sts.loop.test. CNAME loop.test.", "loop.test. CNAME _mta-sts.loop.test."]
    # A zone with a name server that has only an IPv6 address, also for the probe's tests.
    test += ["v6ns NS ns1", "v6ns NS ns6", f"ns6 AAAA {DNS6}"]
    v6ns = ['_mta-sts TXT "v=STSv1; id=v6ns1"']
    disagree: list[str] = []
    slow_domains = [Domain(name, policy_host=SILENT, mx=[(f"mx.{name}", SILENT)]) for name in SLOW]
    for domain in [*DOMAINS, *slow_domains]:
        name = domain.name
        lines = disagree if name == "disagree.test" else test
        sts_name, tlsrpt_name = f"_mta-sts.{name}", f"_smtp._tls.{name}"
        if domain.sts is None:
            lines += published[sts_name]
        else:
            right = ids.get(sts_name, "").partition("id=")[2]
            lines += [f"{sts_name}. TXT {text.format(id=right)}" for text in domain.sts]
        if domain.policy_host is not None:
            lines.append(f"mta-sts.{name}. A {domain.policy_host}")
        lines += [f"mta-sts.{name}. A {address}" for address in domain.more_policy_hosts]
        for preference, (host, address) in enumerate(domain.mx_hosts, 10):
            if host == ".":  # a null MX (RFC 7505)
                lines.append(f"{name}. MX 0 .")
                continue
            lines += [f"{name}. MX {preference} {host}.", f"{host}. A {address}"]
        if domain.tlsrpt is None:
            lines += published.get(tlsrpt_name, [])
        else:
            lines += [f"{tlsrpt_name}. TXT {text}" for text in domain.tlsrpt]
    provider = published["_mta-sts.provider.example"]
    older = [re.sub(r"id=[0-9a-f]+", "id=20240101000000", line) for line in disagree]
    servers = ["ns1.test", "ns2.test"]
    first = {
        "test": zone("test", ["ns1.test"], test),
        "disagree.test": zone("disagree.test", servers, disagree),
        "provider.example": zone("provider.example", ["ns1.test"], provider),
        "v6ns.test": zone("v6ns.test", ["ns1.test", "ns6.test"], v6ns),
        # A zone that does not load, which knot answers with SERVFAIL: for the probe's tests.
        "broken.test": "not a zone\n",
    }
    return first, {"disagree.test": zone("disagree.test", servers, older)}
