"""The DNS records to publish."""

from __future__ import annotations

import json
import textwrap

import pytest

from mtasts_host import ConfigError, dns
from mtasts_host.config import parse_config
from mtasts_host.policy import policy_id
from mtasts_host.publish.plan import wanted
from mtasts_host.store import build_snapshot

CONFIG = textwrap.dedent(
    """\
    defaults: {mode: testing, mx: mx.example.net}
    domains:
      a.example: {}
      b.example:
        cname: mta-sts.provider.example
        tlsrpt_rua: ["mailto:tls@b.example", "https://r.example/tlsrpt"]
        dns_ttl: 300
    """
).encode()


def test_zone() -> None:
    config = parse_config(CONFIG)
    ident = policy_id(config.domains["a.example"].policy.render())
    assert dns.to_zone(build_snapshot(config)).splitlines() == [
        f'_mta-sts.a.example.\t3600\tIN\tTXT\t"v=STSv1; id={ident}"',
        f'_mta-sts.b.example.\t300\tIN\tTXT\t"v=STSv1; id={ident}"',
        "mta-sts.b.example.\t300\tIN\tCNAME\tmta-sts.provider.example.",
        '_smtp._tls.b.example.\t300\tIN\tTXT\t"v=TLSRPTv1; '
        'rua=mailto:tls@b.example,https://r.example/tlsrpt"',
    ]


def test_json() -> None:
    config = parse_config(CONFIG)
    records = json.loads(dns.to_json(build_snapshot(config)))
    assert records[0] == {
        "name": "_mta-sts.a.example",
        "type": "TXT",
        "ttl": 3600,
        "value": f"v=STSv1; id={policy_id(config.domains['a.example'].policy.render())}",
    }
    assert [r["type"] for r in records] == ["TXT", "TXT", "CNAME", "TXT"]


def test_long_txt_values_are_split_into_strings() -> None:
    uris = ", ".join(f'"mailto:tls{i}@{"r" * 50}.example"' for i in range(6))
    config = parse_config(f"domains:\n  a.example: {{mode: none, tlsrpt_rua: [{uris}]}}\n".encode())
    line = dns.to_zone(build_snapshot(config)).splitlines()[1]
    strings = line.split("\t")[-1]
    assert strings.count('" "') == 1  # two strings
    assert all(len(s) <= 255 for s in strings.strip('"').split('" "'))
    rua = next(
        record for record in dns.records(build_snapshot(config)) if record.name.startswith("_smtp")
    )
    assert "".join(strings.strip('"').split('" "')) == rua.value


GROUPED = textwrap.dedent(
    """\
    defaults: {mode: enforce, mx: mx.provider.example, txt_cname: _mta-sts.provider.example}
    domains:
      a.example: {}
      b.example: {}
      c.example: {txt_cname: _MTA-STS.Other.Example.}
      d.example: {txt_cname: _mta-sts.other.example, max_age: 1209600}
    """
).encode()


def test_an_id_group_shares_one_txt_record() -> None:
    # RFC 8461 section 8.2: _mta-sts.<domain> CNAMEs to the provider's record, whose one id
    # must change whenever any of the policies behind it does.
    config = parse_config(GROUPED)
    same = policy_id(config.domains["a.example"].policy.render())
    c_body = config.domains["c.example"].policy.render()
    d_body = config.domains["d.example"].policy.render()
    mixed = policy_id(b"c.example\n" + c_body + b"d.example\n" + d_body)
    assert [(r.name, r.type, r.value) for r in dns.records(build_snapshot(config))] == [
        ("_mta-sts.a.example", "CNAME", "_mta-sts.provider.example"),
        ("_mta-sts.provider.example", "TXT", f"v=STSv1; id={same}"),
        ("_mta-sts.b.example", "CNAME", "_mta-sts.provider.example"),
        ("_mta-sts.c.example", "CNAME", "_mta-sts.other.example"),
        ("_mta-sts.other.example", "TXT", f"v=STSv1; id={mixed}"),
        ("_mta-sts.d.example", "CNAME", "_mta-sts.other.example"),
    ]
    assert mixed not in (policy_id(c_body), policy_id(d_body))


def test_a_group_with_different_policies_is_warned_about() -> None:
    warnings = [str(w) for w in parse_config(GROUPED, "config.yaml").warnings]
    assert warnings == [
        "config.yaml:5: warning: domains.c.example.txt_cname: c.example, d.example share the "
        "_mta-sts record at _mta-sts.other.example but not one policy: its id covers them all, "
        "so a change to any one makes senders fetch every one again"
    ]


