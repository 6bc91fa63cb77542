from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from mtasts_host.cli import main
from mtasts_host.config import Config, load_config
from mtasts_host.publish import authority, guard, query
from mtasts_host.publish.plan import Change, wanted
from mtasts_host.publish.query import Server
from mtasts_host.publish.rfc2136 import Rfc2136
from mtasts_host.store import build_snapshot

from ..knot import knot
from ..processes import free_port
from .servers import (
    DNS1,
    DNS2,
    POLICY_HOST,
    ZONES,
    Dns,
    PolicyHost,
    keymgr,
    policy_host,
    zone_text,
)

FIVE_RECORDS = """
a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test], cname: web.pub.test}
h1.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}
"""
"""Domains with every kind of record between them, in both zones: the _mta-sts TXT, mta-sts
CNAME and _smtp._tls TXT of a.pub.test, and h1.pub.test's _mta-sts CNAME to the shared TXT
record of provider.test."""


def untouched(server: Dns) -> None:
    """Both zones as the server loaded them: serial 1, none of FIVE_RECORDS' records."""
    assert [server.serial(zone) for zone in ZONES] == [1, 1]
    for name, rdtype in [
        ("_mta-sts.a.pub.test", "TXT"),
        ("_smtp._tls.a.pub.test", "TXT"),
        ("mta-sts.a.pub.test", "CNAME"),
        ("_mta-sts.h1.pub.test", "CNAME"),
        ("_mta-sts.provider.test", "TXT"),
    ]:
        assert server.values(name, rdtype) == [], name


@dataclass(frozen=True)
class Keys:
    good: Path
    """May update the zones."""
    other: Path
    """Known to the server, but may not update anything."""


@pytest.fixture(scope="session")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    directory = tmp_path_factory.mktemp("keys")
    return Keys(keymgr(directory, "good"), keymgr(directory, "other"))


@pytest.fixture(scope="session")
def secondary(tmp_path_factory: pytest.TempPathFactory, keys: Keys) -> Iterator[Dns]:
    """ns2.pub.test: the zones as they were at first, never updated (a slow secondary)."""
    port = free_port(DNS2)
    zones = {origin: zone_text(origin) for origin in ZONES}
    tmp = tmp_path_factory.mktemp("secondary")
    with knot(tmp / "knot", DNS2, port, zones, keys=[keys.good]):
        yield Dns(DNS2, port, keys.good)


@pytest.fixture
def server(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    keys: Keys,
    secondary: Dns,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Dns]:
    """
    ns1.pub.test: knot, authoritative for pub.test and provider.test, updatable with the
    good key (within the ACL lines a test gives as this fixture's parameter); the publisher
    asks the other name servers on the secondary's port, waits a second at most for an
    answer, and fetches a policy every 0.1 s.
    """
    limits: Sequence[str] = getattr(request, "param", ())
    monkeypatch.setattr(authority, "NAMESERVER_PORT", secondary.port)
    monkeypatch.setattr(query, "TIMEOUT", 1.0)
    monkeypatch.setattr(guard, "INTERVAL", 0.1)
    port = free_port(DNS1)
    zones = {origin: zone_text(origin) for origin in ZONES}
    known = [keys.good, keys.other]
    with knot(tmp_path / "knot", DNS1, port, zones, keys=known, updater="good", limits=limits):
        yield Dns(DNS1, port, keys.good)


@pytest.fixture
def host() -> Iterator[PolicyHost]:
    with policy_host(POLICY_HOST, free_port(POLICY_HOST)) as serving:
        yield serving


Write = Callable[..., Path]


@pytest.fixture
def write(tmp_path: Path, server: Dns, host: PolicyHost, keys: Keys) -> Write:
    """
    Write a config: ``domains`` (YAML lines) and a publish block for the test's servers,
    with ``publish`` lines added to or replacing its defaults.
    """

    def write_config(domains: str, *publish: str, key: Path | None = None) -> Path:
        settings = {
            "server": f"{server.address}:{server.port}",
            "tsig_key_file": str(key or keys.good),
            "verify_url": "http://mta-sts.{domain}/.well-known/mta-sts.txt",
            "verify_connect": f"{host.address}:{host.port}",
            "cache_wait": "0",
            "verify_timeout": "3",
        }
        for line in publish:
            name, _, value = line.partition(":")
            settings[name.strip()] = value.strip()
            if name == "command":
                del settings["tsig_key_file"]
        block = "".join(f"  {name}: {value}\n" for name, value in settings.items() if value)
        path = tmp_path / "config.yaml"
        path.write_text(
            "defaults: {mode: enforce, dns_ttl: 300}\ndomains:\n"
            + textwrap.indent(textwrap.dedent(domains).strip() + "\n", "  ")
            + "publish:\n"
            + block
        )
        return path

    return write_config


