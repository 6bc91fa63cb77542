"""
Where ``serve`` listens: its sockets, bound and listening before anything else starts, or one
line saying why it cannot listen there.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import socket
import stat
from collections.abc import Sequence

BACKLOG = 2048
"""uvicorn's own ``backlog``, which it sets again as it starts to serve on the sockets."""


class CannotListen(Exception):
    """``serve`` cannot listen at ``where``, for the reason ``problem``."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(f"cannot listen on {where}: {problem}")
        self.where = where
        self.problem = problem


def address(text: str) -> str:
    """An address to bind or a host name; an IPv6 address may be bracketed, as in a URL."""
    if text.startswith("[") and text.endswith("]") and ":" in text:
        text = text[1:-1]
    elif text.count(":") == 1 or (text.startswith("[") and "]:" in text):
        # Else 0.0.0.0:8080 was looked up as a name: "cannot listen on [0.0.0.0:8080]:8080".
        raise ValueError("expected an address without a port, which --port gives")
    if not text or "[" in text or "]" in text:
        raise ValueError("expected an IP address or a host name, like 0.0.0.0 or ::")
    return text


def where(host: str, port: int) -> str:
    """``host`` and ``port`` as an error or a log line names them: [::1]:8080, 0.0.0.0:8080."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def named(sock: socket.socket) -> str:
    """Where ``sock`` listens, as uvicorn names it: http://[::1]:8080, unix socket PATH."""
    if sock.family == socket.AF_UNIX:
        return f"unix socket {sock.getsockname()}"
    host, port = sock.getsockname()[:2]
    return f"http://{where(host, port)}"


def listening(hosts: Sequence[str], port: int, uds: str | None) -> list[socket.socket]:
    """
    The sockets ``serve`` listens on: the Unix socket ``uds`` if given, else every address
    of each of ``hosts`` on ``port``. They listen at once, so that no other server can take
    one while the file loads (another may bind a port that is bound alone, SO_REUSEADDR on
    both): a connection waits until the server is up, none is refused.

    Raises:
        CannotListen: for the first of them that cannot listen (the port taken, the address
            not this machine's, a name that does not resolve); those before it are closed.
    """
    if uds is not None:
        return [_unix_socket(uds)]
    sockets: list[socket.socket] = []
    try:
        for host in hosts:
            sockets.extend(_sockets(host, port, {s.getsockname()[:2] for s in sockets}))
    except BaseException:
        close(sockets, None)
        raise
    return sockets


def close(sockets: Sequence[socket.socket], uds: str | None) -> None:
    """Close ``sockets``, and remove the Unix socket ``uds``, if it is there, as uvicorn does."""
    for sock in sockets:
        sock.close()
    if uds is not None and sockets:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(uds)


def _sockets(host: str, port: int, bound: set[object]) -> list[socket.socket]:
    """
    A socket for each address of ``host`` not in ``bound``, as the event loop binds them:
    a port whose last connections are in TIME_WAIT is free, and "::" is IPv6 alone.
    """
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except OSError as exc:  # a name that does not resolve
        raise CannotListen(where(host, port), exc.strerror or str(exc)) from None
    except UnicodeError as exc:  # a label IDNA cannot encode: "a..b", or over 63 characters
        raise CannotListen(where(host, port), f"not a host name: {exc.__cause__ or exc}") from None
    sockets: list[socket.socket] = []
    lacking: OSError | None = None  # why a socket could not be made for one of them
    listened = False  # one of them already, for a host given before
    try:
        for family, kind, protocol, _, address in addresses:
            if address[:2] in bound:  # given twice, or a name and its address
                listened = True
                continue
            try:
                sock = socket.socket(family, kind, protocol)
            except OSError as exc:  # a family this kernel lacks (IPv6): skipped, as the event
                lacking = exc  # loop does, unless the host has no other address
                continue
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                sock.bind(address)
                sock.listen(BACKLOG)
            except OSError as exc:
                covered = (
                    _covered(address[0], port, bound) if exc.errno == errno.EADDRINUSE else None
                )
                problem = covered or _bind_problem(exc, address[0])
                raise CannotListen(where(host, port), problem) from None
            bound.add(address[:2])
    except BaseException:
        close(sockets, None)
        raise
    if lacking is not None and not sockets and not listened:
        # "::" on a kernel without IPv6: else the server ran, listening nowhere.
        raise CannotListen(where(host, port), lacking.strerror or str(lacking))
    return sockets


def _covered(address: object, port: int, bound: set[object]) -> str | None:
    """
    Why ``address`` cannot listen beside one given before on ``port``: one of them is
    0.0.0.0 or ``::``, which holds the port on every address of its family. Else it said
    "Address already in use", and sent the operator looking for another server.
    """
    for other in bound:
        if not (isinstance(other, tuple) and other[1] == port):
            continue
        ours, theirs = _ip(address), _ip(other[0])
        if ours.version != theirs.version:
            continue
        if theirs.is_unspecified:
            return f"{theirs}, given too, listens on every address: give one of them"
        if ours.is_unspecified:
            return f"it covers {theirs}, given too: give one of them"
    return None


def _bind_problem(exc: OSError, address: object) -> str:
    mapped = _ip(address)
    if isinstance(mapped, ipaddress.IPv6Address) and mapped.ipv4_mapped is not None:
        # An IPv6 socket alone (IPV6_V6ONLY) cannot bind one: EINVAL, "Invalid argument".
        return f"an IPv4-mapped address: give {mapped.ipv4_mapped}"
    return exc.strerror or str(exc)


def _ip(address: object) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address of a socket address as getaddrinfo gives it, without its zone (%eth0)."""
    return ipaddress.ip_address(str(address).split("%")[0])


def _unix_socket(path: str) -> socket.socket:
    """The Unix socket ``path``, listening, with the mode uvicorn gives it."""
    problem = _unix_socket_problem(path)
    if problem is not None:
        raise CannotListen(path, problem)
    # As uvicorn: a socket left by a server that was killed is replaced and keeps its mode.
    try:
        mode = stat.S_IMODE(os.lstat(path).st_mode)
        os.unlink(path)
    except FileNotFoundError:
        mode = 0o666
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind(path)
    except OSError as exc:  # a missing directory, a path too long
        sock.close()
        raise CannotListen(path, exc.strerror or str(exc)) from None
    try:
        os.chmod(path, mode)
        sock.listen(BACKLOG)
    except BaseException:
        close([sock], path)
        raise
    return sock


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
    if mode is None:
        return None
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(path)
        except ConnectionRefusedError:
            return None  # left by a server that was killed: replaced
        except OSError as exc:
            return exc.strerror or str(exc)
    return "another server is listening there"
