"""
The SMTP probe and the mx-tls check against Postfix, a real MTA, set up as MX hosts are: with
STARTTLS, without, refusing a bare EHLO name, refusing the client. Each test also checks the
dialogue as Postfix logged it: what it answered, and that the doctor said QUIT.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Iterator

import pytest
import trustme

from mtasts_host.doctor import tlschecks
from mtasts_host.doctor.facts import Failure, Names, Session
from mtasts_host.doctor.findings import Finding, Status
from mtasts_host.doctor.smtpprobe import starttls
from mtasts_host.policy import Mode

from ..postfix import Listener, Postfix, postfix
from ..processes import free_port

pytestmark = pytest.mark.system

MX = "mx.postfix.test"
TLS = "127.62.25.1"
PLAIN = "127.62.25.2"
"""smtpd_tls_security_level = none: no STARTTLS in the EHLO reply."""
STRICT_HELO = "127.62.25.3"
"""Refuses an EHLO name that is not a valid, fully qualified one: at EHLO, not at RCPT."""
REJECT = "127.62.25.4"
"""Refuses every client: at connect, not at RCPT."""
UNKNOWN_HELO = "127.62.25.5"
"""Refuses, for now, an EHLO name that DNS does not know: at EHLO, not at RCPT."""
NO_REVERSE = "127.62.25.6"
"""Refuses, for now, a client whose address has no name, at EHLO (smtpd_peername_lookup is
off: no client has one)."""
REJECT_AT_HELO = "127.62.25.7"
"""Refuses the client at EHLO, for good: a client check among the HELO restrictions."""

SETTINGS = {
    TLS: {},
    PLAIN: {"smtpd_tls_security_level": "none"},
    STRICT_HELO: {
        "smtpd_delay_reject": "no",
        "smtpd_helo_required": "yes",
        "smtpd_helo_restrictions": "reject_invalid_helo_hostname reject_non_fqdn_helo_hostname",
    },
    REJECT: {"smtpd_delay_reject": "no", "smtpd_client_restrictions": "reject"},
    UNKNOWN_HELO: {
        "smtpd_delay_reject": "no",
        "smtpd_helo_restrictions": "reject_unknown_helo_hostname",
    },
    NO_REVERSE: {
        "smtpd_delay_reject": "no",
        "smtpd_helo_restrictions": "reject_unknown_reverse_client_hostname",
    },
    REJECT_AT_HELO: {
        "smtpd_delay_reject": "no",
        "smtpd_helo_restrictions": "check_client_access inline:{127.0.0.1=REJECT}",
    },
}


@pytest.fixture(scope="module")
def server(ca: trustme.CA) -> Iterator[Postfix]:
    """One Postfix, a listener for each of SETTINGS."""
    listeners = [Listener(at, free_port(at), settings) for at, settings in SETTINGS.items()]
    with postfix(MX, ca.issue_cert(MX), listeners) as running:
        yield running


def probe(
    server: Postfix, address: str, context: ssl.SSLContext, helo: str | None = None
) -> tuple[Session, Finding, list[str]]:
    """The probe's session with the listener on ``address``, the mx-tls finding made of it,
    and the dialogue as Postfix logged it."""
    before = server.finished()
    session = asyncio.run(starttls(address, MX, server.port(address), context, 5.0, helo))
    addresses = {MX: Names((address,))}
    finding = tlschecks.mx_tls(
        "postfix.test", Mode.ENFORCE, [MX], addresses, [session], time.time()
    )
    return session, finding, server.dialogue(before + 1)


def client(dialogue: list[str]) -> list[str]:
    """What the doctor said."""
    return [line[3:] for line in dialogue if line.startswith("C: ")]


def test_starttls_with_a_valid_certificate(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, TLS, trusting)
    assert session.failure is None
    assert session.version in ("TLSv1.2", "TLSv1.3")
    assert finding.status is Status.OK
    assert finding.message.startswith(f"STARTTLS on 1 address of {MX}, certificate valid until ")
    assert dialogue[:2] == ["S: 220 mx.postfix.test ESMTP Postfix", "C: EHLO [127.0.0.1]"]
    assert "S: 250-STARTTLS" in dialogue
    at = dialogue.index("C: STARTTLS")
    assert dialogue[at + 1] == "S: 220 2.0.0 Ready to start TLS"
    # Postfix counts the STARTTLS as done (1, not 0/1) once the handshake has completed.
    assert " ehlo=1 starttls=1 " in dialogue[-1]


def test_no_starttls_offered(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, PLAIN, trusting)
    assert session.failure is Failure.NO_STARTTLS
    assert (finding.status, finding.message) == (
        Status.FAIL,
        f"{MX} ({PLAIN}): does not offer STARTTLS; offer STARTTLS with a certificate for the "
        "MX name",
    )
    assert dialogue[0] == "S: 220 mx.postfix.test ESMTP Postfix"
    assert not [line for line in dialogue if "STARTTLS" in line]
    assert client(dialogue) == ["EHLO [127.0.0.1]", "QUIT"]
    assert dialogue[-2:] == [
        "S: 221 2.0.0 Bye",
        "disconnect from unknown[127.0.0.1] ehlo=1 quit=1 commands=2",
    ]


def test_a_bare_ehlo_name_refused(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, STRICT_HELO, trusting, helo="vm")
    assert session.failure is Failure.EHLO
    refusal = "504 5.5.2 <vm>: Helo command rejected: need fully-qualified hostname"
    assert (finding.status, finding.message) == (
        Status.FAIL,
        f"{MX} ({STRICT_HELO}): answers EHLO vm with {refusal}; the doctor's EHLO name may be "
        "the cause: give it one the server accepts (--ehlo NAME)",
    )
    assert dialogue == [
        "S: 220 mx.postfix.test ESMTP Postfix",
        "C: EHLO vm",
        f"S: {refusal}",
        "C: QUIT",
        "S: 221 2.0.0 Bye",
        "disconnect from unknown[127.0.0.1] ehlo=0/1 quit=1 commands=1/2",
    ]


def test_an_unknown_ehlo_name_refused_for_now(server: Postfix, trusting: ssl.SSLContext) -> None:
    # .invalid never resolves (RFC 2606); with no DNS at all, Postfix answers the same 450.
    session, finding, dialogue = probe(server, UNKNOWN_HELO, trusting, helo="doctor.invalid")
    refusal = "450 4.7.1 <doctor.invalid>: Helo command rejected: Host not found"
    assert dialogue[:3] == [
        "S: 220 mx.postfix.test ESMTP Postfix",
        "C: EHLO doctor.invalid",
        f"S: {refusal}",
    ]
    assert client(dialogue) == ["EHLO doctor.invalid", "QUIT"]
    # Not a greylist's "try later": the name is the cause, and will be tomorrow.
    assert session.failure is Failure.EHLO
    assert (finding.status, finding.message) == (
        Status.FAIL,
        f"{MX} ({UNKNOWN_HELO}): answers EHLO doctor.invalid with {refusal}; the doctor's EHLO "
        "name may be the cause: give it one the server accepts (--ehlo NAME)",
    )


def test_a_client_refused_for_now_at_ehlo(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, NO_REVERSE, trusting)
    refusal = "450 4.7.1 Client host rejected: cannot find your reverse hostname, [127.0.0.1]"
    assert dialogue[:3] == [
        "S: 220 mx.postfix.test ESMTP Postfix",
        "C: EHLO [127.0.0.1]",
        f"S: {refusal}",
    ]
    assert client(dialogue) == ["EHLO [127.0.0.1]", "QUIT"]
    # The address in the reply is the client's, not a complaint about the EHLO name.
    assert session.failure is Failure.REFUSED
    assert session.detail == f"refuses the session for now: {refusal}"
    assert finding.status is Status.WARN


def test_a_client_refused_at_ehlo(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, REJECT_AT_HELO, trusting, "doctor.example.com")
    refusal = "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
    assert dialogue[:3] == [
        "S: 220 mx.postfix.test ESMTP Postfix",
        "C: EHLO doctor.example.com",
        f"S: {refusal}",
    ]
    assert client(dialogue) == ["EHLO doctor.example.com", "QUIT"]
    # The client's address is refused, whatever its EHLO name: as a blocklist at connect, a
    # warning, and no "give it one the server accepts (--ehlo NAME)".
    assert session.failure is Failure.REFUSED
    assert (finding.status, finding.message) == (
        Status.WARN,
        f"{MX} ({REJECT_AT_HELO}): refuses the session: {refusal} (the doctor's address may be "
        "blocklisted there); the doctor could not check STARTTLS there: run it from another "
        "address, and if other senders are refused too, see the MX's log",
    )


@pytest.mark.parametrize(
    "helo",
    [
        pytest.param(None, id="default-address-literal"),  # [127.0.0.1]: valid, not looked up
        pytest.param("doctor.example.com", id="fully-qualified"),
    ],
)
def test_ehlo_names_accepted(server: Postfix, trusting: ssl.SSLContext, helo: str | None) -> None:
    session, finding, dialogue = probe(server, STRICT_HELO, trusting, helo)
    assert session.failure is None
    assert finding.status is Status.OK
    name = helo or "[127.0.0.1]"
    assert client(dialogue)[:2] == [f"EHLO {name}", "STARTTLS"]
    assert dialogue[dialogue.index(f"C: EHLO {name}") + 1] == "S: 250-mx.postfix.test"


def test_client_refused_at_connect(server: Postfix, trusting: ssl.SSLContext) -> None:
    session, finding, dialogue = probe(server, REJECT, trusting)
    assert session.failure is Failure.REFUSED
    # smtpd_delay_reject = no: the refusal is the greeting itself (RFC 5321 section 3.1),
    # after which Postfix answers anything but QUIT with 503.
    refusal = "554 5.7.1 <unknown[127.0.0.1]>: Client host rejected: Access denied"
    assert (finding.status, finding.message) == (
        Status.WARN,
        f"{MX} ({REJECT}): refuses the session: {refusal} (the doctor's address may be "
        "blocklisted there); the doctor could not check STARTTLS there: run it from another "
        "address, and if other senders are refused too, see the MX's log",
    )
    assert dialogue == [
        f"S: {refusal}",
        "C: QUIT",
        "S: 221 2.0.0 Bye",
        "disconnect from unknown[127.0.0.1] quit=1 commands=1",
    ]
