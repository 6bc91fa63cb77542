"""The ``command`` backend: a script that records its calls and writes through RFC 2136."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import dns.resolver
import pytest

from mtasts_host.publish import authority

from .conftest import Publish, Write, serve, theirs_once_served
from .servers import Dns, PolicyHost

# A provider's CLI as far as the publisher can tell: it records its environment, then puts
# the record in the DNS with the test's key (which the publisher itself never sees).
SCRIPT = """#!{python}
import json, os, sys
import dns.query, dns.rdataset, dns.tsig, dns.update
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
value = env["MTASTS_RECORD_VALUE"]
text = '"' + value + '"' if env["MTASTS_RECORD_TYPE"] == "TXT" else value + "."
name = env["MTASTS_RECORD_NAME"] + "."
if env["MTASTS_RECORD_OLD_TYPE"] and env["MTASTS_RECORD_OLD_TYPE"] != env["MTASTS_RECORD_TYPE"]:
    update.delete(name, env["MTASTS_RECORD_OLD_TYPE"])
ttl = int(env["MTASTS_RECORD_TTL"])
update.replace(name, dns.rdataset.from_text("IN", env["MTASTS_RECORD_TYPE"], ttl, text))
host, port = os.environ["DNS"].split(":")
dns.query.tcp(update, host, port=int(port), timeout=5)
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
            "MTASTS_RECORD_ZONE": "pub.test",
        },
        {
            "MTASTS_RECORD_NAME": "_mta-sts.a.pub.test",
            "MTASTS_RECORD_TYPE": "TXT",
            "MTASTS_RECORD_VALUE": sts[0],
            "MTASTS_RECORD_TTL": "300",
            "MTASTS_RECORD_OLD_VALUE": "",
            "MTASTS_RECORD_OLD_TYPE": "",
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
