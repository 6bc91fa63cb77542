from __future__ import annotations

import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import settings
from starlette.testclient import TestClient

from mtasts_host import create_app
from mtasts_host.app import PolicyApp

# The same examples on every run: a property test must not turn a build red by chance.
settings.register_profile("deterministic", derandomize=True, deadline=None, print_blob=True)
settings.load_profile("deterministic")

# The notes' domain D and its canonical body B.
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

WriteConfig = Callable[..., Path]
MakeClient = Callable[..., TestClient]


@pytest.fixture
def write_config(tmp_path: Path) -> WriteConfig:
    """Write YAML (dedented) to a file in a fresh directory and return its path."""

    def write(text: str = CONFIG_D, name: str = "config.yaml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text), encoding="utf-8")
        return path

    return write


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
