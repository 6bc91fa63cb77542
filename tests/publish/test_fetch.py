"""verify_url over https: SNI and the certificate check keep the URL's name, whatever
verify_connect connects to, and nothing is followed (RFC 8461 section 3.3)."""

from __future__ import annotations

import contextlib
import http.server
import socket
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import trustme

from mtasts_host.publish.fetch import FetchError, fetch
from mtasts_host.tls import sender_context

from ..processes import free_port

ADDRESS = "127.80.3.1"
NAME = "mta-sts.a.example"
BODY = b"version: STSv1\r\nmode: testing\r\nmx: mx.a.example\r\nmax_age: 86400\r\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    hosts: ClassVar[list[str]] = []
    """The Host header of each request."""
    paths: ClassVar[list[str]] = []
    """The target of each request."""

    def do_GET(self) -> None:
        self.hosts.append(self.headers.get("Host", ""))
        self.paths.append(self.path)
        if self.path == "/moved":
            self.send_response(301)
            self.send_header("Location", f"https://{NAME}/.well-known/mta-sts.txt")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def https_server(ca: trustme.CA | None) -> Iterator[int]:
    """Serves BODY over https with a certificate of ``ca`` for NAME; plain http without."""
    port = free_port(ADDRESS)
    server = http.server.ThreadingHTTPServer((ADDRESS, port), _Handler)
    if ca is not None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(NAME).configure_cert(context)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


def test_https_with_ca_file_and_verify_connect(ca: trustme.CA, tmp_path: Path) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    context = sender_context(str(tmp_path / "ca.pem"))
    with https_server(ca) as port:
        url = f"https://{NAME}/.well-known/mta-sts.txt"
        assert fetch(url, connect=(ADDRESS, port), context=context, timeout=5) == BODY
        with pytest.raises(FetchError, match=r"^HTTP 301 Moved Permanently$"):
            fetch(f"https://{NAME}/moved", connect=(ADDRESS, port), context=context, timeout=5)


def test_an_untrusted_certificate_is_named(ca: trustme.CA) -> None:
    with https_server(ca) as port, pytest.raises(FetchError) as info:
        fetch(f"https://{NAME}/x", connect=(ADDRESS, port), context=sender_context(), timeout=5)
    assert str(info.value).startswith(f"the certificate of {NAME} fails verification: ")


def test_a_server_that_never_answers_is_named_with_the_timeout() -> None:
    with socket.create_server((ADDRESS, 0)) as listener:  # accepts, never reads or answers
        port = listener.getsockname()[1]
        with pytest.raises(FetchError, match=rf"^no answer from {ADDRESS}:{port} within 0.3 s$"):
            fetch(f"http://{NAME}/x", connect=(ADDRESS, port), timeout=0.3)


@pytest.mark.parametrize(
    ("url", "host"),
    [
        (f"https://{NAME}/.well-known/mta-sts.txt", NAME),  # what senders fetch
        (f"https://{NAME}:443/x", NAME),
        (f"https://{NAME}:8443/x", f"{NAME}:8443"),
        (f"http://{NAME}/x", NAME),
        (f"http://{NAME}:8080/x", f"{NAME}:8080"),
        (f"http://{NAME}:443/x", f"{NAME}:443"),
    ],
)
def test_the_host_header_is_the_one_senders_send(
    ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str, host: str
) -> None:
    """The port only when it is not the scheme's (RFC 9110 section 7.2)."""
    hosts: list[str] = []
    monkeypatch.setattr(_Handler, "hosts", hosts)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    https = url.startswith("https")
    context = sender_context(str(tmp_path / "ca.pem")) if https else None
    with https_server(ca if https else None) as port:
        assert fetch(url, connect=(ADDRESS, port), context=context, timeout=5) == BODY
    assert hosts == [host]


@pytest.mark.parametrize(
    ("url", "target"),
    [
        (f"http://{NAME}/.well-known/mta-sts.txt", "/.well-known/mta-sts.txt"),
        (f"http://{NAME}", "/"),
        # A query (a cache-buster, a token a proxy wants) is part of the URL configured.
        (
            f"http://{NAME}/.well-known/mta-sts.txt?via=publish",
            "/.well-known/mta-sts.txt?via=publish",
        ),
        (f"http://{NAME}?x", "/?x"),
    ],
)
def test_the_request_target_is_the_urls(
    monkeypatch: pytest.MonkeyPatch, url: str, target: str
) -> None:
    paths: list[str] = []
    monkeypatch.setattr(_Handler, "paths", paths)
    with https_server(None) as port:
        assert fetch(url, connect=(ADDRESS, port), timeout=5) == BODY
    assert paths == [target]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (f"http://{NAME}:80000/x", "not a usable URL: port out of range 0-65535"),
        (f"http://{NAME}:x/x", "not a usable URL: port could not be cast to integer value as 'x'"),
        ("http://[mta-sts.a.example/x", "not a usable URL: invalid ipv6 url"),
        ("http:///x", "not a usable URL: no host in it"),
    ],
)
def test_a_url_that_cannot_be_fetched(url: str, message: str) -> None:
    with pytest.raises(FetchError) as info:
        fetch(url, timeout=1)
    assert str(info.value) == message


@contextlib.contextmanager
def raw_server(reply: bytes) -> Iterator[int]:
    """Reads one request, sends ``reply`` as it is (nothing if empty) and closes."""
    listener = socket.create_server((ADDRESS, 0))
    listener.settimeout(5)

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(4096)
            connection.sendall(reply)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        thread.join(5)
        listener.close()


@pytest.mark.parametrize(
    ("reply", "scheme", "message"),
    [
        (b"", "http", "remote end closed connection without response ({where})"),
        (b"garbage\r\n\r\n", "http", "a broken HTTP answer from {where} (BadStatusLine)"),
        (b"HTTP/1.0 200 OK\r\n\r\n", "https", "TLS with {where} failed: WRONG_VERSION_NUMBER"),
    ],
    ids=["closed", "not-http", "not-tls"],
)
def test_a_broken_answer_is_named(reply: bytes, scheme: str, message: str) -> None:
    with raw_server(reply) as port, pytest.raises(FetchError) as info:
        fetch(f"{scheme}://{NAME}/x", connect=(ADDRESS, port), timeout=5)
    assert str(info.value) == message.format(where=f"{ADDRESS}:{port}")
