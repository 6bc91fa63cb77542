"""The ``command`` backend: a script that records its calls and writes through RFC 2136."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import dns.resolver
import pytest

from mtasts_host.config import load_config
from mtasts_host.dns import records
from mtasts_host.publish import AutoPublisher, authority, hook, readback
from mtasts_host.store import PolicyStore, build_snapshot

from ..conftest import wait_until
from ..knot import knot
from .conftest import Publish, Write, ended, serve, shell_script, theirs_once_served
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
ttl = max(ttl, int(os.environ.get("MIN_TTL", "0")))  # a provider's minimum
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
    shell_script(script, "echo 'half done'\nkill -KILL $$\n")
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
    shell_script(wrapper, f"sleep 60 &\necho $! >> {pids}\nexec {script}\n")
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
    _resolve_at(server, monkeypatch)
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
    _resolve_at(server, monkeypatch)
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


@pytest.mark.parametrize(
    ("signum", "ended"),
    [
        # Ctrl-C in a terminal signals the whole foreground process group.
        pytest.param(signal.SIGINT, (130, "mtasts-host: interrupted\n"), id="ctrl-c"),
        # As a supervisor, or timeout(1), signals the group; the status SIGTERM gives.
        pytest.param(signal.SIGTERM, (-signal.SIGTERM, ""), id="sigterm"),
    ],
)
def test_a_signal_lets_the_command_finish_its_record(
    signum: signal.Signals,
    ended: tuple[int, str],
    write: Write,
    host: PolicyHost,
    server: Dns,
    tmp_path: Path,
) -> None:
    """
    A signal to mtasts-host's process group: the command, in a session of its own, is not
    cut off between its delete and its add, and mtasts-host lets it finish the record in
    hand before it ends.
    """
    steps, go = tmp_path / "steps", tmp_path / "go"
    slow = tmp_path / "slow-hook"
    slow.write_text(
        f"#!/bin/sh\necho deleted >> {steps}\nwhile [ ! -e {go} ]; do sleep 0.01; done\n"
        f"echo added >> {steps}\n"
    )
    slow.chmod(0o755)
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {slow}")
    serve(host, path)
    argv = [sys.executable, "-m", "mtasts_host", "publish", str(path)]
    # A session of its own, as a shell gives a job: the signal below is the terminal's.
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as process:
        try:
            wait_until(lambda: steps.exists() or process.poll() is not None, timeout=20)
            assert process.poll() is None, process.communicate()
            os.killpg(process.pid, signum)
            go.touch()
            _, err = process.communicate(timeout=20)
        finally:
            go.touch()
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    assert (process.returncode, err) == ended
    assert steps.read_text().splitlines() == ["deleted", "added"]


def test_a_command_past_its_time_is_ended_with_what_it_started(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A shell script waiting on a provider's CLI: killing the shell alone left the CLI
    # running, to write the record at any time after the run had given up on it.
    monkeypatch.setattr(hook, "TIMEOUT", 1)
    pids = tmp_path / "pids"
    stuck = tmp_path / "stuck-hook"
    shell_script(stuck, f"sleep 60 &\necho $! >> {pids}\nwait\n")
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {stuck}")
    serve(host, path)
    ran = publish(path)
    (pid,) = [int(pid) for pid in pids.read_text().split()]
    try:
        assert ran.err.splitlines() == [
            f"error: _mta-sts.a.pub.test TXT: not changed: command {stuck} did not end within 1 s"
        ]
        wait_until(lambda: ended(pid), timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_change_the_provider_applies_later_is_waited_for(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
    tmp_path: Path,
) -> None:
    """
    A provider whose API answers before the change is in the DNS (Route53's PENDING): the
    record is read until it shows, before the next one is written and before the read-back.
    """
    later = tmp_path / "async-hook"
    shell_script(later, f"(sleep 2; exec {script}) </dev/null >/dev/null 2>&1 &\n")
    path = write(A, f"command: {later}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]
    assert ran.lines[-1] == "changed 2 of 2 records"


def test_a_change_that_never_shows_is_one_clear_line(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(readback, "PROPAGATION_TIMEOUT", 1.0)
    monkeypatch.setattr(readback, "PROPAGATION_INTERVAL", 0.1)
    lost = tmp_path / "lost-hook"
    shell_script(lost, "exit 0\n")
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {lost}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: _mta-sts.a.pub.test TXT: the command succeeded, but "
        f"{server.address}:{server.port} still holds nothing after 1 s"
    ]
    assert ran.lines[-1] == "changed 0 of 1 records"


def test_sigterm_leaves_no_command_running_behind(
    write: Write, host: PolicyHost, server: Dns, tmp_path: Path
) -> None:
    """
    SIGTERM to the process group (a supervisor, timeout(1)) while a command hangs: once it
    has had its time, mtasts-host ends it, in its session of its own, before it ends itself.
    """
    pid = tmp_path / "pid"
    stuck = tmp_path / "stuck-hook"
    shell_script(stuck, f"echo $$ > {pid}.new\nmv {pid}.new {pid}\nexec sleep 60\n")
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {stuck}")
    serve(host, path)
    argv = [sys.executable, "-m", "mtasts_host", "publish", str(path)]
    with subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    ) as process:
        try:
            wait_until(lambda: pid.exists() or process.poll() is not None, timeout=20)
            os.killpg(process.pid, signal.SIGTERM)
            assert process.wait(20) == -signal.SIGTERM, process.communicate()
            wait_until(lambda: ended(int(pid.read_text())), timeout=10)
        finally:
            with contextlib.suppress(ProcessLookupError, FileNotFoundError):
                os.kill(int(pid.read_text()), signal.SIGKILL)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        pytest.param('"site\\000verify"', "'site\\x00verify'", id="nul"),
        pytest.param('"site\\010verify"', "'site\\nverify'", id="line-break"),
        pytest.param('"v=STSv1; id=old\\000"', "'v=STSv1; id=old\\x00'", id="ours"),
    ],
)
def test_a_record_the_environment_cannot_carry_is_named(
    text: str,
    shown: str,
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    calls: Path,
    script: Path,
) -> None:
    # A NUL byte ends an environment variable, and a line break splits one value in two: the
    # command would be told of records that are not there, and rewrite them so.
    server.set("pub.test", "_mta-sts.a.pub.test", "TXT", text, ttl=300)
    path = write("a.pub.test: {mx: [mx.pub.test]}", f"command: {script}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: _mta-sts.a.pub.test TXT: not changed: command {script} not run: the name "
        f"holds {shown}, whose NUL byte or line break its environment cannot pass on; change "
        "that record by hand"
    ]
    assert _calls(calls) == []


def _resolve_at(server: Dns, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a ``server`` in the publish block: the zone's name servers are found by asking
    ``server``, and asked on its port."""
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers = [server.address]
    resolver.port = server.port
    monkeypatch.setattr(dns.resolver, "default_resolver", resolver)
    monkeypatch.setattr(authority, "NAMESERVER_PORT", server.port)


def _kept_longer(server: Dns, name: str) -> str:
    return (
        f"warning: {name} TXT: {server.address}:{server.port} holds it with TTL 600, not the 300 "
        "asked for: the provider may have a minimum (or a maximum), or apply it later; while "
        "they differ, each run writes it again (dns_ttl: 600 would match it)"
    )


@pytest.fixture
def minimum(monkeypatch: pytest.MonkeyPatch) -> None:
    """The provider keeps 600 s at least (GoDaddy's minimum), whatever TTL it is given; a run
    that waited for the TTL asked for would give up after 2 s rather than 120."""
    monkeypatch.setenv("MIN_TTL", "600")
    monkeypatch.setattr(readback, "PROPAGATION_TIMEOUT", 2.0)
    monkeypatch.setattr(readback, "PROPAGATION_INTERVAL", 0.1)


@pytest.mark.usefixtures("minimum")
def test_a_provider_that_keeps_a_longer_ttl_is_a_warning(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, calls: Path, script: Path
) -> None:
    """
    The record holds its value, which is what senders act on: the run succeeds and names the
    TTL kept. A TTL-only difference is written again in every run, since no run can tell a
    provider's minimum from a TTL changed by hand, until dns_ttl matches it.
    """
    path = write(A, f"command: {script}")
    serve(host, path)
    warnings = [_kept_longer(server, f"{n}.a.pub.test") for n in ("_mta-sts", "_smtp._tls")]
    ran = publish(path)
    assert (ran.code, ran.err.splitlines()) == (0, warnings), ran.out + ran.err
    assert ran.lines[-1] == "changed 2 of 2 records"
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]
    assert server.ttl("_mta-sts.a.pub.test") == 600
    assert len(_calls(calls)) == 2

    ran = publish(path)
    assert (ran.code, ran.err.splitlines()) == (0, warnings), ran.out + ran.err
    assert (
        ran.lines[0]
        == f'replace _mta-sts.a.pub.test 600 TXT "{_sts(path)}" -> 300 TXT "{_sts(path)}"'
    )
    assert [call["MTASTS_RECORD_TTL"] for call in _calls(calls)] == ["300", "300"]

    path = write(A.replace("{mx", "{dns_ttl: 600, mx"), f"command: {script}")
    ran = publish(path)
    assert (ran.code, ran.err) == (0, ""), ran.out + ran.err
    assert ran.lines[-1] == "changed 0 of 2 records"
    assert _calls(calls) == []


