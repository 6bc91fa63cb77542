"""Where ``serve`` listens: whether it can, checked before anything starts, and why not."""

from __future__ import annotations

import os
import socket
import stat


def problem(host: str, port: int, uds: str | None) -> tuple[str, str | None]:
    """
    Where ``serve`` would listen, as an error names it, and why it cannot listen there (the
    Unix socket ``uds`` if given, else ``host`` and ``port``), or None.
    """
    if uds is not None:
        return uds, _unix_socket_problem(uds)
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return where, _address_problem(host, port)


def _address_problem(host: str, port: int) -> str | None:
    """
    Why ``serve`` cannot listen on ``host`` and ``port`` (the port taken, the address not
    this machine's, a name that does not resolve), or None: each address is bound as the
    event loop binds it, then let go.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:  # a name that does not resolve
        return exc.strerror or str(exc)
    except UnicodeError as exc:  # a label IDNA cannot encode: "a..b", or over 63 characters
        return f"not a host name: {exc.__cause__ or exc}"
    for family, kind, protocol, _, address in addresses:
        try:
            probe = socket.socket(family, kind, protocol)
        except OSError:  # a family this kernel lacks (IPv6): skipped, as the event loop does
            continue
        with probe:
            # As the event loop: a port whose last connections are in TIME_WAIT is free, and
            # "::" is IPv6 alone.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                probe.bind(address)
            except OSError as exc:
                return exc.strerror or str(exc)
    return None


def _unix_socket_problem(path: str) -> str | None:
    """
    Why ``serve`` must not listen on the Unix socket ``path``, or None. uvicorn checks
    nothing: it replaces a socket another server listens on, and where it cannot bind (a
    missing directory, a path too long, a file in the way) it ends with two tracebacks that
    do not name the path, and deletes whatever file is there.
    """
    try:
        mode: int | None = os.lstat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as exc:
        return exc.strerror or str(exc)
    if mode is not None and not stat.S_ISSOCK(mode):
        return "a file that is not a socket is there"
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            if mode is None:
                probe.bind(path)
                os.unlink(path)
                return None
            probe.connect(path)
        except ConnectionRefusedError:
            return None  # left by a server that was killed: uvicorn replaces it
        except OSError as exc:
            return exc.strerror or str(exc)
    return "another server is listening there"
