"""The doctor in the background of ``serve``: runs, reports, and stops when told."""

from __future__ import annotations

import dataclasses
import gc
import logging
import threading
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from mtasts_host.config import load_config
from mtasts_host.doctor import (
    Background,
    Check,
    DoctorError,
    DoctorOptions,
    Publishing,
    Report,
    Status,
)
from mtasts_host.doctor import background as background_module
from mtasts_host.reload import Reloader
from mtasts_host.store import PolicyStore

from ..conftest import wait_until
from .conftest import World
from .world import DOMAINS, config_text


def scrape(background: Background) -> str:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(background)
    return generate_latest(registry).decode()


def _doctor_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "mtasts-host-doctor"]


def test_runs_in_a_thread_and_keeps_the_latest_report(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="mtasts_host.doctor")
    options = dataclasses.replace(world.options, domains=("good.test", "oldid.test"))
    background = Background(PolicyStore(world.snapshot.config), options, interval=3600)
    assert background.detail() == {"interval_seconds": 3600, "finished_at": None}
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
    finally:
        background.stop()
    assert _doctor_threads() == []
    registry = CollectorRegistry(auto_describe=False)
    registry.register(background)
    metrics = generate_latest(registry).decode()
    assert 'mtasts_doctor_check{check="dns-id",domain="oldid.test"} 2.0' in metrics
    assert 'mtasts_certificate_expiry_timestamp_seconds{host="mta-sts.good.test"}' in metrics
    detail = background.detail()
    assert detail["status"] == "fail"
    problems = detail["problems"]
    assert isinstance(problems, list)
    assert [(p["domain"], p["check"]) for p in problems] == [("oldid.test", "dns-id")]
    messages = [record.getMessage() for record in caplog.records]
    assert [m for m in messages if "fail" in m and m.startswith("doctor: oldid")] != []
    assert messages[-1].startswith("doctor: 2 domains checked in ")
    assert messages[-1].endswith(" s: 1 failing, 0 warning")


def test_one_domain_checked_is_one_domain(world: World, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="mtasts_host.doctor")
    options = dataclasses.replace(world.options, domains=("good.test",))
    background = Background(PolicyStore(world.snapshot.config), options, interval=3600)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
    finally:
        background.stop()
    assert caplog.records[-1].getMessage().startswith("doctor: 1 domain checked in ")


def test_a_reload_starts_a_run_and_failures_are_counted_run_by_run(
    world: World, tmp_path: Path
) -> None:
    path = tmp_path / "config.yaml"
    good, oldid = (
        next(d for d in DOMAINS if d.name == name) for name in ("good.test", "oldid.test")
    )
    path.write_text(config_text([good, oldid]))
    store = PolicyStore(load_config(path))
    reloader = Reloader(store)
    background = Background(store, world.options, interval=3600, soonest=0)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
        assert 'check_failed_runs{check="dns-id",domain="oldid.test"} 1.0' in scrape(background)
        first = background.latest
        reloader.reload()  # the same file: another run all the same, long before the hour
        wait_until(lambda: background.latest is not first, timeout=20)
        assert 'check_failed_runs{check="dns-id",domain="oldid.test"} 2.0' in scrape(background)
        path.write_text(config_text([good]))
        reloader.reload()  # oldid.test removed: its results go with the next run
        wait_until(lambda: list(getattr(background.latest, "domains", ())) == ["good.test"])
    finally:
        background.stop()
    metrics = scrape(background)
    assert "oldid.test" not in metrics
    assert 'mtasts_doctor_check_failed_runs{check="dns-id",domain="good.test"} 0.0' in metrics


def test_a_run_checks_the_config_the_publisher_was_asked_about(
    world: World, tmp_path: Path
) -> None:
    """
    A reload right after the doctor asked the publisher, idle then: the run checks the config
    it asked about, not the new one, whose id the publisher has yet to publish (that would
    be a failure advising to publish by hand); the reload has the next run check the new one.
    """
    good = next(d for d in DOMAINS if d.name == "good.test")
    path = tmp_path / "config.yaml"
    path.write_text(config_text([good]))
    store = PolicyStore(load_config(path))
    reloader = Reloader(store)
    asked: list[None] = []

    def publishing() -> dict[str, Publishing]:
        if not asked:
            asked.append(None)
            path.write_text(config_text([good]).replace("604800", "604801"))
            assert reloader.reload()
        return {}

    options = dataclasses.replace(world.options, domains=("good.test",))
    background = Background(store, options, interval=3600, publishing=publishing)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
    finally:
        background.stop()
    latest = background.latest
    assert latest is not None
    assert [f.status for f in latest.findings() if f.check is Check.DNS_ID] == [Status.OK]