@pytest.mark.usefixtures("minimum")
def test_a_record_someone_else_put_there_with_another_ttl_is_published(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, calls: Path, script: Path
) -> None:
    """Another replica wrote the wanted value between this run's read and its command, and
    the provider kept its own TTL: nothing is left to do."""
    path = write(A, f"command: {script}")
    serve(host, path)

    def another_replica(name: str, body: bytes) -> None:
        host.on_serve = None
        server.set("pub.test", "_mta-sts.a.pub.test", "TXT", f'"{_sts(path)}"', ttl=600)

    host.on_serve = another_replica
    ran = publish(path)
    warnings = [_kept_longer(server, f"{n}.a.pub.test") for n in ("_mta-sts", "_smtp._tls")]
    assert (ran.code, ran.err.splitlines()) == (0, warnings), ran.out + ran.err
    assert (
        f'already published (by another run): _mta-sts.a.pub.test 300 TXT "{_sts(path)}"'
        in ran.lines
    )
    assert [call["MTASTS_RECORD_NAME"] for call in _calls(calls)] == ["_smtp._tls.a.pub.test"]


@pytest.mark.usefixtures("minimum")
def test_serve_publishes_past_a_provider_minimum_ttl_once(
    write: Write,
    host: PolicyHost,
    server: Dns,
    calls: Path,
    script: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The automatic publisher's run succeeds, with one warning per record, and is not retried."""
    caplog.set_level(logging.INFO)
    path = write(A, "auto: true", f"command: {script}")
    serve(host, path)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store, first_retry=0.1, last_retry=0.1)
    publisher.start()
    try:
        wait_until(lambda: sum(publisher.runs.values()) > 0, timeout=20)
    finally:
        publisher.stop()
    assert publisher.runs == {"success": 1, "failure": 0}
    assert publisher.current() == {"a.pub.test": True}
    assert [
        f"warning: {r.getMessage().removeprefix('publish: ')}"
        for r in caplog.records
        if r.levelno >= logging.WARNING
    ] == [_kept_longer(server, f"{n}.a.pub.test") for n in ("_mta-sts", "_smtp._tls")]
    assert len(_calls(calls)) == 2
