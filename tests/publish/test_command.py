"""``mtasts-host publish`` against a real knot server and a policy host on loopback."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import dns.message as dns_message
import pytest

from mtasts_host import dns, tsigkey
from mtasts_host.config import load_config
from mtasts_host.policy import policy_id
from mtasts_host.publish import query, rfc2136
from mtasts_host.publish.backend import Applied, Result
from mtasts_host.publish.fetch import fetch
from mtasts_host.publish.plan import Change, Wanted
from mtasts_host.publish.query import Server
from mtasts_host.publish.runner import publish as publish_records
from mtasts_host.store import build_snapshot

from ..conftest import wait_until
from ..knot import knot
from ..processes import free_port, running, serve_argv
from .conftest import (
    Keys,
    Publish,
    Write,
    first_update_changes_nothing,
    other_types_keep_a_joining_domains_txt,
    serve,
    theirs_once_served,
)
from .servers import DNS1, POLICY_HOST, ZONES, Dns, PolicyHost, keymgr, zone_text

A = "a.pub.test: {mx: [mx.pub.test]}"
REPLICAS = "127.80.1.3"
"""Where the real replicas of a test listen."""
FULL = """
a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test], cname: web.pub.test}
h1.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}
h2.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}
"""


def _published(server: Dns, path: Path) -> None:
    """The DNS holds exactly what ``mtasts-host dns`` prints for the config at ``path``."""
    for record in dns.records(build_snapshot(load_config(path))):
        assert server.values(record.name, record.type) == [record.value], record
        assert server.ttl(record.name, record.type) == record.ttl, record


def _sts(path: Path, domain: str = "a.pub.test") -> str:
    (value,) = [
        r.value
        for r in dns.records(build_snapshot(load_config(path)))
        if r.name == f"_mta-sts.{domain}"
    ]
    return value


@pytest.fixture
def updates(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, str]]:
    """Each RFC 2136 update the publisher sends: when, and for which name."""
    sent: list[tuple[float, str]] = []
    apply = rfc2136.Rfc2136.apply

    def recorded(self: rfc2136.Rfc2136, change: Change, zone: str) -> Applied:
        sent.append((time.monotonic(), change.record.name))
        return apply(self, change, zone)

    monkeypatch.setattr(rfc2136.Rfc2136, "apply", recorded)
    return sent


def test_first_publication_then_nothing_to_do(
    write: Write, host: PolicyHost, server: Dns, secondary: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serve(host, path)
    first = publish(path)
    assert (first.code, first.err) == (0, "")
    records = list(dns.records(build_snapshot(load_config(path))))
    created = [line for line in first.lines if line.startswith("create ")]
    assert len(created) == len(records) == 6
    assert created[0] == f'create _mta-sts.a.pub.test 300 TXT "{_sts(path)}"'
    assert "create _mta-sts.h1.pub.test 300 CNAME _mta-sts.provider.test" in created
    assert first.lines[-1] == "changed 6 of 6 records"
    assert sum(line.startswith("checked ") for line in first.lines) == 6
    assert (
        f"checked _mta-sts.h1.pub.test CNAME: 127.80.0.1:{server.port}: ok; "
        f"ns2.pub.test (127.80.0.2:{secondary.port}): not yet (a zone transfer may be pending)"
    ) in first.lines
    _published(server, path)
    serial = server.serial("pub.test")
    again = publish(path)
    assert (again.code, again.err) == (0, "")
    assert [line.split()[0] for line in again.lines] == ["unchanged"] * 6 + ["changed"]
    assert again.lines[-1] == "changed 0 of 6 records"
    assert server.serial("pub.test") == serial


def test_only_the_records_written_are_read_back(
    write: Write, host: PolicyHost, server: Dns, secondary: Dns, publish: Publish
) -> None:
    domains = "\n".join(f"d{i}.pub.test: {{mx: [mx.pub.test]}}" for i in range(3))
    path = write(domains)
    serve(host, path)
    assert publish(path).code == 0
    path = write(domains.replace("d1.pub.test: {", "d1.pub.test: {mode: testing, "))
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    # Step 1 read the two others a moment ago: reading them again, at every name server,
    # is what kept a run of thousands of domains busy for one change.
    checked = [line for line in ran.lines if line.startswith("checked ")]
    assert [line.split(":")[0] for line in checked] == ["checked _mta-sts.d1.pub.test TXT"]
    assert ran.lines[-1] == "changed 1 of 3 records"
    _published(server, path)


def test_a_change_waits_for_the_new_body_and_then_cache_wait(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    updates: list[tuple[float, str]],
) -> None:
    path = write(A, "cache_wait: 1", "verify_timeout: 10")
    serve(host, path)
    assert publish(path).code == 0
    old_body, old = host.bodies["mta-sts.a.pub.test"], _sts(path)
    path = write("a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 1")
    new_body = load_config(path).domains["a.pub.test"].policy.render()
    updates.clear()
    # The server reloads a second after the publisher starts waiting for it.
    later = threading.Timer(1.0, serve, (host, path))
    later.start()
    try:
        ran = publish(path)
    finally:
        later.join()
    assert (ran.code, ran.err) == (0, "")
    assert f'replace _mta-sts.a.pub.test 300 TXT "{old}" -> 300 TXT "{_sts(path)}"' in ran.lines
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]
    ((updated, name),) = updates
    assert name == "_mta-sts.a.pub.test"
    first_new = host.first_served("mta-sts.a.pub.test", new_body)
    served_before = [body for at, _, body in host.served if at < updated]
    # The old body was seen while waiting; the new one three times in a row before the update.
    assert old_body in served_before
    assert served_before[-3:] == [new_body] * 3
    assert updated >= first_new + 1.0  # cache_wait, counted from the first sight


def _balanced(host: PolicyHost, domain: str, new: bytes, old: bytes, stale: set[int]) -> None:
    """
    A balancer in front of replicas of which some have not reloaded yet: the answers for
    ``mta-sts.<domain>`` numbered in ``stale`` (from 0) come from one that serves ``old``.
    """
    _balancing(host, {domain: (new, old, stale)})


def _balancing(host: PolicyHost, domains: dict[str, tuple[bytes, bytes, set[int]]]) -> None:
    """``_balanced`` for several domains at once, each with its own (new, old, stale)."""
    answered = dict.fromkeys(domains, 0)
    for domain, (new, old, stale) in domains.items():
        host.bodies[f"mta-sts.{domain}"] = old if 0 in stale else new

    def next_answer(served: str, body: bytes) -> None:
        domain = served.removeprefix("mta-sts.")
        if domain in domains:
            new, old, stale = domains[domain]
            answered[domain] += 1
            host.bodies[served] = old if answered[domain] in stale else new

    host.on_serve = next_answer


def test_a_replica_the_streak_missed_holds_the_id_back(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    The three answers in a row came from the replica that had reloaded, as a balancer
    choosing at random often sends them, while another still serves the old policy: the id
    is not published, as senders would cache the old policy under it (RFC 8461 section 8.1).
    """
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    old_body, old = host.bodies["mta-sts.a.pub.test"], server.values("_mta-sts.a.pub.test")
    path = write("a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 1")
    new_body = load_config(path).domains["a.pub.test"].policy.render()
    # Every fourth answer, from the first after the streak on, is the old one: never stale
    # for cache_wait, never published.
    _balanced(host, "a.pub.test", new_body, old_body, set(range(3, 10_000, 4)))
    ran = publish(path)
    assert ran.code == 1
    assert server.values("_mta-sts.a.pub.test") == old
    url = "http://mta-sts.a.pub.test/.well-known/mta-sts.txt"
    assert (
        f"a.pub.test: {url} no longer serves the new policy (it serves id "
        f"{policy_id(old_body)}); waiting for it again"
    ) in ran.lines
    (error,) = ran.err.splitlines()
    assert error.startswith(
        f"error: a.pub.test: the new policy (id {policy_id(new_body)}) is not served at {url} "
        "after 3 s ("
    )
    assert error.endswith("); that id is not published")


