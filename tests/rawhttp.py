"""HTTP/1.1 on a plain socket: bytes sent as they are, responses read as they come."""

from __future__ import annotations

import contextlib
import http.client
import socket

POLICY_PATH = "/.well-known/mta-sts.txt"


def raw_request(port: int, request: bytes, host: str = "127.0.0.1", timeout: float = 5) -> bytes:
    """Send bytes as they are and read until the server closes the connection."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """Read one whole HTTP/1.1 response with a Content-Length from a connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def http_get(
    port: int,
    host: str = "mta-sts.example.com",
    path: str = POLICY_PATH,
    address: str = "127.0.0.1",
) -> tuple[int, bytes]:
    """Fetch ``path`` (the policy's) from address:port with this Host; status and body."""
    connection = http.client.HTTPConnection(address, port, timeout=10)
    try:
        connection.request("GET", path, headers={"Host": host})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def serves(port: int, body: bytes, host: str = "mta-sts.example.com") -> bool:
    """Whether the server on port answers this host's policy request with 200 and body."""
    return http_get(port, host) == (200, body)
