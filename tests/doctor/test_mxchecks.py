"""The rule for the MX records, on observed answers: ``mx-coverage``."""

from __future__ import annotations

import pytest

from mtasts_host.doctor.facts import Names
from mtasts_host.doctor.findings import Check, Finding, Status
from mtasts_host.doctor.mxchecks import NULL_MX, matches, mx_coverage, mx_hosts
from mtasts_host.policy import Mode

D = "example.com"


@pytest.mark.parametrize(
    ("pattern", "host", "expected"),
    [
        pytest.param("mail.example.com", "mail.example.com", True, id="exact"),
        pytest.param("mail.example.com", "MAIL.Example.COM.", True, id="case-and-dot"),
        pytest.param("*.example.com", "mx1.example.com", True, id="wildcard"),
        pytest.param("*.example.com", "example.com", False, id="wildcard-not-parent"),
        pytest.param("*.example.com", "a.b.example.com", False, id="wildcard-one-label"),
        pytest.param("*.example.com", ".example.com", False, id="wildcard-empty-label"),
        pytest.param("mail.example.com", "mail.example.net", False, id="other"),
    ],
)
def test_matches(pattern: str, host: str, expected: bool) -> None:
    assert matches(pattern, host) is expected


def test_mx_hosts_are_the_domain_itself_without_mx_records() -> None:
    assert mx_hosts(D, Names()) == (D,)
    assert mx_hosts(D, Names((NULL_MX,))) == ()
    assert mx_hosts(D, Names(error="timeout")) == ()


PATTERNS = ("mail.example.com", "*.mx.example.net")


@pytest.mark.parametrize(
    ("mode", "mx", "status", "message"),
    [
        pytest.param(
            Mode.ENFORCE,
            Names(("mail.example.com", "eu.mx.example.net")),
            Status.OK,
            "every MX (mail.example.com, eu.mx.example.net) matches the policy, every pattern "
            "an MX",
            id="covered",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("mail.example.com", "eu.mx.example.net", "backup.example.org")),
            Status.FAIL,
            "MX backup.example.org matches no mx pattern: senders in enforce mode refuse to "
            "deliver to it; add it to the policy's mx list",
            id="uncovered-enforce",
        ),
        pytest.param(
            Mode.TESTING,
            Names(("mail.example.com", "a.eu.mx.example.net")),
            Status.WARN,
            "MX a.eu.mx.example.net matches no mx pattern: senders will refuse it once the mode "
            "is enforce; add it to the policy's mx list; mx *.mx.example.net matches no MX of "
            "example.com (mail.example.com, a.eu.mx.example.net): remove it unless an MX is "
            "about to use it",
            id="uncovered-testing-and-unused",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("mail.example.com",)),
            Status.WARN,
            "mx *.mx.example.net matches no MX of example.com (mail.example.com): remove it "
            "unless an MX is about to use it",
            id="unused",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(),
            Status.FAIL,
            "example.com has no MX records, so senders deliver to example.com itself (RFC 5321 "
            "section 5.1), which matches no mx pattern: senders in enforce mode refuse to "
            "deliver to it; publish its MX records, or add example.com to the policy's mx list "
            "if it receives its own mail",
            id="implicit-mx",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(("mail.example.com", "eu.mx.example.net", "192.0.2.1", "backup.example.org")),
            Status.FAIL,
            "MX backup.example.org matches no mx pattern: senders in enforce mode refuse to "
            "deliver to it; add it to the policy's mx list; MX 192.0.2.1 is an IP address, "
            "which no mx pattern matches: senders in enforce mode refuse to deliver to it, and "
            "most senders find no address for it: an MX names a host (RFC 1035 section 3.3.9), "
            "not an address; point the MX record at a host name with that address, and add that "
            "name to the policy's mx list",
            id="an-address-as-mx",  # never advise adding it to mx, which takes no address
        ),
        pytest.param(
            Mode.ENFORCE,
            Names((NULL_MX,)),
            Status.WARN,
            "example.com has a null MX (RFC 7505) and receives no mail: set mode none",
            id="null-mx",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names((NULL_MX, "mail.example.com", "eu.mx.example.net")),
            Status.WARN,
            "example.com has a null MX (RFC 7505) beside MX mail.example.com, eu.mx.example.net: "
            "RFC 7505 section 3 forbids that, and some senders then take the domain to receive "
            "no mail; remove the null MX (MX 0 .)",
            id="null-mx-beside-others",
        ),
        pytest.param(
            Mode.TESTING,
            Names(error="no answer within 10 s"),
            Status.WARN,
            "could not look up the MX records of example.com: no answer within 10 s",
            id="lookup-failed-testing",
        ),
        pytest.param(
            Mode.ENFORCE,
            Names(error="no answer within 10 s"),
            Status.FAIL,
            "could not look up the MX records of example.com: no answer within 10 s",
            id="lookup-failed-enforce",
        ),
    ],
)
def test_mx_coverage(mode: Mode, mx: Names, status: Status, message: str) -> None:
    finding = mx_coverage(D, mode, PATTERNS, mx)
    assert finding == Finding(D, Check.MX_COVERAGE, status, message)