def test_a_wait_again_past_verify_timeout_says_how_long_it_was(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    A first streak that took most of verify_timeout, then a replica still serving the old
    policy: the domain is awaited again for a verify_timeout from the cache wait's start,
    which the message gave as "after 6 s" all the same.
    """
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    old_body = host.bodies["mta-sts.a.pub.test"]
    path = write(
        "a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 1", "verify_timeout: 6"
    )
    new_body = load_config(path).domains["a.pub.test"].policy.render()
    # 20 old answers, 0.1 s apart (at least 2 s), then the streak, then every fourth old:
    # 23 fetches in 6 s leave each a generous time on a loaded machine.
    _balanced(host, "a.pub.test", new_body, old_body, {*range(20), *range(23, 10_000, 4)})
    ran = publish(path)
    assert ran.code == 1
    (error,) = ran.err.splitlines()
    waited = re.fullmatch(r"error: a\.pub\.test: .* is not served at \S+ after (\d+) s \(.*", error)
    assert waited is not None, error
    # At least the first streak (2.2 s) and a verify_timeout (6 s) after it.
    assert int(waited[1]) >= 8


def test_a_replica_that_reloads_during_cache_wait_restarts_it(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    updates: list[tuple[float, str]],
) -> None:
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    old_body = host.bodies["mta-sts.a.pub.test"]
    path = write("a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 1")
    new_body = load_config(path).domains["a.pub.test"].policy.render()
    # The stale replica answers twice while the publisher waits, then has reloaded.
    _balanced(host, "a.pub.test", new_body, old_body, {3, 7})
    updates.clear()
    host.served.clear()
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]
    ((updated, _),) = updates
    last_old = max(at for at, _, body in host.served if body == old_body)
    assert [body for at, _, body in host.served].count(old_body) == 2
    # cache_wait, counted again from the first answer after the old one.
    assert updated >= last_old + 1.0


def test_a_domain_seen_again_after_its_verify_timeout_has_one_from_the_wait(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    a.pub.test was served at once, b.pub.test a second later; while caches fill, past
    a's verify_timeout, a replica serves a's old policy once. a is awaited again with a
    verify_timeout counted from the start of that wait, not with none left: the first
    streaks of a large change take longer than one.
    """
    domains = "a.pub.test: {mx: [mx.pub.test]}\nb.pub.test: {mx: [mx.pub.test]}"
    path = write(domains)
    serve(host, path)
    assert publish(path).code == 0
    old = {d: host.bodies[f"mta-sts.{d}"] for d in ("a.pub.test", "b.pub.test")}
    changed = domains.replace("]}", "], mode: testing}")
    path = write(changed, "cache_wait: 2", "verify_timeout: 2")
    config = load_config(path)
    new = {d: config.domains[d].policy.render() for d in old}
    # Fetched every 0.1 s: b's streak begins after its tenth answer, a second in; a's old
    # answer comes ten rounds of the wait later, at least, past a's 2 s.
    _balancing(
        host,
        {
            "a.pub.test": (new["a.pub.test"], old["a.pub.test"], {12}),
            "b.pub.test": (new["b.pub.test"], old["b.pub.test"], set(range(10))),
        },
    )
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    again = [line for line in ran.lines if line.endswith("; waiting for it again")]
    assert [line.split(":")[0] for line in again] == ["a.pub.test"]
    assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]


