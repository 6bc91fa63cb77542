"""
``mtasts-host publish`` against BIND 9's named, in knot's place: the same ``write`` and
``publish`` fixtures, with named serving the zones and tsig-keygen writing the keys.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtasts_host import dns
from mtasts_host.config import load_config
from mtasts_host.publish import guard
from mtasts_host.store import build_snapshot

from ..bind import named, tsig_keygen
from ..processes import free_port
from .conftest import (
    FIVE_RECORDS,
    Keys,
    Publish,
    Write,
    first_update_changes_nothing,
    other_types_keep_a_joining_domains_txt,
    serve,
    untouched,
)
from .servers import ZONES, Dns, PolicyHost
from .test_hook import SCRIPT

ADDRESS = "127.0.0.1"  # named listens on its interfaces' addresses only, not all of 127/8
GRANTS = pytest.mark.parametrize(
    "server", [False, True], ids=["allow-update", "update-policy"], indirect=True
)
"""named grants updates per zone (``allow-update``), or per name and type (``update-policy``)."""


def _zone(origin: str) -> str:
    """A zone whose one name server is named itself: nothing else to read records back from."""
    return (
        f"$ORIGIN {origin}.\n$TTL 60\n"
        f"@ SOA ns1.pub.test. hostmaster.{origin}. 1 3600 600 86400 60\n"
        "@ NS ns1.pub.test.\n" + (f"ns1 A {ADDRESS}\n" if origin == "pub.test" else "")
    )


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    """In place of conftest's knot keys: BIND's own, which named's config includes."""
    directory = tmp_path_factory.mktemp("bind-keys")
    return Keys(tsig_keygen(directory, "good"), tsig_keygen(directory, "other"))