def test_the_group_id_changes_with_any_member() -> None:
    before = dns.txt_groups(build_snapshot(parse_config(GROUPED)))
    after = dns.txt_groups(build_snapshot(parse_config(GROUPED.replace(b"1209600", b"1209601"))))
    assert before["_mta-sts.provider.example"] == after["_mta-sts.provider.example"]
    assert before["_mta-sts.other.example"] != after["_mta-sts.other.example"]


def test_the_group_id_changes_when_members_swap_policies() -> None:
    # The same set of policies, but each of c and d now serves the other's: senders that
    # cached either one's old policy must see a new id (RFC 8461 section 3.1).
    swapped = GROUPED.replace(b"c.example: {", b"c.example: {max_age: 1209600, ").replace(
        b"max_age: 1209600}", b"max_age: 604800}"
    )
    config = parse_config(swapped)
    assert config.domains["c.example"].policy.max_age == 1209600
    assert config.domains["d.example"].policy.max_age == 604800
    before = dns.txt_groups(build_snapshot(parse_config(GROUPED)))
    after = dns.txt_groups(build_snapshot(config))
    assert before["_mta-sts.other.example"] != after["_mta-sts.other.example"]


@pytest.mark.parametrize(
    ("first", "second", "warned"),
    [
        pytest.param(
            "a.example",
            "b.example",
            "3: warning: domains.a.example.dns_ttl: a.example, b.example",
            id="longest-first",
        ),
        pytest.param(
            "b.example",
            "a.example",
            "3: warning: domains.b.example.dns_ttl: b.example, a.example",
            id="shortest-first",
        ),
        # The provider's own record, shared: its dns_ttl counts too, and it comes last.
        pytest.param(
            "provider.example",
            "a.example",
            "4: warning: domains.a.example.dns_ttl: a.example, provider.example",
            id="provider-first",
        ),
        pytest.param(
            "a.example",
            "provider.example",
            "3: warning: domains.a.example.dns_ttl: a.example, provider.example",
            id="provider-last",
        ),
    ],
)
def test_a_shared_record_takes_the_shortest_ttl_of_its_members(
    first: str, second: str, warned: str
) -> None:
    # Any member's change shows in the shared record: none may wait longer than its dns_ttl.
    # Which one comes first in the file does not matter.
    ttls = {"a.example": 3600, "b.example": 300, "provider.example": 300}
    text = (
        "defaults: {mode: enforce, mx: mx.provider.example, txt_cname: _mta-sts.provider.example}"
        f"\ndomains:\n  {first}: {{dns_ttl: {ttls[first]}}}\n"
        f"  {second}: {{dns_ttl: {ttls[second]}}}\n"
    )
    config = parse_config(text.encode(), "config.yaml")
    records = {(r.name, r.type): r.ttl for r in dns.records(build_snapshot(config))}
    assert records[("_mta-sts.provider.example", "TXT")] == 300
    assert records[("_mta-sts.a.example", "CNAME")] == 3600
    assert [str(w) for w in config.warnings] == [
        f"config.yaml:{warned} share the _mta-sts record at _mta-sts.provider.example but "
        "not one dns_ttl: it gets the shortest, 300"
    ]


ANCHORED = textwrap.dedent(
    """\
    defaults: {mode: enforce, mx: mx.provider.example}
    domains:
      user.example: {txt_cname: _mta-sts.provider.example, max_age: 1209600}
      provider.example: {}
    """
).encode()


def test_a_group_at_a_configured_domains_own_record_includes_that_domain() -> None:
    # RFC 8461 section 8.2's provider serves a policy of its own at the shared name: one TXT
    # record there, whose id covers the provider's policy too.
    snapshot = build_snapshot(parse_config(ANCHORED))
    bodies = b"".join(d.encode() + b"\n" + e.body for d, e in sorted(snapshot.served.items()))
    shared = f"v=STSv1; id={policy_id(bodies)}"
    assert [(r.name, r.type, r.value) for r in dns.records(snapshot)] == [
        ("_mta-sts.user.example", "CNAME", "_mta-sts.provider.example"),
        ("_mta-sts.provider.example", "TXT", shared),
    ]
    txt = next(w for w in wanted(snapshot) if w.record.type == "TXT")
    assert txt.domains == ("user.example", "provider.example")


def test_a_shared_record_at_a_name_that_is_itself_a_cname_is_refused() -> None:
    text = ANCHORED.replace(b"provider.example: {}", b"provider.example: {txt_cname: _x.example}")
    with pytest.raises(ConfigError) as info:
        parse_config(text, "config.yaml")
    assert str(info.value) == (
        "config.yaml:3: domains.user.example.txt_cname: _mta-sts.provider.example is itself a "
        "CNAME to _x.example (domains.provider.example.txt_cname), so it cannot hold the "
        "shared record; point at _x.example instead"
    )
