"""The ``command`` backend: a script that records its calls and writes through RFC 2136."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from pathlib import Path

import dns.resolver
import pytest

from mtasts_host.config import load_config
from mtasts_host.dns import records
from mtasts_host.publish import authority, hook
from mtasts_host.store import build_snapshot

from ..knot import knot
from .conftest import Publish, Write, serve, theirs_once_served
from .servers import Dns, PolicyHost, zone_text

# A provider's CLI as far as the publisher can tell: it records its environment, then puts
# the record in the DNS with the test's key (which the publisher itself never sees), the way
# a provider's API works: per record (API=record, the default: delete these, add that), or
# per RRset (API=rrset: set the whole set, the records kept included).
SCRIPT = """#!{python}
import json, os, sys
import dns.query, dns.rdata, dns.rdataclass, dns.rdatatype, dns.rdtypes.ANY.TXT, dns.tsig
import dns.update
from mtasts_host.tsigkey import read_key_file

env = {{k: v for k, v in os.environ.items() if k.startswith("MTASTS_RECORD_")}}
with open(os.environ["CALLS"], "a") as calls:
    calls.write(json.dumps(env) + "\\n")
if os.environ.get("FAIL"):
    print("provider says no", file=sys.stderr)
    sys.exit(3)
key = read_key_file(os.environ["KEY"])
update = dns.update.UpdateMessage(
    env["MTASTS_RECORD_ZONE"] + ".", keyring=dns.tsig.Key(key.name, key.secret, key.algorithm)
)


