"""Read-back at the zone's other name servers, real knot secondaries in step or not."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtasts_host import dns
from mtasts_host.publish import authority, readback
from mtasts_host.publish.plan import Change, Wanted
from mtasts_host.publish.query import Server

from ..knot import knot
from ..processes import free_port
from .conftest import Keys, Publish, Write, serve
from .servers import DNS2, Dns, PolicyHost, zone_text


@contextlib.contextmanager
def secondary(
    tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch, zones: dict[str, str]
) -> Iterator[int]:
    """A knot at ns2.pub.test's address serving ``zones``, asked by the read-back; its port."""
    port = free_port(DNS2)
    with knot(tmp_path / "ns2", DNS2, port, zones, keys=[keys.good]):
        monkeypatch.setattr(authority, "NAMESERVER_PORT", port)
        yield port


def test_a_secondary_without_the_zone_is_named_once(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """ns2.pub.test serves pub.test only, and refuses questions about provider.test."""
    zones = {"pub.test": zone_text("pub.test")}
    with secondary(tmp_path, keys, monkeypatch, zones) as port:
        path = write("h1.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}")
        serve(host, path)
        ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert (
        f"checked _mta-sts.provider.test TXT: 127.80.0.1:{server.port}: ok; ns2.pub.test "
        f"(127.80.0.2:{port}): answers REFUSED for _mta-sts.provider.test TXT"
    ) in ran.lines


def test_a_secondary_still_holding_what_the_cname_replaced_is_not_yet(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The A record deleted by hand at the primary is still at ns2.pub.test: no transfer yet."""
    zones = {
        "pub.test": zone_text("pub.test", ["mta-sts.a A 192.0.2.10"]),
        "provider.test": zone_text("provider.test"),
    }
    with secondary(tmp_path, keys, monkeypatch, zones) as port:
        path = write("a.pub.test: {mx: [mx.pub.test], cname: web.pub.test}")
        serve(host, path)
        ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert (
        f"checked mta-sts.a.pub.test CNAME: 127.80.0.1:{server.port}: ok; ns2.pub.test "
        f"(127.80.0.2:{port}): not yet (a zone transfer may be pending)"
    ) in ran.lines


def test_an_unreachable_secondary_only_informs(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Asked once in the run, for at most its own timeout; no failure."""
    port = free_port(DNS2)  # nothing listens there
    monkeypatch.setattr(authority, "NAMESERVER_PORT", port)
    monkeypatch.setattr(readback, "_TIMEOUT", 0.3)
    path = write("a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test]}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert [line.partition(": ")[2] for line in ran.lines if line.startswith("checked ")] == [
        f"127.80.0.1:{server.port}: ok; ns2.pub.test (127.80.0.2:{port}): unreachable"
    ] * 2


@pytest.mark.parametrize(
    "keeps_ttl",
    [
        pytest.param(True, id="rfc2136"),  # the server keeps what an update gives: an error
        pytest.param(False, id="command"),  # a provider's minimum: a warning
    ],
)
def test_the_wanted_value_with_another_ttl(
    server: Dns, keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, keeps_ttl: bool
) -> None:
    """Both servers hold the record with TTL 600, where 300 was asked for."""
    value = "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test"
    zones = {"pub.test": zone_text("pub.test", [f'_smtp._tls.a 600 TXT "{value}"'])}
    server.set("pub.test", "_smtp._tls.a.pub.test", "TXT", f'"{value}"', ttl=600)
    record = dns.Record("_smtp._tls.a.pub.test", "TXT", 300, value)
    plan = [Change(Wanted(record, ("a.pub.test",), sts=False), None)]
    primary = Server(server.address, server.port)
    told: dict[str, list[str]] = {"info": [], "warning": [], "problem": []}
    warning = None if keeps_ttl else told["warning"].append
    with secondary(tmp_path, keys, monkeypatch, zones) as port:
        settled = readback.read_back(
            plan,
            lambda name: primary,
            {record.name: "pub.test"},
            told["info"].append,
            told["problem"].append,
            warning,
        )
    if keeps_ttl:
        assert (settled, told) == (
            set(),
            {
                "info": [],
                "warning": [],
                "problem": [
                    f'_smtp._tls.a.pub.test TXT: reads back as 600 TXT "{value}" at {primary}'
                ],
            },
        )
        return
    assert (settled, told) == (
        {record},
        {
            "info": [
                f"checked _smtp._tls.a.pub.test TXT: {primary}: ok; ns2.pub.test "
                f"(127.80.0.2:{port}): ok"
            ],
            "warning": [
                f"_smtp._tls.a.pub.test TXT: {primary} holds it with TTL 600, not the 300 asked "
                "for: the provider may have a minimum (or a maximum), or apply it later; while "
                "they differ, each run writes it again (dns_ttl: 600 would match it)"
            ],
            "problem": [],
        },
    )