@pytest.fixture(scope="module")
def stranger(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A well-formed key that named's config names nowhere."""
    return tsig_keygen(tmp_path_factory.mktemp("bind-stranger"), "stranger")


@pytest.fixture
def server(
    request: pytest.FixtureRequest, tmp_path: Path, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Dns]:
    """
    In place of conftest's knot: named, authoritative for pub.test and provider.test, knowing
    the good and the other key, and letting the good one (only) update them by
    ``allow-update``, or by ``update-policy`` when the test's parameter is True; with the
    parameter "cyclic", by ``allow-update``, turning the order of each RRset's records at
    each query.
    """
    monkeypatch.setattr(guard, "INTERVAL", 0.1)
    port = free_port(ADDRESS)
    zones = {origin: _zone(origin) for origin in ZONES}
    param = getattr(request, "param", False)
    order = "cyclic" if param == "cyclic" else "random"
    known = [keys.good, keys.other]
    with named(
        tmp_path / "named",
        ADDRESS,
        port,
        zones,
        keys=known,
        updater="good",
        per_record=param is True,
        rrset_order=order,
    ):
        yield Dns(ADDRESS, port, keys.good)


def _sts(path: Path, name: str) -> str:
    (value,) = [r.value for r in dns.records(build_snapshot(load_config(path))) if r.name == name]
    return value


@GRANTS
def test_the_updater_key_publishes_every_record(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    Signed with the key that ``allow-update`` or ``update-policy`` names, each update (its
    prerequisites, RFC 2136 section 2.4, then its changes, section 2.5) is applied: named
    answers NOERROR, and holds the records, in both zones, when asked directly.
    """
    path = write(FIVE_RECORDS)
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    a_sts, shared = _sts(path, "_mta-sts.a.pub.test"), _sts(path, "_mta-sts.provider.test")
    assert [line for line in ran.lines if line.startswith("create ")] == [
        f'create _mta-sts.a.pub.test 300 TXT "{a_sts}"',
        "create mta-sts.a.pub.test 300 CNAME web.pub.test",
        'create _smtp._tls.a.pub.test 300 TXT "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test"',
        "create _mta-sts.h1.pub.test 300 CNAME _mta-sts.provider.test",
        f'create _mta-sts.provider.test 300 TXT "{shared}"',
    ]
    assert ran.lines[-1] == "changed 5 of 5 records"
    # named is the zones' only name server: the read-back asks no other.
    assert f"checked _mta-sts.a.pub.test TXT: {ADDRESS}:{server.port}: ok" in ran.lines
    assert server.values("_mta-sts.a.pub.test") == [a_sts]
    assert a_sts.startswith("v=STSv1; id=")
    assert server.values("_smtp._tls.a.pub.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@pub.test"]
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["web.pub.test"]
    assert server.values("_mta-sts.provider.test") == [shared]
    assert server.values("_mta-sts.h1.pub.test", "CNAME") == ["_mta-sts.provider.test"]
    assert server.ttl("_mta-sts.a.pub.test") == 300
    serials = [server.serial(zone) for zone in ZONES]
    assert all(serial > 1 for serial in serials)
    again = publish(path)
    assert (again.code, again.err) == (0, "")
    assert again.lines[-1] == "changed 0 of 5 records"
    assert [server.serial(zone) for zone in ZONES] == serials


@GRANTS
def test_a_known_key_that_may_not_update_fails_fast(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, keys: Keys
) -> None:
    """
    named knows the other key, so its answer is signed (RFC 8945 section 5.3) and says
    REFUSED (RFC 2136 section 3.3) to the first update, which changes nothing: whether
    named checks the zone (``allow-update``) or each name and type the update touches
    (``update-policy``), that update names every record the run will write. So the run
    stops before fetching any policy or waiting.
    """
    path = write(FIVE_RECORDS, key=keys.other)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: TSIG key refused by {ADDRESS}:{server.port} for zone provider.test (REFUSED): "
        "it may not update the zone"
    ]
    assert [line.split()[0] for line in ran.lines] == ["create"] * 5
    assert host.served == []
    untouched(server)


def test_a_key_unknown_to_named_is_refused(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, stranger: Path
) -> None:
    """
    A key named's config names nowhere: named answers NOTAUTH with the TSIG error BADKEY,
    unsigned, since it has no secret to sign with (RFC 8945 sections 5.2.1 and 5.3.2).
    """
    path = write(FIVE_RECORDS, key=stranger)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: TSIG key refused by {ADDRESS}:{server.port} for zone provider.test: "
        "it does not know the key by this name and algorithm, or its ACL does not grant these "
        "records"
    ]
    secret = stranger.read_text().split('secret "')[1].split('"')[0]
    assert secret not in ran.out + ran.err
    assert host.served == []
    untouched(server)


@GRANTS
def test_the_first_update_changes_nothing(write: Write, server: Dns, keys: Keys) -> None:
    """named grants the first update to the updater key, and it changes nothing."""
    first_update_changes_nothing(write(FIVE_RECORDS), server, keys.good)


def test_records_of_other_types_keep_a_joining_domains_txt(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    named ignores a CNAME added beside other records and answers NOERROR (RFC 2136 section
    3.4.2.2): replacing the TXT record there would leave the name with no id at all.
    """
    other_types_keep_a_joining_domains_txt(write, host, server, publish)


@pytest.mark.parametrize("server", ["cyclic"], indirect=True)
def test_a_command_is_not_put_off_by_records_in_another_order(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    Before a command runs, the name is read again: named gives the same records in another
    order (rrset-order cyclic here, random by default), which is no change by anyone.
    """
    texts = ['"v=TLSRPTv1; rua=mailto:old@pub.test"', '"verification=1"', '"verification=2"']
    server.set("pub.test", "_smtp._tls.a.pub.test", "TXT", *texts, ttl=300)
    script = tmp_path / "dns-hook"
    script.write_text(SCRIPT.format(python=sys.executable))
    script.chmod(0o755)
    monkeypatch.setenv("CALLS", str(tmp_path / "calls.jsonl"))
    monkeypatch.setenv("KEY", str(server.key_file))
    monkeypatch.setenv("DNS", f"{server.address}:{server.port}")
    path = write(
        "a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test]}",
        f"command: {script}",
    )
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert sorted(server.values("_smtp._tls.a.pub.test")) == [
        "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test",
        "verification=1",
        "verification=2",
    ]
    assert publish(path).lines[-1] == "changed 0 of 2 records"
