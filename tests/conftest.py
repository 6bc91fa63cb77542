from __future__ import annotations

import logging
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import dns.resolver
import pytest
from hypothesis import settings
from starlette.testclient import TestClient

from mtasts_host import create_app
from mtasts_host.app import PolicyApp

# The same examples on every run: a property test must not turn a build red by chance.
settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("deterministic")

# One domain D, and the policy body it serves (RFC 8461 section 3.2).
CONFIG_D = """\
domains:
  example.com:
    mode: enforce
    mx: [mail.example.com, "*.mx.example.net"]
    max_age: 604800
"""
BODY_D = (
    b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\n"
    b"mx: *.mx.example.net\r\nmax_age: 604800\r\n"
)
# D with one error: a reload of it must change nothing.
INVALID_CONFIG = CONFIG_D.replace("mode: enforce", "mode: enforced")
# Several domains: defaults, an international name, and an id group (RFC 8461 section 8.2).
SEVERAL = """\
defaults: {mode: testing, mx: [mx1.example.net, mx2.example.net], max_age: 1209600}
domains:
  example.com:
    mode: enforce
    mx: [mail.example.com, "*.mx.example.net"]
    max_age: 604800
  example.org: {}
  example.net: {mode: none, max_age: 86400}
  bücher.example: {mode: enforce}
  # two hosted domains whose _mta-sts records are CNAMEs to one shared record
  hosted1.example: {mode: testing, txt_cname: _mta-sts.provider.example}
  hosted2.example: {mode: testing, txt_cname: _mta-sts.provider.example}
"""

WriteConfig = Callable[..., Path]
MakeClient = Callable[..., TestClient]


@pytest.fixture(autouse=True)
def _stops_what_it_starts() -> Iterator[None]:
    """
    Every test stops the threads it starts, and leaves logging as it found it.

    A watcher that outlives its test logs into whatever the root logger has then; and
    ``mtasts-host serve`` run in-process configures logging for the whole process, with a
    handler on the test's captured stderr, which pytest closes when the test ends.
    """
    threads = set(threading.enumerate())
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)
    started = [thread for thread in threading.enumerate() if thread not in threads]
    for thread in started:
        thread.join(5)  # one that is ending ends now; one left running fails the test
    assert [thread.name for thread in started if thread.is_alive()] == []


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write YAML (dedented) to a file in a fresh directory and return its path."""

    def write(text: str = CONFIG_D, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def resolv_conf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A file that dnspython reads in place of /etc/resolv.conf; nothing written to it yet."""
    path = tmp_path / "resolv.conf"
    read = dns.resolver.BaseResolver.read_resolv_conf

    def read_this(resolver: dns.resolver.BaseResolver, f: object) -> None:
        read(resolver, path)

    monkeypatch.setattr(dns.resolver.BaseResolver, "read_resolv_conf", read_this)
    monkeypatch.setattr(dns.resolver, "default_resolver", None)  # made again, from it
    return path


@pytest.fixture(params=[False, True], ids=["static", "watching"])
def make_client(request: pytest.FixtureRequest, write_config: WriteConfig) -> Iterator[MakeClient]:
    """
    A TestClient for an app serving the given YAML, sending Host: mta-sts.example.com; each
    test runs against a static and a watching app.
    """
    apps: list[PolicyApp] = []

    def make(text: str = CONFIG_D, host: str = "mta-sts.example.com") -> TestClient:
        app = create_app(write_config(text), watch=request.param)
        apps.append(app)
        return TestClient(app, base_url=f"http://{host}")

    yield make
    for app in apps:
        if app.reloader is not None:
            app.reloader.stop()


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()


def wait_until(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    """Poll until predicate() is true; fail after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.01)
