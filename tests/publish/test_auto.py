"""The publisher inside ``serve``: after each reload that changes a record, in a thread."""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import os
import signal
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from mtasts_host import dns
from mtasts_host.app import create_app
from mtasts_host.cli import _beside
from mtasts_host.config import load_config
from mtasts_host.metrics import RequestCounts
from mtasts_host.metrics import registry as metrics_registry
from mtasts_host.publish import AutoPublisher
from mtasts_host.reload import Reloader
from mtasts_host.store import PolicyStore, build_snapshot

from ..conftest import wait_until
from ..processes import free_port, running, serve_argv
from .conftest import Keys, Write, ended, serve, shell_script
from .servers import DNS1, Dns, PolicyHost

A = "a.pub.test: {mx: [mx.pub.test]}"
B = "b.pub.test: {mx: [mx.pub.test]}"
SERVE_ADDRESS = "127.80.1.2"


def _sts(path: Path, domain: str) -> str:
    (value,) = [
        r.value
        for r in dns.records(build_snapshot(load_config(path)))
        if r.name == f"_mta-sts.{domain}"
    ]
    return value


def _metrics(publisher: AutoPublisher) -> str:
    registry = metrics_registry(publisher.store, RequestCounts(), [publisher.collect])
    return generate_latest(registry).decode()


def test_publishes_at_start_and_after_each_reload(
    write: Write, host: PolicyHost, server: Dns, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = write(A, "auto: true")
    serve(host, path)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    assert 'mtasts_dns_id_current{domain="a.pub.test"} 0.0' in _metrics(publisher)
    publisher.start()
    try:
        wait_until(lambda: publisher.runs["success"] == 1, timeout=10)
        metrics = _metrics(publisher)
        assert 'mtasts_dns_id_current{domain="a.pub.test"} 1.0' in metrics
        assert 'mtasts_publish_runs_total{outcome="success"} 1.0' in metrics
        assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]

        write(f"{A}\n{B}", "auto: true")
        assert Reloader(store).reload()
        # Served by this store now, but not yet by the policy host behind verify_url.
        assert 'mtasts_dns_id_current{domain="b.pub.test"} 0.0' in _metrics(publisher)
        threading.Timer(0.5, serve, (host, path)).start()
        wait_until(lambda: publisher.runs["success"] == 2, timeout=10)
    finally:
        publisher.stop()
    assert server.values("_mta-sts.b.pub.test") == [_sts(path, "b.pub.test")]
    assert 'mtasts_dns_id_current{domain="b.pub.test"} 1.0' in _metrics(publisher)
    messages = [r.getMessage() for r in caplog.records if r.name == "mtasts_host.publish.auto"]
    pending = [m for m in messages if m.startswith("publish: pending")]
    assert pending == [
        f"publish: pending after the reload of {path}: _mta-sts.b.pub.test TXT "
        f"'{_sts(path, 'b.pub.test')}'"
    ]
    published = [m for m in messages if " published at " in m]
    assert [m.partition(" at ")[0] for m in published] == [
        "publish: _mta-sts.a.pub.test TXT published",
        "publish: _mta-sts.b.pub.test TXT published",
    ]
    assert messages.index(pending[0]) < messages.index(published[1])


