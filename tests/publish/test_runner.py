"""Reading the DNS at the scale of a mail provider: step 1 and the read-back, several records
at once, told in order; the zone asked for only where a record changes."""

from __future__ import annotations

import threading

import pytest

from mtasts_host.config import load_config
from mtasts_host.publish import authority, query, readback
from mtasts_host.publish.authority import READERS
from mtasts_host.publish.runner import publish
from mtasts_host.store import build_snapshot

from ..processes import free_port
from .conftest import Publish, Write, serve
from .servers import DNS2, RELAY, Dns, PolicyHost, relay

A = "a.pub.test: {mx: [mx.pub.test]}"
MANY = "\n".join(f"d{i}.pub.test: {{mx: [mx.pub.test]}}" for i in range(3 * READERS))


def test_records_are_read_several_at_once_and_shown_in_order(
    write: Write, publish: Publish, server: Dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote primary's round trip is paid once per READERS records, not once per record;
    the plan is still one line per record, in the config's order."""
    monkeypatch.setattr(query, "TIMEOUT", 5.0)  # answers held back, on a busy machine
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        path.hold = READERS
        config = write(MANY, f"server: {RELAY}:{path.port}")
        ran = publish(config, "--dry-run")
    assert (ran.code, ran.err) == (0, "")
    assert [line.split()[1] for line in ran.lines[:-1]] == [
        f"_mta-sts.d{i}.pub.test" for i in range(3 * READERS)
    ]
    assert path.most_in_flight > 1, path.most_in_flight


def test_records_left_as_they_are_need_no_zone(
    write: Write,
    publish: Publish,
    host: PolicyHost,
    server: Dns,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Step 1 asks for a record's zone only if it is to change: a run of thousands of
    domains, most of them as they were, saves an SOA query or two for each record."""
    config = write(f"{A}\nb.pub.test: {{mx: [mx.pub.test]}}")
    serve(host, config)
    assert publish(config).code == 0
    server.set("pub.test", "_mta-sts.b.pub.test", "TXT")  # deleted behind its back
    monkeypatch.setattr(query, "TIMEOUT", 5.0)  # on a busy machine: each question asked once
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        ran = publish(
            write(f"{A}\nb.pub.test: {{mx: [mx.pub.test]}}", f"server: {RELAY}:{path.port}"),
            "--dry-run",
        )
    assert (ran.code, ran.err, ran.lines[-1]) == (0, "", "would change 1 of 2 records")
    assert sorted(set(path.asked)) == [  # a question sent again counts once
        "_mta-sts.a.pub.test TXT",
        "_mta-sts.b.pub.test SOA",
        "_mta-sts.b.pub.test TXT",
        "_mtasts-host-probe._mta-sts.a.pub.test TXT",
    ]


def test_a_server_that_answers_without_authority_is_named(
    write: Write, publish: Publish, host: PolicyHost, server: Dns
) -> None:
    """A resolver named as the server answers from its cache, without authority: what it
    holds is no record of the zone's, even when it is the one wanted."""
    config = write(A)
    serve(host, config)
    assert publish(config).code == 0
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        path.authoritative = False
        ran = publish(write(A, f"server: {RELAY}:{path.port}"), "--dry-run")
    assert (ran.code, ran.out) == (1, "would change 0 of 0 records\n")
    assert ran.err.splitlines() == [
        f"error: zone not found for _mta-sts.a.pub.test at {RELAY}:{path.port} (it does not "
        "answer with authority)"
    ]


class _Stopped:
    """A run's output, which a reload ends (``stop`` set) as its first line comes."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.lines: list[str] = []

    def info(self, line: str) -> None:
        self.lines.append(line)
        self.stop.set()

    def unchanged(self, line: str) -> None:
        self.info(line)

    def warning(self, line: str) -> None:
        self.lines.append(f"warning: {line}")

    def problem(self, line: str) -> None:
        self.lines.append(f"error: {line}")


def test_a_run_stopped_while_reading_ends_there(write: Write, server: Dns) -> None:
    """
    A reload while a run reads thousands of records ends it before the next line, rather
    than once all are read: the run of the new configuration starts then.
    """
    stop = threading.Event()
    output = _Stopped(stop)
    snapshot = build_snapshot(load_config(write(MANY)))
    outcome = publish(snapshot, output, stop=stop)
    assert output.lines == [
        f'create _mta-sts.d0.pub.test 300 TXT "v=STSv1; id={snapshot.served["d0.pub.test"].id}"',
        f"error: stopped after reading 1 of {3 * READERS} records",
    ]
    assert (outcome.changes, outcome.written) == ((), ())
    assert server.values("_mta-sts.d0.pub.test") == []


def test_records_written_are_read_back_several_at_once(
    write: Write,
    publish: Publish,
    host: PolicyHost,
    server: Dns,
    secondary: Dns,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A change to every domain (new defaults) is read back at each name server as step 1
    reads: several records at once, told in order."""
    config = write(MANY)
    serve(host, config)
    with relay(DNS2, free_port(DNS2), (secondary.address, secondary.port)) as path:
        path.hold = READERS
        monkeypatch.setattr(authority, "NAMESERVER_PORT", path.port)
        monkeypatch.setattr(readback, "_TIMEOUT", 5.0)  # answers held back, on a busy machine
        ran = publish(config)
    assert (ran.code, ran.err) == (0, "")
    checked = [line.split()[1] for line in ran.lines if line.startswith("checked ")]
    assert checked == [f"_mta-sts.d{i}.pub.test" for i in range(3 * READERS)]
    assert path.most_in_flight > 1, path.most_in_flight