def test_what_the_publisher_has_pending_is_no_failure_and_run_soon_runs_again(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    """
    oldid.test's record, pending at the automatic publisher: a warning that the publisher is
    on it, not a failure with advice to publish by hand; once the publisher is done (here:
    gives up the record), ``run_soon`` has the doctor say what the DNS holds at once.
    """
    caplog.set_level(logging.INFO, logger="mtasts_host.doctor")
    options = dataclasses.replace(world.options, domains=("good.test", "oldid.test"))
    pending = {"oldid.test": Publishing()}
    background = Background(
        PolicyStore(world.snapshot.config),
        options,
        interval=3600,
        soonest=0,
        publishing=lambda: dict(pending),
    )
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
        first = background.latest
        assert 'mtasts_doctor_check{check="dns-id",domain="oldid.test"} 1.0' in scrape(background)
        assert 'check_failed_runs{check="dns-id",domain="oldid.test"} 0.0' in scrape(background)
        detail = background.detail()
        assert detail["status"] == "warn"
        problems = detail["problems"]
        assert isinstance(problems, list)
        (problem,) = [p for p in problems if p["check"] == "dns-id"]
        assert problem["status"] == "warn"
        assert problem["message"].startswith("DNS has id=20240101T000000; the automatic publisher ")
        pending.clear()
        background.run_soon()
        wait_until(lambda: background.latest is not first, timeout=20)
    finally:
        background.stop()
    assert 'mtasts_doctor_check{check="dns-id",domain="oldid.test"} 2.0' in scrape(background)
    messages = [r.getMessage() for r in caplog.records if "oldid.test" in r.getMessage()]
    assert [m.split(": ")[2:4] for m in messages] == [["warn", "dns-id"], ["fail", "dns-id"]]


def test_a_run_that_cannot_be_made_is_said_in_readyz(
    world: World, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A --ca-file removed after start-up: the last report stays, said to be the last good."""
    ca_file = tmp_path / "ca.pem"
    ca_file.write_bytes(Path(str(world.options.ca_file)).read_bytes())
    options = dataclasses.replace(world.options, domains=("good.test",), ca_file=str(ca_file))
    store = PolicyStore(world.snapshot.config)
    background = Background(store, options, interval=3600, soonest=0)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
        good = background.latest
        ca_file.unlink()
        store.listeners[-1](store.snapshot, store.snapshot)  # as a reload does
        wait_until(lambda: "last_run_error" in background.detail(), timeout=20)
        detail = background.detail()
        assert str(detail["last_run_error"]).startswith(f"--ca-file {ca_file}: ")
        assert background.latest is good
        assert detail["status"] == "ok"
        ca_file.write_bytes(Path(str(world.options.ca_file)).read_bytes())
        store.listeners[-1](store.snapshot, store.snapshot)
        wait_until(lambda: background.latest is not good, timeout=20)
    finally:
        background.stop()
    assert "last_run_error" not in background.detail()
    failed = [r for r in caplog.records if r.getMessage().startswith("doctor: the run failed")]
    assert [(r.levelno, r.exc_info) for r in failed] == [(logging.ERROR, None)]


def test_runs_that_cannot_be_made_are_logged_once_and_again_once_they_can(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """
    A --ca-file gone for several runs is one error, not one a run (an interval of 15 min
    logged it 96 times a day), and the run that works again says so.
    """
    caplog.set_level(logging.INFO, logger="mtasts_host.doctor")
    runs: list[int] = []

    async def check(snapshot: object, options: object, pending: object) -> Report:
        runs.append(len(runs))
        if len(runs) <= 3:
            raise DoctorError("--ca-file /etc/ca.pem: No such file or directory")
        return Report({})

    monkeypatch.setattr(background_module, "check", check)
    store = PolicyStore(world.snapshot.config)
    background = Background(store, world.options, interval=0.01, soonest=0)
    background.start()
    try:
        wait_until(lambda: len(runs) >= 5, timeout=20)
    finally:
        background.stop()
    messages = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert messages[:3] == [
        (logging.ERROR, "doctor: the run failed: --ca-file /etc/ca.pem: No such file or directory"),
        (logging.INFO, "doctor: runs work again"),
        (logging.INFO, "doctor: 0 domains checked in 0.0 s: 0 failing, 0 warning"),
    ]
    assert [m for _, m in messages if "failed" in m or "again" in m] == [m for _, m in messages[:2]]


def test_a_run_is_made_with_the_cyclic_collector_paused(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    A run keeps a task and its result for every host it probes: with the collector on, full
    collections came every few seconds at 100,000 domains, each holding the GIL, and so the
    policy answers, for up to 2 s. The collector runs again once the run is over.
    """
    collecting: list[bool] = []
    collected: list[tuple[int, bool]] = []
    collect = gc.collect

    async def check(snapshot: object, options: object, pending: object) -> Report:
        collecting.append(gc.isenabled())
        return Report({})

    def counted(generation: int = 2) -> int:
        if threading.current_thread().name == "mtasts-host-doctor":
            collected.append((generation, gc.isenabled()))
        return collect(generation)

    monkeypatch.setattr(background_module, "check", check)
    monkeypatch.setattr(gc, "collect", counted)
    assert gc.isenabled()
    background = Background(PolicyStore(world.snapshot.config), world.options, interval=3600)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
    finally:
        background.stop()
    assert collecting == [False]
    # Then one full collection, before the collector is back: the pause left three due.
    assert collected == [(2, False)]
    assert gc.isenabled()


def test_stop_ends_the_wait_for_the_soonest_next_run(world: World) -> None:
    options = dataclasses.replace(world.options, domains=("good.test",))
    store = PolicyStore(world.snapshot.config)
    background = Background(store, options, interval=3600, soonest=3600)
    background.start()
    wait_until(lambda: background.latest is not None, timeout=20)
    store.listeners[-1](store.snapshot, store.snapshot)  # as a reload does
    background.stop(timeout=10)
    assert _doctor_threads() == []


def test_stop_cancels_a_run_in_progress(world: World) -> None:
    # Fifty hosts that never answer: the run would take a minute at least.
    options = dataclasses.replace(world.options, timeout=60.0)
    background = Background(PolicyStore(world.slow.config), options, interval=3600)
    background.start()
    time.sleep(0.5)  # the run is under way
    background.stop(timeout=30)  # ends well within, or the run was not cancelled
    assert _doctor_threads() == []
    assert background.latest is None


def test_options_that_cannot_work_fail_at_once(world: World) -> None:
    with pytest.raises(DoctorError, match=r"^--ca-file /nonexistent\.pem: "):
        Background(
            PolicyStore(world.snapshot.config), DoctorOptions(ca_file="/nonexistent.pem"), 60
        )


def test_the_expiry_of_a_certificate_that_fails_verification_and_only_of_configured_hosts(
    world: World, tmp_path: Path
) -> None:
    # An expired or misnamed certificate had no series: the alert kept the last expiry seen
    # for a week, for a host removed from the config as well.
    path = tmp_path / "config.yaml"
    names = ("good.test", "expired.test", "wrongname.test", "mxexpired.test")
    path.write_text(config_text([d for d in DOMAINS if d.name in names]))
    store = PolicyStore(load_config(path))
    background = Background(store, world.options, interval=3600, soonest=0)
    background.start()
    try:
        wait_until(lambda: background.latest is not None, timeout=20)
        first = background.latest
        assert first is not None
        now = time.time()
        expiry = first.certificates
        assert expiry["mta-sts.expired.test"] < now < expiry["mta-sts.good.test"]
        assert expiry["mx.mxexpired.test"] < now
        assert expiry["mta-sts.wrongname.test"] > now
        assert 'expiry_timestamp_seconds{host="mta-sts.expired.test"}' in scrape(background)
        path.write_text(config_text([d for d in DOMAINS if d.name == "good.test"]))
        assert Reloader(store).reload()
        background.run_soon()
        wait_until(lambda: background.latest is not first, timeout=20)
    finally:
        background.stop()
    metrics = scrape(background)
    assert 'expiry_timestamp_seconds{host="mta-sts.good.test"}' in metrics
    assert "expired.test" not in metrics
    assert "wrongname.test" not in metrics