def test_records_left_as_they_are_are_counted_not_listed(
    write: Write, host: PolicyHost, server: Dns, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A reload that changes one domain of many logs that domain's record and one count, not a
    line for each record the DNS already holds (thousands for a mail provider, at each start
    and reload). The terminal's plan still lists them all.
    """
    caplog.set_level(logging.INFO, logger="mtasts_host.publish")
    many = "\n".join(f"d{i}.pub.test: {{mx: [mx.pub.test]}}" for i in range(20))
    path = write(f"{A}\n{many}", "auto: true")
    serve(host, path)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    publisher.start()
    try:
        # The first run's last line comes after its count of successes.
        wait_until(lambda: any(" published at " in m for m in caplog.messages), timeout=20)
        caplog.clear()
        path = write(f"a.pub.test: {{mx: [mx2.pub.test]}}\n{many}", "auto: true")
        serve(host, path)
        assert Reloader(store).reload()
        wait_until(lambda: any(" published at " in m for m in caplog.messages), timeout=20)
    finally:
        publisher.stop()
    assert [m.split()[1] for m in caplog.messages] == [
        "pending",
        "replace",
        "waiting",
        "published",
        "checked",
        "changed",
        "_mta-sts.a.pub.test",
    ]
    assert "publish: changed 1 of 21 records" in caplog.messages


def test_no_publish_metrics_unless_auto(write: Write) -> None:
    # Without auto: true nothing reads the DNS: a 0 would alert on every hand-published id.
    path = write(A)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    assert "mtasts_dns_id_current" not in _metrics(publisher)
    assert "mtasts_publish_runs" not in _metrics(publisher)
    write(A, "auto: true")
    assert Reloader(store).reload()
    assert 'mtasts_dns_id_current{domain="a.pub.test"} 0.0' in _metrics(publisher)


def test_one_scrape_reads_the_domains_of_one_snapshot(write: Write) -> None:
    # Each read the store's snapshot: a reload between the policies' info and the publisher's
    # gauge gave one scrape a domain's policy and not whether its id is published.
    path = write(f"{A}\n{B}", "auto: true")
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    registry = metrics_registry(store, RequestCounts(), [publisher.collect])
    write(A, "auto: true")
    labels: dict[str, set[str]] = {}
    for family in registry.collect():
        labels[family.name] = {sample.labels.get("domain", "") for sample in family.samples}
        if family.name == "mtasts_policy":
            assert Reloader(store).reload()
    assert labels["mtasts_policy"] == {"a.pub.test", "b.pub.test"}
    assert labels["mtasts_dns_id_current"] == {"a.pub.test", "b.pub.test"}


def test_auto_turned_on_by_a_reload_publishes_at_once(
    write: Write, host: PolicyHost, server: Dns
) -> None:
    """
    ``auto: true`` added by a reload that changes no record: the publisher starts then, as
    at start-up, and its gauge comes to say 1 rather than 0 forever.
    """
    path = write(A)
    serve(host, path)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    write(A, "auto: true")
    assert Reloader(store).reload()
    try:
        wait_until(lambda: publisher.runs["success"] == 1, timeout=10)
    finally:
        publisher.stop()
    assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]
    assert 'mtasts_dns_id_current{domain="a.pub.test"} 1.0' in _metrics(publisher)


def test_a_reload_during_a_run_starts_it_again_for_the_new_config(
    write: Write, host: PolicyHost, server: Dns, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A run waits for a body that a reload then replaces: it is abandoned at once for a run
    of the new config, rather than waiting out verify_timeout for a body nobody will serve
    and counting a failure.
    """
    caplog.set_level(logging.INFO)
    path = write(A, "auto: true", "verify_timeout: 30")
    serve(host, path)  # the policy host serves the enforce policy of A
    testing = "a.pub.test: {mx: [mx.pub.test], mode: testing}"
    path = write(testing, "auto: true", "verify_timeout: 30")
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    publisher.start()
    try:
        wait_until(lambda: any("waiting for" in r.getMessage() for r in caplog.records), 10)
        write(A, "auto: true", "verify_timeout: 30")  # back to what is served
        assert Reloader(store).reload()
        started = time.monotonic()
        wait_until(lambda: publisher.runs["success"] == 1, timeout=40)
        took = time.monotonic() - started
    finally:
        publisher.stop()
    assert server.values("_mta-sts.a.pub.test") == [_sts(write(A), "a.pub.test")]
    assert (publisher.runs["failure"], took < 10) == (0, True), took
    # Nor is it logged as one: an edit made while a run waits must not look like an error.
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert "publish: the configuration was reloaded; starting again" in caplog.messages


def test_a_reload_that_turns_auto_off_ends_the_run(
    write: Write, host: PolicyHost, server: Dns, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A run waits for a body when a reload turns ``auto`` off: it ends then, rather than
    waiting out verify_timeout, logging an error and a retry that never comes.
    """
    caplog.set_level(logging.INFO)
    path = write(A, "verify_timeout: 30")
    serve(host, path)  # the policy host serves the enforce policy of A
    testing = "a.pub.test: {mx: [mx.pub.test], mode: testing}"
    path = write(testing, "auto: true", "verify_timeout: 30")
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    publisher.start()
    ended = "publish: the configuration was reloaded; auto is off"
    try:
        wait_until(lambda: any("waiting for" in r.getMessage() for r in caplog.records), 10)
        write(A, "verify_timeout: 30")
        assert Reloader(store).reload()
        wait_until(lambda: ended in caplog.messages, timeout=10)
    finally:
        publisher.stop()
    assert publisher.runs == {"success": 0, "failure": 0}
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert server.values("_mta-sts.a.pub.test") == []


@pytest.mark.parametrize(
    ("after", "said"),
    [
        ("publish: {command: 'true'}\n", True),
        ("", True),  # the block removed
        ("publish: {command: 'true', auto: true, cache_wait: 0}\n", False),
    ],
    ids=["auto-off", "block-removed", "auto-kept"],
)
def test_a_reload_that_turns_auto_off_says_so(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, after: str, said: bool
) -> None:
    """
    While idle, nothing else would show it: the reload line says "no policy changed", and
    an operator who publishes by hand from now on must know the publisher no longer does.
    """
    domains = f"defaults: {{mode: enforce}}\ndomains:\n  {A}\n"
    path = tmp_path / "config.yaml"
    path.write_text(domains + "publish: {command: 'true', auto: true}\n")
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store)
    store.listeners.append(publisher.reloaded)
    publisher.start = lambda: None  # type: ignore[method-assign]  # no run: no DNS here
    caplog.set_level(logging.INFO, logger="mtasts_host.publish")
    path.write_text(domains + after)
    assert Reloader(store).reload()
    expected = (
        f"publish: auto is off in {path}: the DNS records are no longer published "
        "automatically; run 'mtasts-host publish' after each change"
    )
    assert caplog.messages == (
        [expected] if said else [f"publish: the publish block of {path} changed"]
    )


def test_a_failed_run_is_retried_with_backoff(
    write: Write, host: PolicyHost, server: Dns, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    path = write(A, "auto: true", "verify_timeout: 1")  # nothing served at first
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store, first_retry=0.2, last_retry=0.4)
    publisher.start()
    try:
        wait_until(lambda: publisher.runs["failure"] >= 2, timeout=10)
        serve(host, path)
        wait_until(lambda: publisher.runs["success"] == 1, timeout=10)
    finally:
        publisher.stop()
    assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]
    retries = [r.getMessage() for r in caplog.records if "trying again" in r.getMessage()]
    assert retries[:2] == [
        "publish: 1 problem(s); trying again in 0.2 s",
        "publish: 1 problem(s); trying again in 0.4 s",
    ]


def test_pending_and_the_listeners_tell_the_doctor_what_the_publisher_does(
    write: Write, host: PolicyHost, server: Dns, keys: Keys
) -> None:
    """
    ``pending``: the domains whose id a run in progress or scheduled is to publish, with its
    failed runs in a row; the listeners hear when a run fails after none did, and when one
    writes records.
    """
    path = write(A, "auto: true", key=keys.other)  # a key the server refuses
    serve(host, path)
    store = PolicyStore(load_config(path))
    publisher = AutoPublisher(store, first_retry=3600)
    store.listeners.append(publisher.reloaded)
    heard: list[dict[str, int]] = []
    publisher.listeners.append(lambda: heard.append(publisher.pending()))
    assert publisher.pending() == {}  # no run in progress or scheduled
    publisher.start()
    try:
        wait_until(lambda: publisher.runs["failure"] == 1, timeout=10)
        assert publisher.pending() == {"a.pub.test": 1}  # its retry is scheduled
        write(A, "auto: true")  # the key the server takes
        assert Reloader(store).reload()
        wait_until(lambda: len(heard) == 2, timeout=10)
        assert publisher.pending() == {}
    finally:
        publisher.stop()
    assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]
    assert heard == [{"a.pub.test": 1}, {}]
    assert publisher.runs == {"success": 1, "failure": 1}


def test_a_record_another_replica_published_meanwhile_wakes_the_doctor(
    write: Write, host: PolicyHost, server: Dns
) -> None:
    """
    Two replicas publish the same new id and this one loses the race: it writes nothing,
    yet the DNS holds the new id now. The doctor, which the reload woke while the old id was
    there, runs again, rather than saying for an interval that the publisher is on it.
    """
    path = write(A, "auto: true")
    serve(host, path)
    wanted = _sts(path, "a.pub.test")

    def another_replica(name: str, body: bytes) -> None:
        host.on_serve = None
        server.set("pub.test", "_mta-sts.a.pub.test", "TXT", f'"{wanted}"', ttl=300)

    host.on_serve = another_replica
    publisher = AutoPublisher(PolicyStore(load_config(path)))
    heard: list[list[str]] = []
    publisher.listeners.append(lambda: heard.append(server.values("_mta-sts.a.pub.test")))
    publisher.start()
    try:
        wait_until(lambda: publisher.runs["success"] == 1, timeout=10)
    finally:
        publisher.stop()  # the listeners, if called, have been
    assert heard == [[wanted]]


def test_a_reload_wakes_the_doctor_once_the_publisher_has_its_records_pending(
    write: Write, host: PolicyHost, server: Dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A reload wakes the doctor of ``serve`` after the publisher has taken on the records it
    changed: woken first, the doctor's run could ask before, find the publisher idle, and
    call the old id a failure to fix by hand.
    """
    path = write(A, "auto: true")
    serve(host, path)
    app = create_app(path, watch=False, metrics=False)
    args = argparse.Namespace(
        doctor_interval=3600.0,
        doctor_timeout=0.5,
        resolver=(server.address, server.port),
        ca_file=None,
        https_port=443,
        smtp_port=25,
        ehlo=None,
    )
    beside = _beside(app, args)
    assert beside.doctor is not None
    publisher = beside.publisher
    asked: list[dict[str, int]] = []
    try:
        wait_until(lambda: publisher.runs["success"] == 1, timeout=10)
        assert publisher.pending() == {}
        monkeypatch.setattr(beside.doctor, "run_soon", lambda: asked.append(publisher.pending()))
        write(A.replace("{mx", "{mode: testing, mx"), "auto: true", "cache_wait: 30")
        assert Reloader(app.store).reload()
    finally:
        beside.stop()
    assert asked == [{"a.pub.test": 0}]


def test_serve_with_auto_follows_the_yaml(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    """The real server: the TXT record follows an edit of the file, after the new body."""
    port = free_port(SERVE_ADDRESS)
    extra = ("cache_wait: 2", f"verify_connect: {SERVE_ADDRESS}:{port}", "auto: true")
    path = write(A, *extra)
    argv = [*serve_argv(path, port, "--host", SERVE_ADDRESS)]
    with running(argv, tmp_path / "serve.log", SERVE_ADDRESS, port) as process:
        wait_until(lambda: server.values("_mta-sts.a.pub.test") != [], timeout=15)
        assert server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")]
        path = write(A.replace("{mx", "{mode: testing, mx"), *extra)
        wait_until(lambda: server.values("_mta-sts.a.pub.test") == [_sts(path, "a.pub.test")], 15)
        metrics_url = f"http://{SERVE_ADDRESS}:{port}/metrics"

        def current() -> bool:
            with urllib.request.urlopen(metrics_url, timeout=5) as answer:
                text = answer.read().decode()
            return 'mtasts_dns_id_current{domain="a.pub.test"} 1.0' in text and (
                'mtasts_publish_runs_total{outcome="success"} 2.0' in text
            )

        wait_until(current, timeout=20)
        lines = process.output().splitlines()
    reloaded = _first(lines, "reloaded ", 0)
    assert _first(lines, "publish: pending after the reload of", reloaded) > reloaded
    fetched = _first(lines, 'user_agent="mtasts-host-publish/', reloaded)
    waited = _first(lines, "publish: the new policies are served; waiting 1 s more", fetched)
    published = _first(lines, "publish: published _mta-sts.a.pub.test 300 TXT", waited)
    # cache_wait, counted from the first answer with the new body: the log's clock agrees.
    assert _when(lines[published]) - _when(lines[fetched]) >= 2.0


def test_serve_with_auto_and_the_doctor(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    """
    The real server with the doctor beside the publisher: after a reload, the doctor's run
    finds the old id while the publisher waits out cache_wait, as RFC 8461 section 8.1 asks:
    a warning saying so, not a failure advising to publish by hand; and once the publisher
    has written the new id, the doctor runs again rather than in an hour.
    """
    # Both name servers of the zone are the primary, as the doctor asks them (on its port).
    server.set("pub.test", "ns2.pub.test", "A", DNS1, ttl=60)
    port = free_port(SERVE_ADDRESS)
    extra = (f"verify_connect: {SERVE_ADDRESS}:{port}", "auto: true")
    path = write(A, "cache_wait: 0", *extra)
    doctor = ("--doctor-interval", "1h", "--doctor-timeout", "0.5")
    resolver = ("--resolver", f"{server.address}:{server.port}")
    argv = [*serve_argv(path, port, "--host", SERVE_ADDRESS), *doctor, *resolver]
    base = f"http://{SERVE_ADDRESS}:{port}"

    def dns_id() -> dict[str, str]:
        time.sleep(0.1)
        with urllib.request.urlopen(f"{base}/readyz?format=json", timeout=5) as answer:
            problems: list[dict[str, str]] = json.load(answer)["doctor"].get("problems", [])
        found = [p for p in problems if (p["domain"], p["check"]) == ("a.pub.test", "dns-id")]
        return found[0] if found else {"status": "ok"}

    def metric() -> str:
        with urllib.request.urlopen(f"{base}/metrics", timeout=5) as answer:
            text: str = answer.read().decode()
        return next(line for line in text.splitlines() if "dns-id" in line and "check{" in line)

    with running(argv, tmp_path / "serve.log", SERVE_ADDRESS, port) as process:
        old = _sts(path, "a.pub.test")
        wait_until(lambda: server.values("_mta-sts.a.pub.test") == [old], timeout=15)
        # The run at start-up may come before the record or after: the one after it, at once.
        wait_until(lambda: dns_id()["status"] == "ok", timeout=30)
        path = write(A.replace("{mx", "{mode: testing, mx"), "cache_wait: 20", *extra)
        new = _sts(path, "a.pub.test")
        wait_until(lambda: dns_id()["status"] != "ok", timeout=30)
        found = dns_id()
        assert server.values("_mta-sts.a.pub.test") == [old]
        assert found["status"] == "warn"
        assert found["message"] == (
            f"DNS has id={old.partition('id=')[2]}; the automatic publisher publishes '{new}' "
            "once the new policy has been served for cache_wait seconds (RFC 8461 section "
            "8.1); nothing to do"
        )
        assert metric().endswith(" 1.0")
        wait_until(lambda: dns_id()["status"] == "ok", timeout=60)
        assert server.values("_mta-sts.a.pub.test") == [new]
        assert metric().endswith(" 0.0")
        lines = process.output().splitlines()
    assert [line for line in lines if "fail: dns-" in line] == []
    reloaded = _first(lines, "reloaded ", 0)
    warned = _first(lines, "doctor: a.pub.test: warn: dns-id: DNS has id=", reloaded)
    published = _first(lines, "publish: _mta-sts.a.pub.test TXT published at", warned)
    _first(lines, "doctor: a.pub.test: ok: dns-id: ", published)


def test_sigterm_lets_the_command_in_progress_finish(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    """
    SIGTERM while the command writes a record: serve stops the publisher before it ends,
    so the command is not cut off between deleting the old record and adding the new one
    (in a container, the end of the process kills every other one in it).
    """
    port = free_port(SERVE_ADDRESS)
    steps = tmp_path / "steps"
    hook = tmp_path / "dns-hook"
    hook.write_text(
        f"#!/bin/sh\necho deleting\necho $MTASTS_RECORD_NAME deleted >> {steps}\nsleep 3\n"
        f"echo adding\necho $MTASTS_RECORD_NAME added >> {steps}\n"
    )
    hook.chmod(0o755)
    extra = (f"command: {hook}", f"verify_connect: {SERVE_ADDRESS}:{port}", "auto: true")
    # Two records that need no new body, written one after the other.
    domain = "a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:r@pub.test], cname: web.pub.test}"
    path = write(domain, *extra)
    argv = [*serve_argv(path, port, "--host", SERVE_ADDRESS)]
    with running(argv, tmp_path / "serve.log", SERVE_ADDRESS, port) as process:
        wait_until(steps.exists, timeout=15)
        process.process.send_signal(signal.SIGTERM)
        assert process.process.wait(15) == -signal.SIGTERM
    # The first record's command ends its update; the second record's never starts.
    assert steps.read_text().splitlines() == [
        "mta-sts.a.pub.test deleted",
        "mta-sts.a.pub.test added",
    ]


def _first(lines: list[str], text: str, after: int) -> int:
    return next(i for i, line in enumerate(lines) if i >= after and text in line)


def _when(line: str) -> float:
    stamp = line.split()[0].removesuffix("Z")
    return datetime.datetime.fromisoformat(stamp).timestamp()


def test_ctrl_c_lets_the_command_in_progress_finish(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    """
    Ctrl-C in a terminal signals the whole foreground process group: the command, in a
    session of its own, is not cut off between its delete and its add, and serve lets it
    finish the record in hand.
    """
    port = free_port(SERVE_ADDRESS)
    steps, go = tmp_path / "steps", tmp_path / "go"
    hook = tmp_path / "dns-hook"
    hook.write_text(
        f"#!/bin/sh\necho $MTASTS_RECORD_NAME deleted >> {steps}\n"
        f"while [ ! -e {go} ]; do sleep 0.01; done\necho $MTASTS_RECORD_NAME added >> {steps}\n"
    )
    hook.chmod(0o755)
    extra = (f"command: {hook}", f"verify_connect: {SERVE_ADDRESS}:{port}", "auto: true")
    domain = "a.pub.test: {mx: [mx.pub.test], tlsrpt_rua: [mailto:r@pub.test], cname: web.pub.test}"
    path = write(domain, *extra)
    argv = [*serve_argv(path, port, "--host", SERVE_ADDRESS)]
    with (tmp_path / "serve.log").open("wb") as log:
        # A session of its own, as a shell gives a job: the SIGINT below is the terminal's.
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_until(steps.exists, timeout=15)
        os.killpg(process.pid, signal.SIGINT)
        go.touch()
        process.wait(15)
    finally:
        go.touch()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    # Whether the next record starts before the server has stopped is the SIGTERM test's.
    assert steps.read_text().splitlines()[:2] == [
        "mta-sts.a.pub.test deleted",
        "mta-sts.a.pub.test added",
    ]


def test_a_command_still_running_when_stopped_is_ended(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    # Past stop's time, a command in a session of its own would outlive the service, and
    # what it started with it.
    pids = tmp_path / "pids"
    hook = tmp_path / "stuck-hook"
    shell_script(hook, f"sleep 60 &\necho $! >> {pids}\nwait\n")
    path = write(A, f"command: {hook}", "auto: true")
    serve(host, path)
    publisher = AutoPublisher(PolicyStore(load_config(path)))
    publisher.start()
    try:
        wait_until(pids.exists, timeout=15)
    finally:
        publisher.stop(timeout=0.1)
    (pid,) = [int(pid) for pid in pids.read_text().split()]
    try:
        wait_until(lambda: ended(pid), timeout=10)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_stopping_one_publisher_leaves_another_publishers_command_running(
    write: Write, server: Dns, tmp_path: Path, host: PolicyHost
) -> None:
    # Two apps in one process, each with its publisher: one stopping ends its own command,
    # not the other's, which may be between its delete and its add.
    pids = tmp_path / "pids"
    hook = tmp_path / "stuck-hook"
    shell_script(hook, f"echo $$ >> {pids}\nexec sleep 60\n")
    path = write(A, f"command: {hook}", "auto: true")
    serve(host, path)
    stopped, other = (AutoPublisher(PolicyStore(load_config(path))) for _ in range(2))
    try:
        stopped.start()
        wait_until(lambda: pids.exists() and len(pids.read_text().split()) == 1, timeout=15)
        other.start()
        wait_until(lambda: len(pids.read_text().split()) == 2, timeout=15)
        stopped.stop(timeout=0.1)
        first, second = (int(pid) for pid in pids.read_text().split())
        assert ended(first)
        assert not ended(second)
    finally:
        stopped.stop(timeout=0.1)
        other.stop(timeout=0.1)
    assert ended(second)
