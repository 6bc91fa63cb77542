"""Hot reload: the loop on a fake change stream, then the real watcher on a real directory."""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import watchfiles
from starlette.testclient import TestClient

from mtasts_host import PolicyStore, create_app, load_config, reload
from mtasts_host.config import Config, ConfigError, Problem, file_identity
from mtasts_host.policy import POLICY_PATH
from mtasts_host.reload import ConfigFilter, Reloader
from mtasts_host.store import Snapshot

from .conftest import BODY_D, CONFIG_D, INVALID_CONFIG, WriteConfig, wait_until

TESTING = CONFIG_D.replace("mode: enforce", "mode: testing")
BODY_TESTING = BODY_D.replace(b"mode: enforce", b"mode: testing")


def make_reloader(path: Path, debounce_ms: int = 50) -> Reloader:
    return Reloader(PolicyStore(load_config(path)), debounce_ms=debounce_ms)


def body(reloader: Reloader, domain: str = "example.com") -> bytes | None:
    served = reloader.store.lookup(domain)
    return served.body if served else None


def wait_for_body(reloader: Reloader, expected: bytes) -> None:
    """Wait until the store serves ``expected`` for example.com."""
    wait_until(lambda: body(reloader) == expected)


# -- the loop, driven by a fake change stream --------------------------------------------------


def test_each_batch_reloads_a_changed_file(write_config: WriteConfig) -> None:
    path = write_config()
    reloader = make_reloader(path)
    seen: list[bytes | None] = []

    def changes() -> Iterator[set[tuple[watchfiles.Change, str]]]:
        for text in (TESTING, INVALID_CONFIG, CONFIG_D):
            path.write_text(text)
            yield {(watchfiles.Change.modified, str(path))}
            seen.append(body(reloader))

    reloader.run(changes())
    assert seen == [BODY_TESTING, BODY_TESTING, BODY_D]
    assert body(reloader) == BODY_D
    assert (reloader.store.status.succeeded, reloader.store.status.failed) == (2, 1)


def test_unchanged_file_is_not_reloaded(write_config: WriteConfig) -> None:
    reloader = make_reloader(write_config())
    reloader.run([{(watchfiles.Change.modified, "x")}] * 3)
    assert reloader.store.status.succeeded == 0


