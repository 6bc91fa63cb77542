"""The name the doctor gives in EHLO: as ``--ehlo`` takes it, and the default."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mtasts_host.config import load_config
from mtasts_host.doctor import DoctorOptions, ehlo, run
from mtasts_host.store import build_snapshot

from ..processes import free_port


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Doctor.Example.COM.", "doctor.example.com"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]"),
        ("[ipv6:2001:db8:0::1]", "[IPv6:2001:db8::1]"),
    ],
)
def test_names_taken(text: str, name: str) -> None:
    assert ehlo.ehlo_name(text) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("vm", "a fully qualified host name", id="bare-name"),
        pytest.param("doctor.example.com\r\nRSET", "a fully qualified host name", id="crlf"),
        pytest.param("192.0.2.1", "a fully qualified host name", id="address-without-brackets"),
        pytest.param("[2001:db8::1]", "an address literal", id="ipv6-without-tag"),
        pytest.param("[IPv6:192.0.2.1]", "an address literal", id="ipv4-with-ipv6-tag"),
        pytest.param("[doctor.example.com]", "an address literal", id="name-in-brackets"),
    ],
)
def test_names_refused(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"^expected {expected} like "):
        ehlo.ehlo_name(text)


@pytest.mark.parametrize(
    ("fqdn", "name"),
    [
        pytest.param("doctor.example.com", "doctor.example.com", id="fqdn"),
        pytest.param("3f2a9c1d7b4e", None, id="container-id"),
        pytest.param("localhost", None, id="localhost"),
        pytest.param("localhost.localdomain", None, id="loopback-line-of-etc-hosts"),
        pytest.param("vm.localdomain", None, id="localdomain"),
        pytest.param("127.0.0.1", None, id="address"),
    ],
)
def test_machine_name(fqdn: str, name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: fqdn)
    assert ehlo.machine_name(10.0) == name


def test_a_host_name_that_idna_cannot_encode_is_no_name(monkeypatch: pytest.MonkeyPatch) -> None:
    # socket.getfqdn() raises, rather than returns, for a host name such as "a..b".
    monkeypatch.setattr(socket, "gethostname", lambda: "a..b")
    assert ehlo.machine_name(10.0) is None


@pytest.fixture
def hung_resolver(monkeypatch: pytest.MonkeyPatch) -> Iterator[threading.Event]:
    """getfqdn() hangs, as it does when the resolver it asks never answers: until the test
    ends, or a minute at most, so that a test of a doctor that waits for it ends too. The event
    yielded is set once it has answered."""
    released, answered = threading.Event(), threading.Event()

    def getfqdn(name: str = "") -> str:
        released.wait(60)
        answered.set()
        return "doctor.example.com"

    monkeypatch.setattr(socket, "getfqdn", getfqdn)
    monkeypatch.setattr(ehlo, "_hung", None, raising=False)  # none of it left for the next test
    yield answered
    released.set()


@pytest.mark.timeout(120)
def test_machine_name_gives_up_after_the_timeout(
    hung_resolver: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, "mtasts_host.doctor.ehlo"):
        assert ehlo.machine_name(0.2) is None
    assert not hung_resolver.is_set()
    assert caplog.messages == [
        "doctor: no name for this machine within 0.2 s (the resolver hangs?): EHLO gives the "
        "address literal of each connection instead; set one with --ehlo"
    ]


def _lookups() -> set[threading.Thread]:
    return {thread for thread in threading.enumerate() if thread.name == "mtasts-host-fqdn"}


@pytest.mark.timeout(120)
def test_a_resolver_that_keeps_hanging_is_one_warning_and_one_thread(
    hung_resolver: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    """
    The doctor of serve asks at every run: a warning each time, and another thread left
    behind each time, while the resolver hung (every 15 minutes, or every 2 s).
    """
    before = _lookups()
    with caplog.at_level(logging.WARNING, "mtasts_host.doctor.ehlo"):
        for _ in range(3):
            assert ehlo.machine_name(0.1) is None
    assert len(_lookups() - before) == 1
    assert caplog.messages == [
        "doctor: no name for this machine within 0.1 s (the resolver hangs?): EHLO gives the "
        "address literal of each connection instead; set one with --ehlo"
    ]


@pytest.mark.timeout(120)
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_hung_lookup_is_not_waited_for_in_a_forked_process(
    hung_resolver: threading.Event, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fork copies no thread: the child asks again, rather than wait for ever, silently,
    for a lookup that hung in its parent and has no thread there to answer it."""
    assert ehlo.machine_name(0.1) is None
    monkeypatch.setattr(socket, "getfqdn", lambda: "mail.example.com")
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (the child's own coverage is not collected)
        os.write(write, str(ehlo.machine_name(10.0)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as answer:
        found = answer.read().decode()
    os.waitpid(child, 0)
    assert found == "mail.example.com"


@pytest.mark.timeout(120)
def test_the_doctor_does_not_wait_for_a_hung_resolver(
    hung_resolver: threading.Event, tmp_path: Path
) -> None:
    # Before any check, the doctor asks for this machine's name: a resolver that never
    # answers held it there, whatever --timeout said.
    path = tmp_path / "config.yaml"
    path.write_text("domains:\n  example.test:\n    mode: none\n")
    dns = ("127.60.3.2", free_port("127.60.3.2"))  # nothing listens: each lookup fails fast
    report = run(build_snapshot(load_config(path)), DoctorOptions(resolver=dns, timeout=0.5))
    assert list(report.domains) == ["example.test"]
    assert not hung_resolver.is_set()


@pytest.mark.parametrize(
    ("address", "literal"),
    [
        ("192.0.2.1", "[192.0.2.1]"),
        ("2001:db8::1", "[IPv6:2001:db8::1]"),
        ("fe80::1%eth0", "[IPv6:fe80::1]"),  # the zone means nothing to the server
    ],
)
def test_address_literal(address: str, literal: str) -> None:
    assert ehlo.address_literal(address) == literal