def first_update_changes_nothing(path: Path, server: Dns, key: Path) -> None:
    """
    The publisher's first update, signed with ``key``, deletes at each name and type the
    config's records will take a record no zone holds (RFC 2136 section 3.4.2.4): the
    server grants it, and no zone changes, the records already there and the serials
    included.
    """
    server.set("pub.test", "_mta-sts.a.pub.test", "TXT", '"v=STSv1; id=old"')
    server.set("pub.test", "mta-sts.a.pub.test", "CNAME", "elsewhere.pub.test.")
    serials = [server.serial(zone) for zone in ZONES]
    pending: dict[str, list[Change]] = {}
    for item in wanted(build_snapshot(load_config(path))):
        zone = "provider.test" if item.record.name.endswith(".provider.test") else "pub.test"
        pending.setdefault(zone, []).append(Change(item, None))
    assert set(pending) == set(ZONES)
    assert Rfc2136(Server(server.address, server.port), str(key)).check(pending) is None
    assert [server.serial(zone) for zone in ZONES] == serials
    assert server.values("_mta-sts.a.pub.test") == ["v=STSv1; id=old"]
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["elsewhere.pub.test"]


def other_types_keep_a_joining_domains_txt(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> Path:
    """
    ``_mta-sts.a.pub.test`` holds our TXT record and a CAA record when a.pub.test joins a
    txt_cname group: named and left, since a server drops a CNAME added beside other records
    (RFC 2136 section 3.4.2.2) after the TXT record it replaces is gone. Returns the
    config's path.
    """
    server.set("pub.test", "_mta-sts.a.pub.test", "TXT", '"v=STSv1; id=old"')
    server.set("pub.test", "_mta-sts.a.pub.test", "CAA", '0 issue "ca.pub.test"')
    path = write("a.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        'error: _mta-sts.a.pub.test holds CAA 0 issue "ca.pub.test", which a CNAME may not '
        "sit beside (RFC 1034 section 3.6.2); not replaced: delete it by hand, or drop the "
        "domain's txt_cname"
    ]
    assert server.values("_mta-sts.a.pub.test") == ["v=STSv1; id=old"]
    assert server.values("_mta-sts.a.pub.test", "CNAME") == []
    return path


def theirs_once_served(host: PolicyHost, server: Dns) -> None:
    """
    Someone else's write between the publisher's read and its update: the first time the
    policy host answers, the ``_mta-sts`` TXT record of a.pub.test becomes theirs.
    """

    def someone_else(name: str, body: bytes) -> None:
        host.on_serve = None
        server.set("pub.test", "_mta-sts.a.pub.test", "TXT", '"v=STSv1; id=theirs"', ttl=300)

    host.on_serve = someone_else


def serve(host: PolicyHost, path: Path) -> Config:
    """Have the policy host serve every policy of the config at ``path``, as a reload would."""
    config = load_config(path)
    for domain, settings in config.domains.items():
        host.bodies[f"mta-sts.{domain}"] = settings.policy.render()
    return config


@dataclass(frozen=True)
class Ran:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


Publish = Callable[..., Ran]


@pytest.fixture
def publish(capsys: pytest.CaptureFixture[str]) -> Publish:
    """``mtasts-host publish`` run in-process."""

    def run(path: Path, *args: str) -> Ran:
        capsys.readouterr()
        code = main(["publish", str(path), *args])
        captured = capsys.readouterr()
        return Ran(code, captured.out, captured.err)

    return run


def ended(pid: int) -> bool:
    """Whether process ``pid`` has ended: gone, or a zombie its new parent has not reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def shell_script(path: Path, text: str) -> Path:
    """An executable ``/bin/sh`` script at ``path``, of the lines ``text``: a hook command."""
    path.write_text(f"#!/bin/sh\n{text}")
    path.chmod(0o755)
    return path