def test_invalid_file_keeps_the_last_good_policies(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config()
    reloader = make_reloader(path)
    snapshot = reloader.store.snapshot
    path.write_text(INVALID_CONFIG)
    assert reloader.reload() is False
    assert reloader.store.snapshot is snapshot
    problem = (
        f"{path}:3: domains.example.com.mode: expected one of enforce, testing, none, "
        "got 'enforced'"
    )
    assert reloader.store.status.last_error == problem
    assert caplog.messages == [
        f"reload of {path} rejected, still serving the last good policies: {problem}"
    ]
    assert caplog.records[0].levelno == logging.ERROR


@pytest.mark.parametrize(
    ("domains", "more"), [(2, " (and 1 more)"), (1001, " (and over 999 more)")]
)
def test_the_errors_beyond_the_first_are_counted(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture, domains: int, more: str
) -> None:
    path = write_config()
    reloader = make_reloader(path)
    path.write_text(
        "domains:\n" + "".join(f"  d{i}.example: {{mode: x}}\n" for i in range(domains))
    )
    assert reloader.reload() is False
    problem = f"{path}:2: domains.d0.example.mode: expected one of enforce, testing, none, got 'x'"
    assert caplog.messages == [
        f"reload of {path} rejected, still serving the last good policies: {problem}{more}"
    ]


def test_a_syntax_error_is_the_error_logged(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    # A key missing its ':' made "domains" a string: that was the error logged and shown.
    path = write_config()
    reloader = make_reloader(path)
    path.write_text("domains:\n  example.com\n    mode: enforce\n")
    assert reloader.reload() is False
    assert body(reloader) == BODY_D
    problem = f"{path}:3:9: mapping values are not allowed in this context"
    assert reloader.store.status.last_error == problem
    assert caplog.messages == [
        f"reload of {path} rejected, still serving the last good policies: {problem}"
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (None, "{path}: no such file"),
        ("", "{path}:1: the file is empty; expected a mapping with a 'domains' key"),
    ],
    ids=["missing", "empty"],
)
def test_missing_or_empty_file_mid_deploy(
    write_config: WriteConfig, text: str | None, problem: str
) -> None:
    path = write_config()
    reloader = make_reloader(path)
    if text is None:
        path.unlink()
    else:
        path.write_text(text)
    assert reloader.reload_if_changed() is False
    assert body(reloader) == BODY_D
    assert reloader.store.status.last_error == problem.format(path=path)


def test_a_large_change_is_one_line_of_a_readable_size(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """The line names ten domains of each kind of change and counts the rest."""
    path = write_config(
        "domains:\n" + "".join(f"  d{i}.example: {{mode: none}}\n" for i in range(25))
    )
    reloader = make_reloader(path)
    caplog.set_level(logging.INFO)
    path.write_text(
        "domains:\n"
        + "".join(f"  d{i}.example: {{mode: testing, mx: mx.example}}\n" for i in range(12))
        + "".join(f"  n{i}.example: {{mode: none}}\n" for i in range(3))
    )
    assert reloader.reload() is True
    new = reloader.store.snapshot
    changed = ", ".join(f"d{i}.example id={new.served[f'd{i}.example'].id}" for i in range(10))
    added = ", ".join(f"n{i}.example id={new.served[f'n{i}.example'].id}" for i in range(3))
    removed = ", ".join(f"d{i}.example" for i in range(12, 22))
    (line,) = [message for message in caplog.messages if message.startswith("reloaded")]
    assert line.startswith(
        f"reloaded {new.describe()}; added 3: {added}; changed 12: {changed} and 2 more; "
        f"removed 13: {removed} and 3 more; in 60 s, once proxies' caches"
    )


def test_success_clears_the_error_and_logs_the_changes(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config(CONFIG_D + "  example.org: {mode: testing, mx: mx.example.net}\n")
    reloader = make_reloader(path)
    path.write_text(INVALID_CONFIG)
    reloader.reload()
    caplog.clear()
    caplog.set_level(logging.INFO)
    path.write_text(TESTING + "  example.net: {mode: none, mx: mx.example.net}\n")
    assert reloader.reload() is True
    assert reloader.store.status.last_error is None
    new = reloader.store.snapshot.served
    digest = reloader.store.snapshot.digest
    assert caplog.messages[0] == (
        f"reloaded {path}: 2 domains, digest {digest}; "
        f"added 1: example.net id={new['example.net'].id}; changed 1: "
        f"example.com id={new['example.com'].id}; removed 1: example.org; in 60 s, once "
        "proxies' caches have let the old policies go, update the _mta-sts TXT id of each "
        "added or changed domain ('mtasts-host dns' prints the records, shared ones "
        "included): a new id seen before the new policy is served has senders cache the "
        "old policy under it (RFC 8461 section 8.1)"
    )
    assert caplog.messages[1].startswith(
        "example.org was removed while in mode testing: senders that cached its policy keep "
        "applying it until "
    )
    assert caplog.messages[1].endswith(
        "(max_age 604800). RFC 8461 section 8.3: serve mode none with a short max_age and a new "
        "TXT id, and remove the domain only after the old max_age has passed"
    )
    assert caplog.records[1].levelno == logging.WARNING


def test_each_listener_gets_the_snapshots_of_its_reload(write_config: WriteConfig) -> None:
    # The snapshot served by the time a listener runs may be a later reload's already.
    path = write_config()
    reloader = make_reloader(path)
    first = reloader.store.snapshot
    seen: list[tuple[Snapshot, Snapshot]] = []
    later = load_config(write_config(CONFIG_D, "later.yaml"))

    def replace_again(old: Snapshot, new: Snapshot) -> None:
        reloader.store.replace(later)

    reloader.store.listeners += [
        lambda old, new: seen.append((old, new)),
        replace_again,
        lambda old, new: seen.append((old, new)),
    ]
    path.write_text(TESTING)
    assert reloader.reload() is True
    assert seen[0] == seen[1]
    assert seen[0][0] is first
    assert seen[0][1].served["example.com"].body == BODY_TESTING


@pytest.mark.parametrize(
    ("name", "passes"),
    [
        ("config.yaml", True),
        ("..data", True),  # the ConfigMap symlink
        ("..2026_11_27_10_00_00.123", True),  # a ConfigMap data directory
        ("..data_tmp", True),
        (".config.yaml.swp", False),  # vim
        ("config.yaml~", False),  # backups
        ("4913", False),  # vim's write test
        (".#config.yaml", False),  # emacs lock
        ("config.yaml.tmp", False),
        ("other.yaml", False),
    ],
)
def test_filter(name: str, passes: bool) -> None:
    check = ConfigFilter(Path("/etc/mtasts-host/config.yaml"))
    assert check(watchfiles.Change.modified, f"/etc/mtasts-host/{name}") is passes


# -- the real watcher -----------------------------------------------------------------------


@contextlib.contextmanager
def watching(reloader: Reloader) -> Iterator[Reloader]:
    """Run the real watcher for the body of a with block: its thread has ended at the end."""
    reloader.start()
    try:
        yield reloader
    finally:
        reloader.stop()
    assert reloader._thread is not None
    assert not reloader._thread.is_alive()


def replace_by_rename(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def test_requests_are_answered_while_a_reload_reads(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    """
    The notes, section 1.2.4: a reload never holds a request up. The watcher's thread reads
    the file, and the app answers from the snapshot it has until the new one is whole.
    """
    reading, go_on, read = threading.Event(), threading.Event(), threading.Event()

    def held(*args: Any, **kwargs: Any) -> Config:
        reading.set()
        try:
            assert go_on.wait(10)
            return load_config(*args, **kwargs)
        finally:
            read.set()

    monkeypatch.setattr(reload, "load_config", held)
    path = write_config()
    app = create_app(path)
    with TestClient(app, base_url="http://mta-sts.example.com") as client:
        assert client.get(POLICY_PATH).content == BODY_D  # the watcher starts with it
        replace_by_rename(path, TESTING)
        assert reading.wait(10)
        assert client.get(POLICY_PATH).content == BODY_D
        assert not read.is_set()  # answered while the reload was still reading
        go_on.set()
        wait_until(lambda: client.get(POLICY_PATH).content == BODY_TESTING)


def test_rewrite_in_place(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        for text, expected in [
            (TESTING, BODY_TESTING),
            (CONFIG_D, BODY_D),
            (TESTING, BODY_TESTING),
        ]:
            reloader.path.write_text(text)
            wait_for_body(reloader, expected)


def test_replace_by_rename(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        for text, expected in [(TESTING, BODY_TESTING), (CONFIG_D, BODY_D)]:
            replace_by_rename(reloader.path, text)
            wait_for_body(reloader, expected)


def test_delete_and_recreate(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        reloader.path.unlink()
        wait_until(lambda: reloader.store.status.failed >= 1)
        assert body(reloader) == BODY_D  # nothing is lost while the file is away
        reloader.path.write_text(TESTING)
        wait_for_body(reloader, BODY_TESTING)
        assert reloader.store.status.last_error is None


def test_bad_edit_then_good_edit(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        reloader.path.write_text(INVALID_CONFIG)
        wait_until(lambda: reloader.store.status.failed >= 1)
        assert body(reloader) == BODY_D
        reloader.path.write_text(TESTING)
        wait_for_body(reloader, BODY_TESTING)


def test_unrelated_files_do_not_reload(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        directory = reloader.path.parent
        for name in (".config.yaml.swp", "config.yaml~", "4913", "readme.txt"):
            (directory / name).write_text(INVALID_CONFIG)
        # The edit that follows bounds the wait: once it is served, the files before it
        # have been seen too, and they added no reload of their own.
        replace_by_rename(reloader.path, TESTING)
        wait_for_body(reloader, BODY_TESTING)
    assert (reloader.store.status.succeeded, reloader.store.status.failed) == (1, 0)


def configmap_swap(directory: Path, version: int, text: str) -> None:
    """What the kubelet does: a new data directory, then an atomic swap of the ..data link."""
    data = directory / f"..2026_11_27_00_00_{version:02d}.000"
    data.mkdir()
    (data / "config.yaml").write_text(text)
    old = (directory / "..data").resolve() if (directory / "..data").exists() else None
    tmp = directory / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, directory / "..data")
    if old is not None:
        shutil.rmtree(old)


def test_configmap_symlink_swaps(tmp_path: Path) -> None:
    directory = tmp_path / "configmap"
    directory.mkdir()
    configmap_swap(directory, 1, CONFIG_D)
    (directory / "config.yaml").symlink_to("..data/config.yaml")
    with watching(make_reloader(directory / "config.yaml")) as reloader:
        for version, (text, expected) in enumerate(
            [(TESTING, BODY_TESTING), (CONFIG_D, BODY_D), (TESTING, BODY_TESTING)], start=2
        ):
            configmap_swap(directory, version, text)
            wait_for_body(reloader, expected)
    assert reloader.store.status.failed == 0


def test_hundred_updates(write_config: WriteConfig) -> None:
    with watching(make_reloader(write_config())) as reloader:
        for i in range(100):
            text = CONFIG_D.replace("max_age: 604800", f"max_age: {700000 + i}")
            expected = BODY_D.replace(b"604800", str(700000 + i).encode())
            replace_by_rename(reloader.path, text)
            wait_for_body(reloader, expected)


def test_change_before_watching_starts_is_seen(write_config: WriteConfig) -> None:
    path = write_config()
    reloader = make_reloader(path)
    path.write_text(TESTING)
    with watching(reloader):
        wait_for_body(reloader, BODY_TESTING)


def test_a_change_made_before_the_reloader_exists_is_seen(write_config: WriteConfig) -> None:
    # As when an app is made from a store loaded earlier: the reloader knows what was read.
    path = write_config()
    store = PolicyStore(load_config(path))
    replace_by_rename(path, TESTING)
    with watching(Reloader(store, debounce_ms=50)) as reloader:
        wait_for_body(reloader, BODY_TESTING)


@pytest.mark.parametrize(
    ("where", "real"),
    [
        ("mtasts_host.reload.load_config", load_config),
        ("mtasts_host.PolicyStore.replace", PolicyStore.replace),  # building the policies
    ],
    ids=["reading", "building"],
)
def test_a_fault_while_reading_keeps_the_policies_and_the_watcher(
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
    real: Callable[..., Any],
) -> None:
    faults = iter([MemoryError()])

    def once_failing(*args: Any) -> Any:
        fault = next(faults, None)
        if fault is not None:
            raise fault
        return real(*args)

    monkeypatch.setattr(where, once_failing)
    with watching(make_reloader(write_config())) as reloader:
        replace_by_rename(reloader.path, TESTING)
        wait_until(lambda: reloader.store.status.failed == 1)
        assert body(reloader) == BODY_D
        status = reloader.store.status
        assert status.last_error == "the file could not be read: an internal error (see the log)"
        assert reloader._thread is not None
        assert reloader._thread.is_alive()
        replace_by_rename(reloader.path, CONFIG_D.replace("604800", "1209600"))
        wait_for_body(reloader, BODY_D.replace(b"604800", b"1209600"))
    failed = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert [r.getMessage() for r in failed] == [
        f"reload of {reloader.path} failed, still serving the last good policies"
    ]
    assert failed[0].exc_info is not None


def test_a_fault_in_logging_the_changes_keeps_the_watcher(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def fail(*args: Any) -> None:
        raise RuntimeError("a bug in logging")

    monkeypatch.setattr("mtasts_host.reload.log_changes", fail)
    with watching(make_reloader(write_config())) as reloader:
        replace_by_rename(reloader.path, TESTING)
        wait_for_body(reloader, BODY_TESTING)  # served all the same
        replace_by_rename(reloader.path, CONFIG_D)
        wait_for_body(reloader, BODY_D)
    failed = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert failed == [f"could not log what the reload of {reloader.path} changed"] * 2


def test_start_is_idempotent_and_stop_ends_the_thread(write_config: WriteConfig) -> None:
    reloader = make_reloader(write_config())
    reloader.start()
    thread = reloader._thread
    reloader.start()
    assert reloader._thread is thread
    reloader.stop()
    assert thread is not None
    assert not thread.is_alive()


def test_an_empty_batch_still_checks_the_file(write_config: WriteConfig) -> None:
    # The watcher yields an empty batch on every idle timeout: a change it never saw is found.
    path = write_config()
    reloader = make_reloader(path)
    path.write_text(TESTING)
    reloader.run([set()])
    assert body(reloader) == BODY_TESTING


def test_a_batch_naming_the_file_reloads_even_if_it_looks_unchanged(
    write_config: WriteConfig,
) -> None:
    # Rewritten within one tick of a coarse file system clock, the file keeps its size, inode
    # and times: the event decides. The identity it had before is made its identity now.
    path = write_config()
    reloader = make_reloader(path)
    with path.open("r+") as file:
        file.write(TESTING.replace("testing", "none   "))
    reloader._signature = file_identity(path.stat())
    reloader.run([{(watchfiles.Change.modified, "/elsewhere/other.yaml")}])
    assert body(reloader) == BODY_D
    reloader.run([{(watchfiles.Change.modified, str(path))}])
    assert body(reloader) == BODY_D.replace(b"mode: enforce", b"mode: none")


def changes_stamp_later(path: Path) -> bool:
    """Whether a change made now gets a later ctime than ``path`` has: before Linux 6.13,
    changes within one tick of the file system's clock get the same one."""
    probe = path.with_name("probe")
    probe.write_text("")
    return probe.stat().st_ctime_ns > path.stat().st_ctime_ns


def test_a_file_made_readable_again_is_read_again(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Seen without an event (the config a symlink into another directory): a new file that
    # cannot be read yet is refused, then its mode alone changes, which only its ctime shows.
    path = write_config()
    reloader = make_reloader(path)

    def load_if_readable(*args: Any) -> Config:
        if not path.stat().st_mode & 0o444:  # as for a user other than root
            raise ConfigError(str(path), [Problem(str(path), None, "", "permission denied")])
        return load_config(*args)

    monkeypatch.setattr("mtasts_host.reload.load_config", load_if_readable)
    replace_by_rename(path, TESTING)
    path.chmod(0)
    reloader.run([set()])
    assert reloader.store.status.last_error == f"{path}: permission denied"
    wait_until(partial(changes_stamp_later, path))
    path.chmod(0o644)
    reloader.run([set()])
    assert body(reloader) == BODY_TESTING


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda path, elsewhere: os.link(path, elsewhere), id="hard-link-elsewhere"),
        pytest.param(lambda path, elsewhere: path.chmod(0o640), id="chmod-seen-without-an-event"),
    ],
)
def test_a_served_file_whose_change_time_alone_moves_is_not_read_again(
    write_config: WriteConfig, tmp_path: Path, change: Callable[[Path, Path], object]
) -> None:
    # A backup's hard link, an owner or a mode changes nothing served: a reload of a large
    # file would cost seconds, a log line and its warnings again, for nothing.
    path = write_config()
    reloader = make_reloader(path)
    wait_until(partial(changes_stamp_later, path))
    (tmp_path / "backups").mkdir()
    change(path, tmp_path / "backups" / "config.yaml")
    assert file_identity(path.stat()) != reloader._signature  # its change time moved
    reloader.run([set()])
    assert reloader.store.status.succeeded == 0


def test_a_busy_directory_still_checks_the_file(tmp_path: Path) -> None:
    # A log file written without pause beside the config: its batches are checks too.
    path = tmp_path / "config.yaml"
    path.write_text(CONFIG_D)
    reloader = make_reloader(path)
    stop = threading.Event()

    def write_log() -> None:
        with (tmp_path / "server.log").open("a") as log:
            while not stop.wait(0.01):
                log.write("line\n")
                log.flush()

    writer = threading.Thread(target=write_log)
    writer.start()
    try:
        with watching(reloader):
            path.write_text(TESTING)  # possibly before the watch is set up
            wait_for_body(reloader, BODY_TESTING)
    finally:
        stop.set()
        writer.join()


RUA = "    tlsrpt_rua: mailto:tlsrpt@example.com\n"


@pytest.mark.parametrize(
    ("before", "after", "says"),
    [
        (
            CONFIG_D,
            CONFIG_D + RUA,
            "; DNS records changed: _smtp._tls.example.com TXT; publish them ('mtasts-host "
            "dns' prints them)",
        ),
        (
            CONFIG_D + RUA,
            CONFIG_D + RUA + "    dns_ttl: 300\n",
            "; DNS records changed: _mta-sts.example.com TXT, _smtp._tls.example.com TXT; "
            "publish them ('mtasts-host dns' prints them)",
        ),
        (
            CONFIG_D + RUA,
            CONFIG_D,
            "; DNS records no longer configured: _smtp._tls.example.com TXT; delete them by hand",
        ),
        (CONFIG_D, CONFIG_D + "# a comment\n", ""),
    ],
    ids=["tlsrpt-rua-added", "dns-ttl-changed", "tlsrpt-rua-removed", "nothing-changed"],
)
def test_a_reload_that_changes_records_but_no_policy_names_them(
    write_config: WriteConfig,
    caplog: pytest.LogCaptureFixture,
    before: str,
    after: str,
    says: str,
) -> None:
    """ "No policy changed" alone would tell an operator who publishes by hand that there is
    nothing to publish, where a new _smtp._tls record, or a new TTL, waits for them."""
    path = write_config(before)
    reloader = make_reloader(path)
    caplog.set_level(logging.INFO)
    path.write_text(after)
    assert reloader.reload() is True
    digest = reloader.store.snapshot.digest
    assert caplog.messages == [
        f"reloaded {path}: 1 domain, digest {digest}; no policy changed{says}"
    ]


def test_with_auto_publish_changed_records_are_the_publishers(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    publish = "publish: {command: 'true', auto: true}\n"
    path = write_config(CONFIG_D + publish)
    reloader = make_reloader(path)
    reloader.store.publishing = True
    caplog.set_level(logging.INFO)
    path.write_text(CONFIG_D + RUA + publish)
    assert reloader.reload() is True
    assert caplog.messages[-1].endswith(
        "; no policy changed; DNS records changed: _smtp._tls.example.com TXT; the publisher "
        "updates them"
    )


def test_a_changed_reports_block_asks_for_a_restart(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_config()
    reloader = make_reloader(path)
    path.write_text(CONFIG_D + "reports: {store: 'sqlite:///r.db'}\n")
    assert reloader.reload() is True
    assert f"{path}: the reports block changed; restart to apply it" in caplog.messages


@pytest.mark.parametrize(
    ("publishing", "says"),
    [
        (True, "the publisher updates the DNS records once the new policies are served"),
        # Under another ASGI server, or mounted in another app, no publisher runs.
        (False, "in 60 s, once proxies' caches have let the old policies go, update"),
    ],
    ids=["serve-publishes", "no-publisher-running"],
)
def test_with_auto_publish_the_reload_line_says_who_updates_the_ids(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture, publishing: bool, says: str
) -> None:
    publish = "publish: {command: 'true', auto: true}\n"
    path = write_config(CONFIG_D + publish)
    reloader = make_reloader(path)
    reloader.store.publishing = publishing  # as serve's publisher says
    caplog.set_level(logging.INFO)
    path.write_text(CONFIG_D.replace("enforce", "testing") + publish)
    assert reloader.reload() is True
    assert says in caplog.messages[-1]
    assert ("the publisher updates" in caplog.messages[-1]) is publishing


def test_a_directory_missing_when_watching_starts_does_not_end_the_watcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # An embedded app starts watching with its first request, maybe while a deploy has the
    # directory moved away and its replacement not yet in place.
    directory = tmp_path / "conf"
    directory.mkdir()
    path = directory / "config.yaml"
    path.write_text(CONFIG_D)
    reloader = make_reloader(path)
    caplog.set_level(logging.INFO, logger="mtasts_host.reload")

    def said(text: str) -> int:
        return sum(text in message for message in caplog.messages)

    directory.rename(tmp_path / "conf.old")
    with watching(reloader):
        wait_until(lambda: reloader.store.status.failed == 1)
        directory.mkdir()
        path.write_text(TESTING)
        wait_for_body(reloader, BODY_TESTING)
        # The outage is logged, and so is its end.
        wait_until(lambda: said(f"watching {directory} again") == 1)
        replace_by_rename(path, CONFIG_D)  # and it watches the new directory again
        wait_for_body(reloader, BODY_D)
    assert said(f"cannot watch {directory}") == 1


@pytest.mark.parametrize("named", ["directory", "file-in-it"])
def test_names_that_are_not_utf8_do_not_end_the_watcher(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, named: str
) -> None:
    # watchfiles refuses such a directory (UnicodeEncodeError), and a file so named in the
    # directory fails the watch (a RuntimeError of its own).
    directory = tmp_path / os.fsdecode(b"conf-\xff" if named == "directory" else b"conf")
    directory.mkdir()
    path = directory / "config.yaml"
    path.write_text(CONFIG_D)
    junk = (directory / os.fsdecode(b"junk-%d-\xff" % i) for i in itertools.count())

    def watch_failed() -> bool:
        if named == "file-in-it":
            next(junk).write_text("")  # one each time: the first may come before the watch
        return any(f"cannot watch {directory} (" in message for message in caplog.messages)

    with watching(make_reloader(path)) as reloader:
        wait_until(watch_failed)
        replace_by_rename(path, TESTING)
        wait_for_body(reloader, BODY_TESTING)
        assert reloader._thread is not None
        assert reloader._thread.is_alive()


@pytest.mark.parametrize(
    ("withdrawn", "warned"),
    [
        # Withdrawn as RFC 8461 section 8.3 asks, then removed at once: the year-long enforce
        # policy may still be cached by senders.
        ("  example.com: {mode: none, mx: [mail.example.com], max_age: 86400}\n", "enforce"),
        # Cut to a day in testing, then removed: senders may keep the year-long one.
        ("  example.com: {mode: testing, mx: [mail.example.com], max_age: 86400}\n", "enforce"),
    ],
)
def test_removal_warns_until_every_policy_served_has_expired(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture, withdrawn: str, warned: str
) -> None:
    """
    The earliest safe removal is the time a policy was last served plus its max_age, for
    the largest max_age served (RFC 8461 section 8.3; notes, test 47), not the last one's.
    """
    year = 31557600
    path = write_config(
        f"domains:\n  example.com: {{mode: enforce, mx: [mail.example.com], max_age: {year}}}\n"
        "  example.org: {mode: testing, mx: mx.example.net}\n"
    )
    reloader = make_reloader(path)
    path.write_text(
        "domains:\n" + withdrawn + "  example.org: {mode: testing, mx: mx.example.net}\n"
    )
    assert reloader.reload() is True
    caplog.clear()
    caplog.set_level(logging.INFO)
    path.write_text("domains:\n  example.org: {mode: testing, mx: mx.example.net}\n")
    assert reloader.reload() is True
    (warning,) = [record for record in caplog.records if record.levelno == logging.WARNING]
    message = warning.getMessage()
    assert message.startswith("example.com was removed while senders may still apply a policy")
    assert f"(mode {warned}, max_age {year}) until " in message
    until = time.strftime("%Y-%m", time.gmtime(time.time() + year))
    assert f"until {until}" in message
