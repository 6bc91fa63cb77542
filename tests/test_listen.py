"""Where ``serve`` listens: its addresses parsed, its sockets bound on this machine's loopback."""

from __future__ import annotations

import errno
import os
import socket
from typing import Any

import pytest

from mtasts_host import listen

from .processes import free_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("0.0.0.0", "0.0.0.0", id="ipv4"),
        pytest.param("::", "::", id="ipv6"),
        pytest.param("[::1]", "::1", id="bracketed-as-in-a-url"),
        pytest.param("localhost", "localhost", id="a-name"),
    ],
)
def test_an_address(text: str, expected: str) -> None:
    assert listen.address(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        pytest.param("[::1", id="unclosed"),
        pytest.param("[localhost]", id="a-name-bracketed"),
        pytest.param("[]", id="empty-brackets"),
    ],
)
def test_not_an_address(text: str) -> None:
    with pytest.raises(ValueError, match=r"^expected an IP address or a host name, like 0\.0\."):
        listen.address(text)


@pytest.mark.parametrize("text", ["0.0.0.0:8080", "localhost:8080", "[::1]:8080"])
def test_an_address_with_a_port_says_where_the_port_goes(text: str) -> None:
    # 0.0.0.0:8080 was looked up as a name: "cannot listen on [0.0.0.0:8080]:8080: Name or
    # service not known", and [::1]:8080 was "expected an IP address or a host name".
    with pytest.raises(ValueError, match=r"^expected an address without a port, which --port"):
        listen.address(text)


def test_an_address_given_twice_is_bound_once() -> None:
    port = free_port()
    sockets = listen.listening(("127.0.0.1", "127.0.0.1"), port, None)
    try:
        assert [sock.getsockname() for sock in sockets] == [("127.0.0.1", port)]
    finally:
        listen.close(sockets, None)


def test_ipv6_any_is_ipv6_alone() -> None:
    # As the event loop binds it: 0.0.0.0 may be given beside it, on the same port.
    port = free_port()
    sockets = listen.listening(("::", "127.0.0.1"), port, None)
    try:
        assert [sock.family for sock in sockets] == [socket.AF_INET6, socket.AF_INET]
        assert sockets[0].getsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY) == 1
    finally:
        listen.close(sockets, None)


def test_an_address_that_cannot_listen_lets_go_of_those_before() -> None:
    port = free_port()
    with socket.socket() as other:
        other.bind(("127.0.0.2", port))
        other.listen()
        with pytest.raises(listen.CannotListen) as caught:
            listen.listening(("127.0.0.1", "127.0.0.2"), port, None)
    assert str(caught.value) == f"cannot listen on 127.0.0.2:{port}: Address already in use"
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))  # free again


@pytest.mark.parametrize(
    ("hosts", "problem"),
    [
        pytest.param(
            ("0.0.0.0", "127.0.0.1"),
            "127.0.0.1:{port}: 0.0.0.0, given too, listens on every address: give one of them",
            id="any-first",
        ),
        pytest.param(
            ("127.0.0.1", "0.0.0.0"),
            "0.0.0.0:{port}: it covers 127.0.0.1, given too: give one of them",
            id="any-after",
        ),
        pytest.param(
            ("::", "::1"),
            "[::1]:{port}: ::, given too, listens on every address: give one of them",
            id="ipv6",
        ),
    ],
)
def test_an_address_beside_the_any_address_of_its_family_says_so(
    hosts: tuple[str, str], problem: str
) -> None:
    # It said "Address already in use", as for a port another server holds.
    port = free_port()
    with pytest.raises(listen.CannotListen) as caught:
        listen.listening(hosts, port, None)
    assert str(caught.value) == f"cannot listen on {problem.format(port=port)}"


def test_an_ipv4_mapped_address_says_which_to_give() -> None:
    # It said "Invalid argument": "::" and every IPv6 address are IPv6 alone (IPV6_V6ONLY).
    port = free_port()
    with pytest.raises(listen.CannotListen) as caught:
        listen.listening(("::ffff:127.0.0.1",), port, None)
    assert str(caught.value) == (
        f"cannot listen on [::ffff:127.0.0.1]:{port}: an IPv4-mapped address: give 127.0.0.1"
    )


def _without_ipv6(family: int = -1, *args: Any, **kwargs: Any) -> socket.socket:
    """``socket.socket`` on a kernel without IPv6 (booted with ipv6.disable=1)."""
    if family == socket.AF_INET6:
        raise OSError(errno.EAFNOSUPPORT, os.strerror(errno.EAFNOSUPPORT))
    return _SOCKET(family, *args, **kwargs)


_SOCKET = socket.socket


def test_ipv6_alone_on_a_kernel_without_ipv6_cannot_listen(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # It listened on nothing: serve ran, no "Uvicorn running on" line, every connection refused.
    monkeypatch.setattr(socket, "socket", _without_ipv6)
    port = free_port()
    with pytest.raises(listen.CannotListen) as caught:
        listen.listening(("127.0.0.1", "::"), port, None)
    assert str(caught.value) == (
        f"cannot listen on [::]:{port}: Address family not supported by protocol"
    )
    with _SOCKET() as again:
        again.bind(("127.0.0.1", port))  # the one before let go


def test_a_name_without_its_ipv6_address_listens_on_the_others(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(socket, "socket", _without_ipv6)
    port = free_port()
    sockets = listen.listening(("localhost",), port, None)
    try:
        assert {sock.family for sock in sockets} == {socket.AF_INET}
    finally:
        listen.close(sockets, None)