def test_an_error_during_cache_wait_is_no_old_answer(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    One fetch fails while the publisher waits for caches, after the domain's
    ``verify_timeout``: nothing old was served (no cache keeps a failed answer), so the id
    is still published, rather than the domain awaited again with no time left.
    """
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    path = write(
        "a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 6", "verify_timeout: 2"
    )
    serve(host, path)
    answered = [0]

    def flaky(served: str, body: bytes) -> None:
        answered[0] += 1
        if answered[0] == 35:  # fetched every 0.1 s: past verify_timeout, within cache_wait
            raise ConnectionResetError("a replica restarting")  # a 503

    host.on_serve = flaky
    ran = publish(path)
    assert answered[0] > 35
    assert (ran.code, ran.err) == (0, "")
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]


class _Lines:
    """A run's output: its problems, the rest left out."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def info(self, line: str) -> None:
        pass

    def unchanged(self, line: str) -> None:
        pass

    def warning(self, line: str) -> None:
        pass

    def problem(self, line: str) -> None:
        self.problems.append(line)


def test_two_serve_replicas_one_not_reloaded_yet(write: Write, server: Dns, tmp_path: Path) -> None:
    """
    Two real replicas, the second not yet given the new config (its ConfigMap update comes
    later), behind a balancer that happens to send the first three fetches to the first:
    the id waits until the second serves the new policy too.
    """
    old = write(A, "cache_wait: 1").read_text()
    new_path = write("a.pub.test: {mx: [mx.pub.test], mode: testing}", "cache_wait: 1")
    new = new_path.read_text()
    snapshot = build_snapshot(load_config(new_path))
    ports = [free_port(REPLICAS), free_port(REPLICAS)]
    configs = [tmp_path / "first" / "config.yaml", tmp_path / "second" / "config.yaml"]
    for config, text in zip(configs, [new, old], strict=True):
        config.parent.mkdir()
        config.write_text(text)
    fetched = [0]

    def balancer(url: str) -> bytes:
        # The first, the first, the first, the second, and again.
        replica = 1 if fetched[0] % 4 == 3 else 0
        fetched[0] += 1
        return fetch(url, connect=(REPLICAS, ports[replica]), timeout=5)

    with contextlib.ExitStack() as replicas:
        for n, (config, port) in enumerate(zip(configs, ports, strict=True)):
            argv = serve_argv(config, port, "--host", REPLICAS)
            replicas.enter_context(running(argv, tmp_path / f"{n}.log", REPLICAS, port))
        early = _Lines()
        assert publish_records(snapshot, early, fetcher=balancer).problems
        assert server.values("_mta-sts.a.pub.test") == []
        assert early.problems[0].startswith(
            f"a.pub.test: the new policy (id {snapshot.served['a.pub.test'].id}) is not served"
        )
        configs[1].write_text(new)
        body = snapshot.served["a.pub.test"].body
        url = "http://mta-sts.a.pub.test/.well-known/mta-sts.txt"
        wait_until(lambda: fetch(url, connect=(REPLICAS, ports[1])) == body)
        later = _Lines()
        assert publish_records(snapshot, later, fetcher=balancer).problems == ()
    assert server.values("_mta-sts.a.pub.test") == [_sts(new_path)]


def test_a_body_never_served_holds_back_only_the_id(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serve(host, path)
    assert publish(path).code == 0
    old = server.values("_mta-sts.a.pub.test")
    changed = FULL.replace("cname: web.pub.test", "cname: web2.pub.test, mode: testing")
    path = write(changed, "verify_timeout: 1")
    ran = publish(path, "--domain", "a.pub.test")
    assert ran.code == 1
    (error,) = ran.err.splitlines()
    assert error.startswith(
        "error: a.pub.test: the new policy (id "
        f"{_sts(path).partition('id=')[2]}) is not served at "
        "http://mta-sts.a.pub.test/.well-known/mta-sts.txt after 1 s (it serves id "
    )
    assert error.endswith("); that id is not published")
    # Its records that carry no id do not wait for the body.
    assert "published mta-sts.a.pub.test 300 CNAME web2.pub.test" in ran.lines
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["web2.pub.test"]
    assert server.values("_mta-sts.a.pub.test") == old
    assert ran.lines[-1] == "changed 1 of 3 records"


@pytest.mark.parametrize(
    ("signum", "status"),
    [
        pytest.param(signal.SIGINT, 130, id="ctrl-c"),
        pytest.param(signal.SIGTERM, -signal.SIGTERM, id="sigterm"),
    ],
)
def test_a_signal_while_waiting_for_the_new_body_ends_the_wait(
    signum: signal.Signals, status: int, write: Write, server: Dns, tmp_path: Path
) -> None:
    # The fetching threads knew nothing of the signal: publish went on waiting for them, up
    # to verify_timeout, before it ended.
    path = write(A, "verify_timeout: 3600")
    log = tmp_path / "publish.log"
    argv = [sys.executable, "-m", "mtasts_host", "publish", str(path)]
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
    try:
        wait_until(lambda: "waiting for the new policies" in log.read_text(), timeout=20)
        process.send_signal(signum)
        assert process.wait(30) == status
    finally:
        process.kill()
        process.wait()
    assert server.values("_mta-sts.a.pub.test") == []


def test_a_new_domain_behind_a_proxy_gets_its_cname_before_its_id(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    Without verify_connect, verify_url is fetched where senders go: through the mta-sts
    CNAME, so the body cannot be seen before the CNAME is published (here: verify_connect
    leads nowhere until then). The id follows in a later run, once the body is seen.
    """
    domain = "a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:r@pub.test], cname: web.pub.test}"
    nowhere = f"{POLICY_HOST}:{free_port(POLICY_HOST)}"
    path = write(domain, f"verify_connect: {nowhere}", "verify_timeout: 1")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    (error,) = ran.err.splitlines()
    assert error.startswith("error: a.pub.test: the new policy (id ")
    assert error.endswith("that id is not published")
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["web.pub.test"]
    assert server.values("_smtp._tls.a.pub.test") == ["v=TLSRPTv1; rua=mailto:r@pub.test"]
    assert server.values("_mta-sts.a.pub.test") == []
    assert ran.lines[-1] == "changed 2 of 3 records"
    path = write(domain)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert [line.split()[0] for line in ran.lines[:3]] == ["create", "unchanged", "unchanged"]
    _published(server, path)


@pytest.mark.parametrize("wrong", ["other", "bad-secret"])
def test_a_refused_key_is_one_clear_line(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    keys: Keys,
    tmp_path: Path,
    wrong: str,
) -> None:
    key = keys.other
    if wrong == "bad-secret":
        key = tmp_path / "bad.key"
        text = keys.good.read_text()
        secret = text.split("secret:")[1].split()[0]
        key.write_text(text.replace(secret, "A" * len(secret)))
    path = write(A, key=key)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    (error,) = ran.err.splitlines()
    name = "other" if wrong == "other" else "good"
    assert error.startswith(
        f"error: TSIG key refused by 127.80.0.1:{server.port} for zone pub.test: "
    ), error
    assert name not in error or "secret" not in error
    assert key.read_text().split("secret:")[1].split()[0] not in ran.out + ran.err
    assert server.values("_mta-sts.a.pub.test") == []
    assert [line for line in ran.lines if line.startswith("waiting")] == []


@pytest.mark.parametrize(
    ("wrong", "why"),
    [
        ("clock", "its clock and this machine's differ by more than 300 s (BADTIME)"),
        ("secret", "the signature does not verify (BADSIG): the key's secret is not the server's"),
        (
            "algorithm",
            "it does not know the key by this name and algorithm, or its ACL does not grant "
            "these records",
        ),
    ],
)
def test_a_tsig_error_says_what_to_fix(
    write: Write,
    host: PolicyHost,
    server: Dns,
    publish: Publish,
    keys: Keys,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    wrong: str,
    why: str,
) -> None:
    """knot's TSIG error (RFC 8945 section 5.2) named, not dnspython's words for it."""
    key = tmp_path / "wrong.key"
    text = keys.good.read_text()
    secret = text.split("secret:")[1].split()[0]
    if wrong == "clock":
        later = time.time() + 3600  # signed an hour ahead: beyond the 300 s fudge
        monkeypatch.setattr(dns_message, "time", SimpleNamespace(time=lambda: later))
    elif wrong == "secret":
        text = text.replace(secret, "A" * len(secret))
    else:
        text = text.replace("hmac-sha256", "hmac-sha512")
    key.write_text(text)
    path = write(A, key=key)
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: TSIG key refused by 127.80.0.1:{server.port} for zone pub.test: {why}"
    ]
    assert server.values("_mta-sts.a.pub.test") == []


def test_an_hmac_md5_key_signs(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, tmp_path: Path
) -> None:
    """keymgr and tsig-keygen call it hmac-md5; on the wire it is HMAC-MD5.SIG-ALG.REG.INT
    (RFC 8945 section 6)."""
    key = keymgr(tmp_path, "md5", "hmac-md5")
    port = free_port(DNS1)
    zones = {origin: zone_text(origin) for origin in ZONES}
    with knot(tmp_path / "md5-knot", DNS1, port, zones, keys=[key], updater="md5"):
        path = write(A, f"server: {DNS1}:{port}", key=key)
        serve(host, path)
        ran = publish(path)
        assert (ran.code, ran.err) == (0, "")
        assert Dns(DNS1, port, key).values("_mta-sts.a.pub.test") == [_sts(path)]


def test_the_first_update_changes_nothing(write: Write, server: Dns, keys: Keys) -> None:
    """knot grants the first update to the updater key, and it changes nothing."""
    first_update_changes_nothing(write(FULL), server, keys.good)


def test_the_first_update_of_thousands_of_records_fits(server: Dns, keys: Keys) -> None:
    """A change to every domain of a mail provider (new defaults) names thousands of records
    of one zone, more than one DNS message holds: the server is sent several."""
    changes = [
        Change(Wanted(dns.Record(f"_mta-sts.d{i}.pub.test", "TXT", 300, "v"), ("d",), True), None)
        for i in range(2000)
    ]
    backend = rfc2136.Rfc2136(Server(server.address, server.port), str(keys.good))
    assert backend.check({"pub.test": changes}) is None
    assert server.serial("pub.test") == 1


def test_a_record_changed_behind_its_back_is_not_overwritten(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    path = write("a.pub.test: {mx: [mx.pub.test], mode: testing}")
    serve(host, path)
    theirs_once_served(host, server)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: _mta-sts.a.pub.test TXT: prerequisite failed (the server answers NXRRSET): "
        f'changed by someone else since it was read ("{_sts(write(A))}" then, '
        '"v=STSv1; id=theirs" now); not overwritten'
    ]
    assert server.values("_mta-sts.a.pub.test") == ["v=STSv1; id=theirs"]


def test_a_record_created_behind_its_back_is_not_overwritten(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(A)
    serve(host, path)
    theirs_once_served(host, server)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: _mta-sts.a.pub.test TXT: prerequisite failed (the server answers YXRRSET): "
        'changed by someone else since it was read (nothing then, "v=STSv1; id=theirs" now); '
        "not overwritten"
    ]
    assert server.values("_mta-sts.a.pub.test") == ["v=STSv1; id=theirs"]


def test_a_record_another_run_published_meanwhile_is_fine(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(A)
    serve(host, path)
    wanted = _sts(path)

    def another_replica(name: str, body: bytes) -> None:
        host.on_serve = None
        server.set("pub.test", "_mta-sts.a.pub.test", "TXT", f'"{wanted}"', ttl=300)

    host.on_serve = another_replica
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert f'already published (by another run): _mta-sts.a.pub.test 300 TXT "{wanted}"' in (
        ran.lines
    )


def test_a_shared_record_waits_for_every_member(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serve(host, path)
    assert publish(path).code == 0
    old = server.values("_mta-sts.provider.test")
    changed = FULL.replace("h1.pub.test: {", "h1.pub.test: {mode: testing, ").replace(
        "h2.pub.test: {", "h2.pub.test: {mode: testing, "
    )
    path = write(changed)
    host.bodies["mta-sts.h2.pub.test"] = load_config(path).domains["h2.pub.test"].policy.render()
    ran = publish(path, "--domain", "h2.pub.test")
    assert ran.code == 1
    assert "error: h1.pub.test: the new policy" in ran.err
    assert server.values("_mta-sts.provider.test") == old
    serve(host, path)
    ran = publish(path, "--domain", "h2.pub.test")
    assert (ran.code, ran.err) == (0, "")
    assert [
        line.split()[:2] for line in ran.lines if not line.startswith(("waiting", "check"))
    ] == [
        ["replace", "_mta-sts.provider.test"],
        ["unchanged", "_mta-sts.h2.pub.test"],
        ["published", "_mta-sts.provider.test"],
        ["changed", "1"],
    ]
    _published(server, path)


def test_tlsrpt_cname_and_ttl_changes_need_no_new_body(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serve(host, path)
    assert publish(path).code == 0
    host.bodies.clear()  # nothing is served now: these changes must not wait for it
    path = write(
        FULL.replace("mailto:tlsrpt@pub.test", "mailto:reports@pub.test")
        .replace("web.pub.test", "proxy.pub.test")
        .replace("a.pub.test: {", "a.pub.test: {dns_ttl: 600, ")
    )
    ran = publish(path, "--domain", "a.pub.test")
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[:3] == [
        f'replace _mta-sts.a.pub.test 300 TXT "{_sts(path)}" -> 600 TXT "{_sts(path)}"',
        "replace mta-sts.a.pub.test 300 CNAME web.pub.test -> 600 CNAME proxy.pub.test",
        'replace _smtp._tls.a.pub.test 300 TXT "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test" -> '
        '600 TXT "v=TLSRPTv1; rua=mailto:reports@pub.test"',
    ]
    _published(server, path)


def test_a_shared_record_gets_the_shortest_ttl_whatever_the_order(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    h1 = "h1.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test, dns_ttl: 3600}"
    h2 = "h2.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test, dns_ttl: 120}"
    path = write(f"{h1}\n{h2}")
    serve(host, path)
    assert publish(path).code == 0
    assert server.ttl("_mta-sts.provider.test") == 120
    assert server.ttl("_mta-sts.h1.pub.test", "CNAME") == 3600
    # The other order in the file is the same group: nothing to change.
    path = write(f"{h2}\n{h1}")
    ran = publish(path)
    assert (ran.code, ran.lines[-1]) == (0, "changed 0 of 3 records")


def test_txt_records_of_other_kinds_at_the_names_are_kept(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    Senders discard TXT records that do not begin with the version tag (RFC 8461 section
    3.1, RFC 8460 section 3), so others may sit beside ours: a change replaces ours only,
    both old v=STSv1 records, and keeps the others, which stay no change.
    """
    server.set(
        "pub.test",
        "_mta-sts.a.pub.test",
        "TXT",
        '"v=STSv1; id=old"',
        '"v=STSv1; id=older"',
        '"google-site-verification=abc"',
    )
    server.set(
        "pub.test",
        "_smtp._tls.a.pub.test",
        "TXT",
        '"v=TLSRPTv1; rua=mailto:old@pub.test"',
        '"some-verification=xyz"',
    )
    path = write("a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test]}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[:2] == [
        'replace _mta-sts.a.pub.test 3600 TXT "v=STSv1; id=old" "v=STSv1; id=older" -> '
        f'300 TXT "{_sts(path)}" (kept: "google-site-verification=abc")',
        'replace _smtp._tls.a.pub.test 3600 TXT "v=TLSRPTv1; rua=mailto:old@pub.test" -> '
        '300 TXT "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test" (kept: "some-verification=xyz")',
    ]
    assert sorted(server.values("_mta-sts.a.pub.test")) == [
        "google-site-verification=abc",
        _sts(path),
    ]
    assert sorted(server.values("_smtp._tls.a.pub.test")) == [
        "some-verification=xyz",
        "v=TLSRPTv1; rua=mailto:tlsrpt@pub.test",
    ]
    assert server.ttl("_mta-sts.a.pub.test") == 300
    again = publish(path)
    assert (again.code, again.err) == (0, "")
    assert again.lines[-1] == "changed 0 of 2 records"


def test_a_domain_joining_a_group_has_its_txt_replaced_by_a_cname(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    path = write("a.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}")
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert (
        f'replace _mta-sts.a.pub.test 300 TXT "{_sts(write(A))}" -> '
        "300 CNAME _mta-sts.provider.test"
    ) in ran.lines
    path = write("a.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}")
    _published(server, path)


def test_records_of_other_types_keep_a_joining_domains_txt(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    knot drops a CNAME added beside other records without a word (RFC 2136 section
    3.4.2.2): replacing the TXT record there would leave the name with no id at all.
    """
    path = other_types_keep_a_joining_domains_txt(write, host, server, publish)
    assert server.values("_mta-sts.provider.test") == [_sts(path, "provider.test")]


def test_a_cname_waits_for_the_shared_record_it_leads_to(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """
    a.pub.test joins a group with h2.pub.test, whose body is not served: the shared TXT
    record is held back, and so is a.pub.test's CNAME to it, which would replace its TXT
    record with a name holding no id at all.
    """
    path = write(A)
    serve(host, path)
    assert publish(path).code == 0
    own = server.values("_mta-sts.a.pub.test")
    group = """
    a.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}
    h2.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}
    """
    path = write(group, "verify_timeout: 1")
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines()[0].startswith("error: h2.pub.test: the new policy (id ")
    assert ran.err.splitlines()[1:] == [
        "error: _mta-sts.a.pub.test CNAME: not changed: _mta-sts.provider.test TXT does not "
        f'hold "{_sts(path, "provider.test")}" yet, and the CNAME would lead senders there'
    ]
    assert server.values("_mta-sts.provider.test") == []
    assert server.values("_mta-sts.a.pub.test") == own
    assert server.values("_mta-sts.a.pub.test", "CNAME") == []
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    _published(server, path)


@pytest.mark.parametrize("dry_run", [False, True], ids=["publish", "dry-run"])
def test_addresses_where_the_cname_goes_are_named_and_kept(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, dry_run: bool
) -> None:
    """
    mta-sts.a.pub.test still leads to a policy host by address: a CNAME may not sit beside
    its records, and deleting them is the operator's cutover, not the publisher's.
    """
    server.set("pub.test", "mta-sts.a.pub.test", "A", "192.0.2.10", "192.0.2.11")
    server.set("pub.test", "mta-sts.a.pub.test", "AAAA", "2001:db8::10")
    server.set("pub.test", "mta-sts.a.pub.test", "TXT", '"site-verification=x"')
    path = write("a.pub.test: {mx: [mx.pub.test], cname: web.pub.test}")
    serve(host, path)
    ran = publish(path, *(["--dry-run"] if dry_run else []))
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: mta-sts.a.pub.test holds A 192.0.2.10, A 192.0.2.11, AAAA 2001:db8::10, "
        'TXT "site-verification=x", which a CNAME may not sit beside (RFC 1034 section '
        "3.6.2); not replaced: delete them "
        "by hand once the CNAME's target serves the policy, or drop the domain's cname"
    ]
    # The domain's other records go ahead.
    assert ran.lines[0] == f'create _mta-sts.a.pub.test 300 TXT "{_sts(path)}"'
    assert ran.lines[-1] == f"{'would change' if dry_run else 'changed'} 1 of 1 records"
    assert server.values("mta-sts.a.pub.test", "A") == ["192.0.2.10", "192.0.2.11"]
    assert server.values("mta-sts.a.pub.test", "TXT") == ["site-verification=x"]
    assert server.values("mta-sts.a.pub.test", "CNAME") == []
    assert server.values("_mta-sts.a.pub.test") == ([] if dry_run else [_sts(path)])


def test_an_hinfo_record_where_the_cname_goes_is_named(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """A real HINFO record is in the way too: only RFC 8482's answer to ANY is none."""
    server.set("pub.test", "mta-sts.a.pub.test", "HINFO", '"x86" "linux"')
    path = write("a.pub.test: {mx: [mx.pub.test], cname: web.pub.test}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        'error: mta-sts.a.pub.test holds HINFO "x86" "linux", which a CNAME may not sit '
        "beside (RFC 1034 section 3.6.2); not replaced: delete it by hand once the CNAME's "
        "target serves the policy, or drop the domain's cname"
    ]
    assert server.values("mta-sts.a.pub.test", "CNAME") == []


def test_a_wildcard_is_no_record_in_the_way_of_the_cname(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """A wildcard's records answer for mta-sts.a.pub.test, but are none of its own."""
    server.set("pub.test", "*.a.pub.test", "A", "192.0.2.10")
    path = write("a.pub.test: {mx: [mx.pub.test], cname: web.pub.test}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert "create mta-sts.a.pub.test 300 CNAME web.pub.test" in ran.lines
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["web.pub.test"]


@pytest.mark.parametrize(
    ("rdtype", "data"), [("TXT", '"v=spf1 -all"'), ("CNAME", "pub.test.")], ids=["txt", "cname"]
)
def test_a_wildcards_answer_is_no_record_to_replace(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, rdtype: str, data: str
) -> None:
    """
    *.pub.test answers for _mta-sts.pub.test too, but an update's prerequisites never see a
    wildcard's records: the TXT record is created, and a second run finds it in place.
    """
    server.set("pub.test", "*.pub.test", rdtype, data)
    path = write("pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:tlsrpt@pub.test]}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert f'create _mta-sts.pub.test 300 TXT "{_sts(path, "pub.test")}"' in ran.lines
    assert server.values("_mta-sts.pub.test") == [_sts(path, "pub.test")]
    assert server.values("_smtp._tls.pub.test") == ["v=TLSRPTv1; rua=mailto:tlsrpt@pub.test"]
    again = publish(path)
    assert (again.code, again.lines[-1]) == (0, "changed 0 of 2 records")


def test_a_wildcard_below_a_name_leaves_its_records_its_own(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """*._mta-sts.a.pub.test answers below the name, not for it: the old TXT is replaced."""
    path = write("a.pub.test: {mx: [mx.pub.test]}")
    serve(host, path)
    assert publish(path).code == 0
    server.set("pub.test", "*._mta-sts.a.pub.test", "TXT", '"x"')
    server.set("pub.test", "mta-sts.a.pub.test", "CNAME", "old.pub.test.")
    server.set("pub.test", "*.mta-sts.a.pub.test", "A", "192.0.2.10")
    path = write("a.pub.test: {mode: testing, mx: [mx.pub.test], cname: web.pub.test}")
    serve(host, path)
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]
    assert server.values("mta-sts.a.pub.test", "CNAME") == ["web.pub.test"]


def test_a_record_like_the_wildcards_is_still_the_names_own(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    server.set("pub.test", "*.pub.test", "A", "192.0.2.10")
    server.set("pub.test", "mta-sts.pub.test", "A", "192.0.2.10")
    path = write("pub.test: {mx: [mx.pub.test], cname: web.pub.test}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.startswith("error: mta-sts.pub.test holds A 192.0.2.10, which a CNAME ")
    assert server.values("mta-sts.pub.test", "A") == ["192.0.2.10"]


def test_dry_run_changes_nothing(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serial = server.serial("pub.test")
    ran = publish(path, "--dry-run")
    assert (ran.code, ran.err) == (0, "")
    assert [line.split()[0] for line in ran.lines] == ["create"] * 6 + ["would"]
    assert ran.lines[-1] == "would change 6 of 6 records"
    assert server.serial("pub.test") == serial
    assert host.served == []


def test_a_removed_domain_keeps_its_records(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(FULL)
    serve(host, path)
    assert publish(path).code == 0
    kept = server.values("_mta-sts.a.pub.test")
    path = write("h1.pub.test: {mx: [mx.pub.test], txt_cname: _mta-sts.provider.test}")
    ran = publish(path)
    assert (ran.code, ran.err) == (0, "")
    assert "a.pub.test" not in ran.out.replace("h1.pub.test", "")
    assert server.values("_mta-sts.a.pub.test") == kept
    assert server.values("_mta-sts.h2.pub.test", "CNAME") == ["_mta-sts.provider.test"]


def test_a_zone_the_server_does_not_hold(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    path = write(f"{A}\nelsewhere.example: {{mx: [mx.pub.test]}}")
    serve(host, path)
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        "error: zone not found for _mta-sts.elsewhere.example at "
        f"127.80.0.1:{server.port} (REFUSED)"
    ]
    assert server.values("_mta-sts.a.pub.test") == [_sts(path)]


def test_a_zone_the_server_delegates(
    write: Write, host: PolicyHost, server: Dns, publish: Publish
) -> None:
    """knot holds pub.test, which hands sub.pub.test to another server: no answer of its own."""
    server.set("pub.test", "sub.pub.test", "NS", "ns.elsewhere.test.")
    path = write("a.sub.pub.test: {mx: [mx.pub.test]}")
    ran = publish(path, "--dry-run")
    assert (ran.code, ran.out) == (1, "would change 0 of 0 records\n")
    assert ran.err.splitlines() == [
        "error: zone not found for _mta-sts.a.sub.pub.test at "
        f"127.80.0.1:{server.port} (it delegates sub.pub.test to ns.elsewhere.test, and holds "
        "no zone of it)"
    ]


def test_an_unreachable_server(write: Write, publish: Publish, server: Dns) -> None:
    path = write(A, "server: 127.80.0.9:9")
    ran = publish(path)
    assert ran.code == 1
    (error,) = ran.err.splitlines()
    assert error.startswith("error: server 127.80.0.9:9 unreachable: ")


def test_an_update_server_that_never_answers(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    """Worded as a query's timeout is: how long the server had."""
    monkeypatch.setattr(query, "TIMEOUT", 0.5)
    with socket.create_server(("127.0.0.1", 0)) as listener:  # accepts, never reads
        port = listener.getsockname()[1]
        backend = rfc2136.Rfc2136(Server("127.0.0.1", port), str(keys.good))
        assert backend.check({"pub.test": []}) == (
            f"server 127.0.0.1:{port} unreachable: no answer within 0.5 s"
        )


def test_a_key_file_rotated_to_a_bad_name_is_one_clear_line(
    write: Write, host: PolicyHost, server: Dns, publish: Publish, keys: Keys, tmp_path: Path
) -> None:
    """The key file is read at each use: one that turns bad during a run fails that update."""
    key = tmp_path / "rotated.key"
    key.write_bytes(keys.good.read_bytes())
    secret = key.read_text().split("secret:")[1].split()[0]
    path = write(A, key=key)
    serve(host, path)

    def rotated(name: str, body: bytes) -> None:
        host.on_serve = None
        key.write_text(f'key "{"k" * 64}" {{ algorithm hmac-sha256; secret "{secret}"; }};\n')

    host.on_serve = rotated
    ran = publish(path)
    assert ran.code == 1
    assert ran.err.splitlines() == [
        f"error: _mta-sts.a.pub.test TXT: not changed: TSIG key file {key}: the key's name is "
        "not a DNS name: a DNS label is > 63 octets long"
    ]
    assert secret not in ran.out + ran.err
    assert server.values("_mta-sts.a.pub.test") == []


def test_a_key_dnspython_refuses_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever the key file gives, dnspython's own errors end as a message, not a traceback."""
    bad = tsigkey.TsigKey("a..b", "hmac-sha256", b"0123456789abcdef")
    monkeypatch.setattr(tsigkey, "read_key_file", lambda path: bad)
    backend = rfc2136.Rfc2136(Server("127.0.0.1", 9), "bad.key")
    record = dns.Record("_mta-sts.a.pub.test", "TXT", 300, "v=STSv1; id=1")
    change = Change(Wanted(record, ("a.pub.test",), sts=True), None)
    message = "TSIG key file bad.key: A DNS label is empty."
    assert backend.check({"pub.test": [change]}) == message
    assert backend.apply(change, "pub.test") == Applied(Result.FAILED, message)


def test_without_a_publish_block(tmp_path: Path, publish: Publish) -> None:
    path = tmp_path / "config.yaml"
    path.write_text("domains:\n  a.pub.test: {mode: enforce, mx: [mx.pub.test]}\n")
    ran = publish(path)
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == (
        f"mtasts-host: error: {path} has no publish block, so nothing says where the records "
        "go; see 'Publishing a policy' in the README\n"
    )


def test_an_unknown_domain(write: Write, publish: Publish) -> None:
    path = write(A)
    ran = publish(path, "--domain", "b.pub.test")
    assert (ran.code, ran.out) == (2, "")
    assert ran.err == f"mtasts-host: error: --domain 'b.pub.test': not configured in {path}\n"


def test_no_usable_system_resolver_is_one_line(
    tmp_path: Path, publish: Publish, resolv_conf: Path
) -> None:
    # Without a server, the zones' name servers are found through it: it was one "zone not
    # found" line for each record, or a traceback for a bad nameserver line.
    resolv_conf.write_text("nameserver 127.0.0.1\nsearch a..b\n")
    path = tmp_path / "config.yaml"
    path.write_text(
        "domains:\n  a.pub.test: {mode: enforce, mx: [mx.pub.test]}\n"
        "  b.pub.test: {mode: enforce, mx: [mx.pub.test]}\n"
        "publish: {command: /bin/true}\n"
    )
    ran = publish(path, "--dry-run")
    assert (ran.code, ran.out) == (1, "")
    assert ran.err == (
        "error: /etc/resolv.conf: a 'domain' or 'search' name is not a DNS name "
        "(A DNS label is empty)\n"
    )
