from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mtasts_host import create_app

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


@pytest.fixture
def make_client(write_config: WriteConfig) -> Iterator[MakeClient]:
    """A TestClient for an app serving the given YAML, sending Host: mta-sts.example.com."""
    clients: list[TestClient] = []

    def make(text: str = CONFIG_D, host: str = "mta-sts.example.com") -> TestClient:
        client = TestClient(create_app(write_config(text)), base_url=f"http://{host}")
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
