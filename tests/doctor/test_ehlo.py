"""The name the doctor gives in EHLO: as ``--ehlo`` takes it, and the default."""

from __future__ import annotations

import socket

import pytest

from mtasts_host.doctor import ehlo


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Doctor.Example.COM.", "doctor.example.com"),
        ("[192.0.2.1]", "[192.0.2.1]"),
        ("[IPv6:2001:DB8::1]", "[IPv6:2001:db8::1]"),
        ("[ipv6:2001:db8:0::1]", "[IPv6:2001:db8::1]"),
    ],
)
def test_names_taken(text: str, name: str) -> None:
    assert ehlo.ehlo_name(text) == name


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("vm", "a fully qualified host name", id="bare-name"),
        pytest.param("doctor.example.com\r\nRSET", "a fully qualified host name", id="crlf"),
        pytest.param("192.0.2.1", "a fully qualified host name", id="address-without-brackets"),
        pytest.param("[2001:db8::1]", "an address literal", id="ipv6-without-tag"),
        pytest.param("[IPv6:192.0.2.1]", "an address literal", id="ipv4-with-ipv6-tag"),
        pytest.param("[doctor.example.com]", "an address literal", id="name-in-brackets"),
    ],
)
def test_names_refused(text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"^expected {expected} like "):
        ehlo.ehlo_name(text)


@pytest.mark.parametrize(
    ("fqdn", "name"),
    [
        pytest.param("doctor.example.com", "doctor.example.com", id="fqdn"),
        pytest.param("3f2a9c1d7b4e", None, id="container-id"),
        pytest.param("localhost", None, id="localhost"),
        pytest.param("localhost.localdomain", None, id="loopback-line-of-etc-hosts"),
        pytest.param("vm.localdomain", None, id="localdomain"),
        pytest.param("127.0.0.1", None, id="address"),
    ],
)
def test_machine_name(fqdn: str, name: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "getfqdn", lambda: fqdn)
    assert ehlo.machine_name() == name


@pytest.mark.parametrize(
    ("address", "literal"),
    [
        ("192.0.2.1", "[192.0.2.1]"),
        ("2001:db8::1", "[IPv6:2001:db8::1]"),
        ("fe80::1%eth0", "[IPv6:fe80::1]"),  # the zone means nothing to the server
    ],
)
def test_address_literal(address: str, literal: str) -> None:
    assert ehlo.address_literal(address) == literal
