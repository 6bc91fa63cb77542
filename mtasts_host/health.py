"""
The container's health check: ``GET /healthz`` of the server that the ``MTASTS_HOST_*``
variables configure, on its Unix socket or its address and port, never through a proxy::

    python -m mtasts_host.health

Exit status 0 if it answers 200, else 1.
"""

from __future__ import annotations

import http.client
import os
import socket
import sys
from collections.abc import Mapping

from .listen import address
from .options import several

TIMEOUT = 2.0
"""Seconds for the whole check: Docker's own timeout is 3 s."""
_ANY = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}
"""A server listening on every address is asked on loopback."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost", timeout=TIMEOUT)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.socket_path)


def connection(environ: Mapping[str, str]) -> http.client.HTTPConnection:
    """A connection to the server as ``serve`` reads ``environ``: ``MTASTS_HOST_UDS``, else
    ``MTASTS_HOST_HOST`` and ``MTASTS_HOST_PORT``."""
    uds = environ.get("MTASTS_HOST_UDS", "").strip()
    if uds:
        return _UnixConnection(uds)
    # The first of the addresses, read as serve reads them ("0.0.0.0,::", "[::1]").
    given = environ.get("MTASTS_HOST_HOST", "").strip()
    host = several(address)(given)[0] if given else ""
    port = int(environ.get("MTASTS_HOST_PORT", "").strip() or "8080")
    return http.client.HTTPConnection(_ANY.get(host, host), port, timeout=TIMEOUT)


def main() -> int:
    try:
        check = connection(os.environ)
        check.request("GET", "/healthz")
        return 0 if check.getresponse().status == 200 else 1
    except (OSError, ValueError, http.client.HTTPException) as exc:
        print(f"mtasts-host: unhealthy: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
