"""The system's resolver as dnspython configures it, or one line saying why it cannot."""

from __future__ import annotations

import socket
from pathlib import Path

import dns.asyncresolver
import dns.resolver
import pytest

from mtasts_host._resolver import NoSystemResolver, system_resolver


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(
            b"nameserver 127.0.0.1\nsearch a..b\n",
            "/etc/resolv.conf: a 'domain' or 'search' name is not a DNS name "
            "(A DNS label is empty)",
            id="search",
        ),
        pytest.param(
            b"nameserver 127.0.0.1\ndomain " + b"a" * 64 + b"\n",
            "/etc/resolv.conf: a 'domain' or 'search' name is not a DNS name "
            "(A DNS label is > 63 octets long)",
            id="domain",
        ),
        pytest.param(
            b"nameserver dns.example\n",
            "/etc/resolv.conf: nameserver dns.example is not a dns.nameserver.Nameserver "
            "instance or text form, IP address, nor a valid https URL",
            id="nameserver",
        ),
        pytest.param(
            b"nameserver 127.0.0.1\nsearch \xff.example\n",
            "/etc/resolv.conf is not UTF-8 text: invalid start byte at byte 28",
            id="not-utf-8",
        ),
        pytest.param(b"", "no system resolver: /etc/resolv.conf names no nameserver", id="empty"),
        pytest.param(None, "no system resolver: /etc/resolv.conf cannot be opened", id="missing"),
    ],
)
def test_a_resolv_conf_dnspython_cannot_read_is_one_line(
    resolv_conf: Path, content: bytes | None, message: str
) -> None:
    if content is not None:
        resolv_conf.write_bytes(content)
    with pytest.raises(NoSystemResolver) as raised:
        system_resolver(dns.asyncresolver.Resolver)
    assert (str(raised.value), raised.value.in_file) == (message, True)


@pytest.mark.parametrize(
    ("host", "message"),
    [
        pytest.param("a..b", "'a..b' is not a DNS name (A DNS label is empty)", id="empty-label"),
        pytest.param(
            "h" * 64, f"'{'h' * 64}' is not a DNS name (A DNS label is > 63 octets long)", id="long"
        ),
    ],
)
def test_a_host_name_that_is_no_dns_name_is_one_line(
    resolv_conf: Path, monkeypatch: pytest.MonkeyPatch, host: str, message: str
) -> None:
    # dnspython takes the domain of relative names from it, even for a resolver given its
    # server (configure=False): the file is not what to fix.
    resolv_conf.write_text("nameserver 127.0.0.1\n")
    monkeypatch.setattr(socket, "gethostname", lambda: host)
    with pytest.raises(NoSystemResolver) as raised:
        system_resolver(lambda: dns.resolver.Resolver(configure=False))
    assert (str(raised.value), raised.value.in_file) == (
        f"this machine's host name {message}",
        False,
    )


def test_a_readable_resolv_conf_gives_its_resolver(resolv_conf: Path) -> None:
    resolv_conf.write_text("nameserver 192.0.2.53\nsearch example.com\n")
    assert system_resolver(dns.resolver.Resolver).nameservers == ["192.0.2.53"]
