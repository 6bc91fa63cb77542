"""Host names, mx patterns and the Host header."""

from __future__ import annotations

import pytest

from mtasts_host import names


@pytest.mark.parametrize(
    ("host", "domain"),
    [
        ("mta-sts.example.com", "example.com"),
        ("MTA-STS.EXAMPLE.COM", "example.com"),
        ("mta-sts.example.com:8080", "example.com"),
        ("mta-sts.example.com.", "example.com"),
        ("mta-sts.bücher.example", "xn--bcher-kva.example"),
        ("mta-sts.xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("mta-sts.sub.example.com", "sub.example.com"),  # looked up exactly, never its parent
        ("example.com", None),
        ("[::1]:443", None),
        ("mta-sts.example.com:", "example.com"),  # an empty port (RFC 3986 section 3.2.3)
        (" mta-sts.example.com \t", "example.com"),  # blanks around a header value
        # a policy host all the same, serving nothing: never the operational endpoints
        ("mta-sts.example.com:x", ""),
        ("mta-sts.example.com:\u00b2", ""),  # a port is ASCII digits (RFC 3986 section 3.2.3)
        ("mta-sts.example.com:\u0663", ""),
        ("mta-sts.\u2488.example", ""),  # not IDNA-encodable
        ("mta-sts.a\u200db.example", ""),
        ("mta-sts.", ""),  # nothing after the prefix: its dot is no trailing dot to remove
        ("MTA-STS.:443", ""),
        ("mta-sts.: ", ""),
    ],
)
def test_policy_domain_of_host(host: str, domain: str | None) -> None:
    assert names.policy_domain_of_host(host) == domain


@pytest.mark.parametrize(
    ("url", "domain"),
    [
        ("https://mta-sts.example.com/tlsrpt", "example.com"),
        ("HTTPS://MTA-STS.Example.COM.:443/tlsrpt", "example.com"),  # read as a Host header
        ("https://reports:secret@mta-sts.example.com/x", "example.com"),  # not the userinfo
        ("https://mta-sts.example.com?x=1", "example.com"),
        ("https://mta-sts.example.com#x", "example.com"),
        ("https://mta-sts.", ""),
        ("https://tlsrpt.example.com/tlsrpt", None),
        ("https://mta-sts@tlsrpt.example.com/", None),  # the userinfo is no host
        ("https://tlsrpt.example.com/mta-sts.example.com", None),
        ("https://[::1]:443/", None),
        ("mailto:tlsrpt@mta-sts.example.com", None),  # mail, not the policy host's HTTPS
    ],
)
def test_policy_domain_of_url(url: str, domain: str | None) -> None:
    assert names.policy_domain_of_url(url) == domain


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Mail.Example.COM.", "mail.example.com"),
        ("mäil.example.com", "xn--mil-qla.example.com"),
        ("a.b", "a.b"),
        ("1.example", "1.example"),
    ],
)
def test_host_name(text: str, name: str) -> None:
    assert names.host_name(text) == name


def test_invalid_international_name() -> None:
    with pytest.raises(ValueError, match=r"^not a valid international host name \("):
        names.host_name("a\u2488.example")


def test_mx_pattern_keeps_the_wildcard() -> None:
    assert names.mx_pattern("*.MX.example.net.") == "*.mx.example.net"


@pytest.mark.parametrize(
    ("text", "split"),
    [
        ("ns1.example.net:53", ("ns1.example.net", "53")),
        ("ns1.example.net", ("ns1.example.net", None)),
        ("ns1.example.net:", ("ns1.example.net", "")),
        ("[::1]:5353", ("::1", "5353")),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
    ],
)
def test_a_host_and_port_split_as_written(text: str, split: tuple[str, str | None]) -> None:
    assert names.split_host_port(text) == split


@pytest.mark.parametrize("text", ["[::1", "[::1]53", "[::1]x:53"])
def test_brackets_that_do_not_close_before_a_port_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="port after the bracketed address"):
        names.split_host_port(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("_mta-sts.provider.example", "_mta-sts.provider.example"),
        ("_MTA-STS.Provider.Example.", "_mta-sts.provider.example"),
        # a record name is written in the DNS, and so in a zone file, in A-labels
        ("_mta-sts.prövider.example", "_mta-sts.xn--prvider-b1a.example"),
        ("_mta-sts.PRÖVIDER.example", "_mta-sts.xn--prvider-b1a.example"),
    ],
)
def test_dns_name(text: str, name: str) -> None:
    assert names.dns_name(text) == name
