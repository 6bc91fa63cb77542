"""A real ``mtasts-host serve`` process, raw bytes on the wire, and real MTA-STS clients."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest
import trustme

from mtasts_host.config import load_config
from mtasts_host.policy import policy_id

from .conftest import BODY_D, CONFIG_D, WriteConfig, wait_until
from .servers import (
    NAMESERVER,
    PYTHON,
    UVICORN_TLS_ADDRESS,
    Process,
    dns_server,
    fetch_with_client,
    free_port,
    raw_request,
    read_response,
    running,
    running_on_socket,
    serve_argv,
    zone_for,
)

INVALID_CONFIG = CONFIG_D.replace("mode: enforce", "mode: enforced")
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


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("serve")
    config = tmp / "config.yaml"
    config.write_text(SEVERAL)
    port = free_port()
    with running(serve_argv(config, port), tmp / "server.log", "127.0.0.1", port) as process:
        yield process
    assert "Traceback" not in process.output()


def get(server: Process, host: bytes, target: bytes = b"/.well-known/mta-sts.txt") -> bytes:
    request = b"GET " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\nConnection: close\r\n\r\n"
    return raw_request(server.port, request)


def test_bytes_on_the_wire(server: Process) -> None:
    response = get(server, b"mta-sts.example.com")
    head, _, body = response.partition(b"\r\n\r\n")
    status, *header_lines = head.split(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    headers = dict(line.lower().split(b": ", 1) for line in header_lines)
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"content-length"] == str(len(BODY_D)).encode()
    assert headers[b"cache-control"] == b"max-age=60"
    assert b"location" not in headers
    assert body == BODY_D


def test_unknown_host_on_the_wire(server: Process) -> None:
    assert get(server, b"mta-sts.unknown.test").startswith(b"HTTP/1.1 404 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: \xff\xfe\x00\r\nConnection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.\xc3(.com\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n\r\n",
        b"GET http://evil.test/.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.unknown.test\r\n"
        b"Connection: close\r\n\r\n",
        b"BREW /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /"
        + b"a" * 20000
        + b" HTTP/1.1\r\nHost: mta-sts.example.com\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: mta-sts.example.com\r\nX-Big: "
        + b"b" * 100_000
        + b"\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS to a plain port
        b"GET / HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        + b"X-A: b\r\n" * 5000
        + b"Connection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ],
    ids=[
        "binary-host",
        "bad-utf8-host",
        "no-host",
        "absolute-form",
        "odd-method",
        "long-target",
        "huge-header",
        "tls-hello",
        "many-headers",
        "smuggling",
    ],
)
def test_hostile_requests_never_5xx(server: Process, request_bytes: bytes) -> None:
    response = raw_request(server.port, request_bytes)
    assert not response.startswith(b"HTTP/1.1 5")
    assert not response.startswith(b"HTTP/1.0 5")
    # the server is still answering others
    assert get(server, b"mta-sts.example.com").endswith(BODY_D)


def test_absolute_form_uses_the_host_header(server: Process) -> None:
    response = get(
        server, b"mta-sts.example.com", b"http://mta-sts.unknown.test/.well-known/mta-sts.txt"
    )
    assert response.startswith(b"HTTP/1.1 200 ")


def test_startup_failure_is_one_line(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config("domains:\n  a.example: {mode: enforced}\n")
    completed = subprocess.run(
        serve_argv(path, free_port()), capture_output=True, text=True, timeout=60, check=False
    )
    assert completed.returncode == 1
    assert completed.stderr == (
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, "
        "got 'enforced'\n"
    )


_TLS_UVICORN = (
    "import sys, uvicorn; from mtasts_host import create_app; "
    "uvicorn.run(create_app(sys.argv[1]), host=sys.argv[2], port=443, "
    "ssl_certfile=sys.argv[3], ssl_keyfile=sys.argv[4], log_level='warning')"
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.parametrize("client", ["postfix-mta-sts-resolver", "checkdmarc"])
def test_real_clients_accept_every_policy_over_tls(
    client: str, ca: trustme.CA, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SEVERAL)
    domains = list(load_config(config).domains)
    cert = ca.issue_cert(*(f"mta-sts.{d}" for d in [*domains, "unknown.test"]))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    argv = [
        PYTHON,
        "-c",
        _TLS_UVICORN,
        str(config),
        UVICORN_TLS_ADDRESS,
        str(tmp_path / "cert.pem"),
        str(tmp_path / "key.pem"),
    ]
    zone = zone_for(config, UVICORN_TLS_ADDRESS, ("unknown.test",))
    with (
        dns_server(zone, NAMESERVER),
        running(argv, tmp_path / "uvicorn.log", UVICORN_TLS_ADDRESS, 443),
    ):
        results = fetch_with_client(
            client, [*domains, "unknown.test"], NAMESERVER, tmp_path / "ca.pem", tmp_path
        )
    served = load_config(config).domains
    for domain in domains:
        policy = served[domain].policy
        status, detail = results[domain]
        assert status == "VALID", (domain, detail)
        assert isinstance(detail, list)
        ident, parsed, warnings = detail
        assert warnings == []
        assert ident == policy_id(policy.render())
        assert isinstance(parsed, dict)
        assert parsed["mode"] == policy.mode.value
        assert parsed["mx"] == list(policy.mx)
        assert int(parsed["max_age"]) == policy.max_age
    # A domain whose TXT record points here but that is not configured gets no policy.
    assert results["unknown.test"][0] in ("FETCH_ERROR", "INVALID")


def http_get(port: int, host: str = "mta-sts.example.com") -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/.well-known/mta-sts.txt", headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serves(port: int, body: bytes) -> bool:
    return http_get(port) == (200, body)


def test_sighup_reloads(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config()
    port = free_port()
    argv = serve_argv(path, port, "--no-watch")
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        path.write_text(CONFIG_D.replace("604800", "604801"))
        expected = BODY_D.replace(b"604800", b"604801")
        threading.Event().wait(0.5)  # not watching: the change is not served by itself
        assert http_get(port) == (200, BODY_D)
        server.process.send_signal(signal.SIGHUP)
        wait_until(lambda: http_get(port) == (200, expected))
    assert f"reloaded {path}: changed 1: example.com id=" in server.output()


def test_reload_while_serving(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config()
    port = free_port()
    versions = [CONFIG_D.replace("604800", str(604800 + i)) for i in range(20)]
    bodies = {BODY_D} | {BODY_D.replace(b"604800", str(604800 + i).encode()) for i in range(20)}
    seen: list[tuple[int, bytes]] = []
    stop = threading.Event()

    def fetch() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        for _ in range(3000):  # bounded, however fast the edits go
            if stop.is_set():
                break
            connection.request(
                "GET", "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.com"}
            )
            response = connection.getresponse()
            seen.append((response.status, response.read()))
        connection.close()

    with running(serve_argv(path, port), tmp_path / "server.log", "127.0.0.1", port) as server:
        clients = [threading.Thread(target=fetch) for _ in range(4)]
        for thread in clients:
            thread.start()
        try:
            for i, text in enumerate(versions):
                tmp = path.with_name("new.yaml")
                tmp.write_text(INVALID_CONFIG if i % 5 == 4 else text)
                os.replace(tmp, path)
                if i % 5 != 4:
                    expected = BODY_D.replace(b"604800", str(604800 + i).encode())
                    wait_until(partial(serves, port, expected))
                else:
                    wait_until(lambda: "rejected" in server.output())
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)
    assert len(seen) > 100
    assert {status for status, _ in seen} == {200}
    assert {body for _, body in seen} <= bodies
    assert "Traceback" not in server.output()


def test_unix_socket(write_config: WriteConfig, tmp_path: Path) -> None:
    path = tmp_path / "mtasts.sock"
    argv = [
        PYTHON,
        "-m",
        "mtasts_host",
        "serve",
        "--config",
        str(write_config()),
        "--uds",
        str(path),
    ]
    with (
        running_on_socket(argv, tmp_path / "server.log", path) as server,
        socket.socket(socket.AF_UNIX) as sock,
    ):
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            b"Connection: close\r\n\r\n"
        )
        assert read_response(sock).endswith(BODY_D)
    assert "Traceback" not in server.output()