def rdata(type, value):
    if type == "TXT":
        data = value.encode()
        strings = [data[i : i + 255] for i in range(0, len(data), 255)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rdata.from_text("IN", type, value + ".")


def lines(variable):
    return [line for line in env.get(variable, "").split("\\n") if line]


name = env["MTASTS_RECORD_NAME"] + "."
type, old_type = env["MTASTS_RECORD_TYPE"], env["MTASTS_RECORD_OLD_TYPE"]
value, ttl = env["MTASTS_RECORD_VALUE"], int(env["MTASTS_RECORD_TTL"])
if os.environ.get("API") == "rrset":
    if old_type and old_type != type:
        update.delete(name, old_type)
    kept = [rdata(type, text) for text in lines("MTASTS_RECORD_KEPT")]
    update.replace(name, ttl, rdata(type, value), *kept)
else:
    for old in lines("MTASTS_RECORD_OLD_VALUE"):
        update.delete(name, rdata(old_type, old))
    update.add(name, ttl, rdata(type, value))
host, port = os.environ["DNS"].split(":")
answer = dns.query.tcp(update, host, port=int(port), timeout=5)
if answer.rcode():
    print(f"update refused: {{answer.rcode()}}", file=sys.stderr)
    sys.exit(4)
"""

A = "a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test]}"


@pytest.fixture
def calls(tmp_path: Path, server: Dns, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The file where the script records its calls, one JSON object a line."""
    path = tmp_path / "calls.jsonl"
    path.touch()
    monkeypatch.setenv("CALLS", str(path))
    monkeypatch.setenv("KEY", str(server.key_file))
    monkeypatch.setenv("DNS", f"{server.address}:{server.port}")
    return path


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "dns-hook"
    path.write_text(SCRIPT.format(python=sys.executable))
    path.chmod(0o755)
    return path


def _calls(path: Path) -> list[dict[str, str]]:
    calls = [json.loads(line) for line in path.read_text().splitlines()]
    path.write_text("")
    return calls


def test_one_call_per_changed_record(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, calls: Path, script: Path
) -> None:
    path = write(A, f"command: {script}")
    config = serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    sts = server.values("_mta-sts.a.pub.test")
    assert sts == [f"v=STSv1; id={_id(config.domains['a.pub.test'].policy.render())}"]
    assert _calls(calls) == [
        {
            "MTASTS_RECORD_NAME": "_smtp._tls.a.pub.test",
            "MTASTS_RECORD_TYPE": "TXT",
            "MTASTS_RECORD_VALUE": "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test",
            "MTASTS_RECORD_TTL": "300",
            "MTASTS_RECORD_OLD_VALUE": "",
            "MTASTS_RECORD_OLD_TYPE": "",
            "MTASTS_RECORD_KEPT": "",
            "MTASTS_RECORD_ZONE": "pub.test",
        },
        {
            "MTASTS_RECORD_NAME": "_mta-sts.a.pub.test",
            "MTASTS_RECORD_TYPE": "TXT",
            "MTASTS_RECORD_VALUE": sts[0],
            "MTASTS_RECORD_TTL": "300",
            "MTASTS_RECORD_OLD_VALUE": "",
            "MTASTS_RECORD_OLD_TYPE": "",
            "MTASTS_RECORD_KEPT": "",
            "MTASTS_RECORD_ZONE": "pub.test",
        },
    ]
    assert publish(path).code == 0
    assert _calls(calls) == []
    path = write(A.replace("{mx", "{mode: testing, mx"), f"command: {script}")
    serve(host, path)
    assert publish(path).code == 0
    (call,) = _calls(calls)
    assert call["MTASTS_RECORD_OLD_VALUE"] == sts[0]
    assert call["MTASTS_RECORD_VALUE"] == server.values("_mta-sts.a.pub.test")[0] != sts[0]


@pytest.mark.parametrize("api", ["record", "rrset"])
def test_txt_records_of_other_kinds_stay(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
    api: str,
) -> None:
    """
    A hook that deletes each old value and adds the new one (per record), or sets the new
    value and the kept ones (per RRset), keeps the TXT records of other kinds beside ours:
    when ours is created beside them, and when it is replaced.
    """
    monkeypatch.setenv("API", api)
    server.set("pub.test", "_mta-sts.a.pub.test", "TXT", '"google-site-verification=abc"')
    server.set(
        "pub.test",
        "_smtp._tls.a.pub.test",
        "TXT",
        '"v=TLSRPTv1; rua=mailto:old@pub.test"',
        '"some-verification=xyz"',
        '"other"',
    )
    path = write(A, f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    sts = _sts(path)
    assert sorted(server.values("_mta-sts.a.pub.test")) == ["google-site-verification=abc", sts]
    assert sorted(server.values("_smtp._tls.a.pub.test")) == [
        "other",
        "some-verification=xyz",
        "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test",
    ]
    assert [_old(call) for call in _calls(calls)] == [
        ("TXT", ["v=TLSRPTv1; rua=mailto:old@pub.test"], ["other", "some-verification=xyz"]),
        ("", [], ["google-site-verification=abc"]),
    ]
    path = write(A.replace("{mx", "{mode: testing, mx"), f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert sorted(server.values("_mta-sts.a.pub.test")) == [
        "google-site-verification=abc",
        _sts(path),
    ]
    assert [_old(call) for call in _calls(calls)] == [
        ("TXT", [sts], ["google-site-verification=abc"])
    ]
    assert publish(path).lines[-1] == "changed 0 of 2 records"


@pytest.mark.parametrize("api", ["tsig", "record", "rrset"])
def test_a_change_of_type_replaces_our_record_and_never_another(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
    api: str,
) -> None:
    """
    A domain joining a txt_cname group: its _mta-sts TXT record gives way to the CNAME. A
    TXT record of another kind there is someone else's and a CNAME may not sit beside it
    (RFC 1034 section 3.6.2): the run names it and leaves it, as it leaves the addresses at
    an mta-sts name. Leaving the group, the CNAME gives way to a TXT record.
    """
    monkeypatch.setenv("API", api)
    backend = [] if api == "tsig" else [f"command: {script}"]
    server.set(
        "pub.test",
        "_mta-sts.a.pub.test",
        "TXT",
        '"v=STSv1; id=old"',
        '"google-site-verification=abc"',
    )
    group = "a.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}"
    path = write(group, *backend)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        'error: _mta-sts.a.pub.test holds TXT "google-site-verification=abc", which a CNAME '
        "may not sit beside (RFC 1034 section 3.6.2); not replaced: delete it by hand "
        "(senders ignore it), or drop the domain's txt_cname"
    ]
    assert sorted(server.values("_mta-sts.a.pub.test", "TXT")) == [
        "google-site-verification=abc",
        "v=STSv1; id=old",
    ]
    assert server.values("_mta-sts.a.pub.test", "CNAME") == []
    assert server.values("_mta-sts.provider.test") == [_sts(path, "provider.test")]
    if backend:
        assert [_old(call) for call in _calls(calls)] == [("", [], [])]  # the shared record

    server.set("pub.test", "_mta-sts.a.pub.test", "TXT", '"v=STSv1; id=old"')
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert (
        'replace _mta-sts.a.pub.test 3600 TXT "v=STSv1; id=old" -> 300 CNAME _mta-sts.provider.test'
    ) in ran.lines
    assert server.values("_mta-sts.a.pub.test", "CNAME") == ["_mta-sts.provider.test"]
    if backend:
        assert [_old(call) for call in _calls(calls)] == [("TXT", ["v=STSv1; id=old"], [])]

    path = write(A, *backend)
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert (
        f'replace _mta-sts.a.pub.test 300 CNAME _mta-sts.provider.test -> 300 TXT "{_sts(path)}"'
    ) in ran.lines
    assert server.values("_mta-sts.a.pub.test", "TXT") == [_sts(path)]
    if backend:
        assert [_old(call) for call in _calls(calls)] == [
            ("", [], []),
            ("CNAME", ["_mta-sts.provider.test"], []),
        ]


def test_a_failing_command(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FAIL", "1")
    path = write(A, f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: _smtp._tls.a.pub.test TXT: not changed: command {script} exited with 3: "
        "provider says no",
        f"error: _mta-sts.a.pub.test TXT: not changed: command {script} exited with 3: "
        "provider says no",
    ]
    assert server.values("_mta-sts.a.pub.test") == []


def test_a_command_killed_by_a_signal(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, tmp_path: Path
) -> None:
    # The kernel's OOM killer, or a timeout wrapper: not an exit status of -9.
    script = tmp_path / "killed-hook"
    script.write_text("#!/bin/sh\necho 'half done'\nkill -KILL $$\n")
    script.chmod(0o755)
    path = write(A, f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: _smtp._tls.a.pub.test TXT: not changed: command {script} was killed by "
        "SIGKILL: half done",
        f"error: _mta-sts.a.pub.test TXT: not changed: command {script} was killed by "
        "SIGKILL: half done",
    ]


def test_a_command_that_leaves_a_process_behind_has_ended(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """
    A command that starts something in the background (an agent, a credential helper)
    which keeps its output open has still ended when it exits: its write is done, and the
    run does not wait for the other process, nor report a timeout.
    """
    monkeypatch.setattr(hook, "TIMEOUT", 5)
    pids = tmp_path / "pids"
    wrapper = tmp_path / "agent-hook"
    wrapper.write_text(f"#!/bin/sh\nsleep 60 &\necho $! >> {pids}\nexec {script}\n")
    wrapper.chmod(0o755)
    path = write(A, f"command: {wrapper}")
    serve(host, path)
    try:
        ran = publish(path)
    finally:
        for pid in pids.read_text().split():
            os.kill(int(pid), signal.SIGKILL)
    assert (ran.code, ran.err) == (0, "")
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]


def test_the_last_line_of_much_output(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, tmp_path: Path
) -> None:
    # Kept as its last lines only: a command's output is not held in memory whole.
    script = tmp_path / "chatty-hook"
    script.write_text(
        "#!/bin/sh\nyes debug | head -c 50000000\necho 'quota exceeded' >&2\nexit 1\n"
    )
    script.chmod(0o755)
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert ran.err.splitlines() == [
        f"error: _mta-sts.a.pub.test TXT: not changed: command {script} exited with 1: "
        "quota exceeded"
    ]


def test_a_record_changed_before_the_command_runs(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, calls: Path, script: Path
) -> None:
    path = write(A, f"command: {script}")
    serve(host, path)
    theirs_once_served(host, server)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: _mta-sts.a.pub.test TXT: prerequisite failed: changed by someone else since "
        'it was read (nothing then, "v=STSv1; id=theirs" now); not overwritten'
    ]
    assert [call["MTASTS_RECORD_NAME"] for call in _calls(calls)] == ["_smtp._tls.a.pub.test"]


def test_without_a_server_the_system_resolver_finds_the_zone(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    monkeypatch.setattr(authority, "NAMESERVER_PORT", server.port)
    path = write(A, f"command: {script}", "server:")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert "create _mta-sts.a.pub.test 300 TXT" in ran.out
    assert (
        f"checked _mta-sts.a.pub.test TXT: ns1.pub.test (127.80.0.1:{server.port}): ok; "
        f"ns2.pub.test (127.80.0.2:{server.port}): unreachable"
    ) in ran.lines
    assert publish(path).lines[-1] == "changed 0 of 2 records"


def _id(body: bytes) -> str:
    from mtasts_host.policy import policy_id

    return policy_id(body)


def _sts(path: Path, domain: str = "a.pub.test") -> str:
    (value,) = [
        record.value
        for record in records(build_snapshot(load_config(path)))
        if record.name == f"_mta-sts.{domain}"
    ]
    return value


def _old(call: dict[str, str]) -> tuple[str, list[str], list[str]]:
    """What a call was told of the name: the old type, the old values, the values kept."""
    old, kept = call["MTASTS_RECORD_OLD_VALUE"], call["MTASTS_RECORD_KEPT"]
    return call["MTASTS_RECORD_OLD_TYPE"], sorted(old.splitlines()), sorted(kept.splitlines())


@pytest.mark.parametrize("lame", [False, True], ids=["down", "lame"])
def test_without_a_server_a_primary_that_does_not_answer_is_passed_over(
    lame: bool,
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """
    The zone's primary (its SOA MNAME, one of its name servers, the first by name too) is
    down, or lame (a knot that holds provider.test only, answering REFUSED for pub.test):
    the records are read from the next name server that answers for the zone.
    """
    server.set("pub.test", "ns0.pub.test", "A", "127.80.0.9")
    # Added beside ns1 and ns2: an update never deletes a zone's NS RRset (RFC 2136 3.4.2.3).
    server.set("pub.test", "pub.test", "NS", "ns0.pub.test.", "ns1.pub.test.", "ns2.pub.test.")
    soa = "ns0.pub.test. hostmaster.pub.test. 100 3600 600 86400 60"
    server.set("pub.test", "pub.test", "SOA", soa)
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    monkeypatch.setattr(authority, "NAMESERVER_PORT", server.port)
    path = write(A, f"command: {script}", "server:")
    serve(host, path)
    with contextlib.ExitStack() as stack:
        if lame:
            zones = {"provider.test": zone_text("provider.test")}
            stack.enter_context(knot(tmp_path / "lame", "127.80.0.9", server.port, zones))
        ran = publish(path)
        assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
        ns0 = "answers REFUSED for _mta-sts.a.pub.test TXT" if lame else "unreachable"
        assert (
            f"checked _mta-sts.a.pub.test TXT: ns1.pub.test (127.80.0.1:{server.port}): ok; "
            f"ns0.pub.test (127.80.0.9:{server.port}): {ns0}; "
            f"ns2.pub.test (127.80.0.2:{server.port}): unreachable"
        ) in ran.lines
        assert publish(path).lines[-1] == "changed 0 of 2 records"
