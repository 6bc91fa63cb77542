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

import pytest
import trustme

from mtasts_host.publish.fetch import FetchError, fetch
from mtasts_host.tls import sender_context

from ..processes import free_port

ADDRESS = "127.80.3.1"
NAME = "mta-sts.a.example"
BODY = b"version: STSv1\r\nmode: testing\r\nmx: mx.a.example\r\nmax_age: 86400\r\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
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
def https_server(ca: trustme.CA) -> Iterator[int]:
    port = free_port(ADDRESS)
    server = http.server.ThreadingHTTPServer((ADDRESS, port), _Handler)
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
