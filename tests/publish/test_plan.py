"""The plan: wanted records, their actions, which need the new body first, and the order."""

from __future__ import annotations

import pytest

from mtasts_host.config import parse_config
from mtasts_host.dns import Record
from mtasts_host.publish.plan import Action, Change, Current, Wanted, ordered, wanted
from mtasts_host.store import build_snapshot

CONFIG = b"""
defaults: {mode: enforce, mx: [mx.example.net]}
domains:
  a.example: {tlsrpt_rua: [mailto:r@a.example], cname: proxy.example.net}
  h1.example: {txt_cname: _mta-sts.provider.example}
  h2.example: {txt_cname: _mta-sts.provider.example}
"""
TXT = Record("_mta-sts.a.example", "TXT", 300, "v=STSv1; id=new")


def _change(current: Current | None, record: Record = TXT) -> Change:
    return Change(Wanted(record, ("a.example",), record.name.startswith("_mta-sts.")), current)


@pytest.mark.parametrize(
    ("current", "action", "guarded"),
    [
        (None, Action.CREATE, True),
        (Current("TXT", 300, ("v=STSv1; id=new",)), Action.UNCHANGED, False),
        # A new TTL alone is a change, but shows senders no new id.
        (Current("TXT", 600, ("v=STSv1; id=new",)), Action.REPLACE, False),
        (Current("TXT", 300, ("v=STSv1; id=old",)), Action.REPLACE, True),
        # Two records where senders want one.
        (Current("TXT", 300, ("v=STSv1; id=new", "v=STSv1; id=old")), Action.REPLACE, True),
        # A TXT record senders discard (RFC 8461 section 3.1) is none of ours: it stays.
        (Current("TXT", 300, ("v=STSv1; id=new", "other")), Action.UNCHANGED, False),
        (Current("TXT", 300, ("other",)), Action.CREATE, True),
        (Current("CNAME", 300, ("_mta-sts.provider.example",)), Action.REPLACE, True),
    ],
)
def test_actions(current: Current | None, action: Action, guarded: bool) -> None:
    change = _change(current)
    assert (change.action, change.guarded) == (action, guarded)


def test_a_value_read_from_the_dns_is_shown_on_one_line() -> None:
    # A line break from the DNS made a line of its own in the plan, and in serve's logs.
    forged = Current("TXT", 300, ("v=STSv1; id=old\nINFO published everything\x1b[2J",))
    assert _change(forged).line() == (
        'replace _mta-sts.a.example 300 TXT "v=STSv1; id=old\\nINFO published everything'
        '\\x1b[2J" -> 300 TXT "v=STSv1; id=new"'
    )
    assert forged.show() == '"v=STSv1; id=old\\nINFO published everything\\x1b[2J"'


def test_lines() -> None:
    assert _change(None).line() == 'create _mta-sts.a.example 300 TXT "v=STSv1; id=new"'
    old = Current("TXT", 3600, ("v=STSv1; id=old",))
    assert _change(old).line() == (
        'replace _mta-sts.a.example 3600 TXT "v=STSv1; id=old" -> 300 TXT "v=STSv1; id=new"'
    )
    beside = Current("TXT", 3600, ("v=STSv1; id=old", "other"), ('"v=STSv1; id=old"', '"other"'))
    assert _change(beside).line() == (
        'replace _mta-sts.a.example 3600 TXT "v=STSv1; id=old" -> 300 TXT "v=STSv1; id=new" '
        '(kept: "other")'
    )
    # A malformed v=STSv1 record is ours too: kept, it would be a second one for senders.
    broken = Current("TXT", 3600, ("v=STSv1 id=old",), ('"v=STSv1 id=old"',))
    assert _change(broken).line() == (
        'replace _mta-sts.a.example 3600 TXT "v=STSv1 id=old" -> 300 TXT "v=STSv1; id=new"'
    )
    cname = Record("mta-sts.a.example", "CNAME", 300, "proxy.example.net")
    assert _change(Current("CNAME", 300, ("proxy.example.net",)), cname).line() == (
        "unchanged mta-sts.a.example 300 CNAME proxy.example.net"
    )


def test_what_a_change_replaces_and_what_it_keeps() -> None:
    beside = Current("TXT", 300, ("v=STSv1; id=old", "other", "v=STSv1 id=broken"))
    assert beside.ours(TXT) == ("v=STSv1; id=old", "v=STSv1 id=broken")
    assert beside.kept(TXT) == ("other",)
    # A CNAME in place of TXT records, or TXT records in place of a CNAME: all replaced.
    cname = Record("_mta-sts.a.example", "CNAME", 300, "_mta-sts.provider.example")
    assert (beside.ours(cname), beside.kept(cname)) == (beside.values, ())
    target = Current("CNAME", 300, ("_mta-sts.provider.example",))
    assert (target.ours(TXT), target.kept(TXT)) == (target.values, ())


def test_wanted_records_and_their_domains() -> None:
    config = parse_config(CONFIG)
    found = [
        (w.record.name, w.record.type, w.domains, w.sts) for w in wanted(build_snapshot(config))
    ]
    assert found == [
        ("_mta-sts.a.example", "TXT", ("a.example",), True),
        ("mta-sts.a.example", "CNAME", ("a.example",), False),
        ("_smtp._tls.a.example", "TXT", ("a.example",), False),
        ("_mta-sts.h1.example", "CNAME", ("h1.example",), True),
        ("_mta-sts.provider.example", "TXT", ("h1.example", "h2.example"), True),
        ("_mta-sts.h2.example", "CNAME", ("h2.example",), True),
    ]
    # One domain: its records, and its group's shared record.
    only = [w.record.name for w in wanted(build_snapshot(config), ["h2.example"])]
    assert only == ["_mta-sts.provider.example", "_mta-sts.h2.example"]


def test_order_ids_last_and_shared_records_before_their_cnames() -> None:
    config = parse_config(CONFIG)
    changes = [Change(item, None) for item in reversed(wanted(build_snapshot(config)))]
    assert [(c.record.name, c.record.type) for c in ordered(changes)] == [
        ("_smtp._tls.a.example", "TXT"),
        ("mta-sts.a.example", "CNAME"),
        ("_mta-sts.provider.example", "TXT"),
        ("_mta-sts.a.example", "TXT"),
        ("_mta-sts.h2.example", "CNAME"),
        ("_mta-sts.h1.example", "CNAME"),
    ]
