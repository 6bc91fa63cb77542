"""The chain a server sends beyond its own certificate, as the TLS probes see it: against
real TLS servers, with a root, an intermediate and a certificate of the test's own."""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from pathlib import Path

import pytest
import trustme
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from mtasts_host.doctor.facts import Failure, Fetch, Session
from mtasts_host.doctor.findings import Status
from mtasts_host.doctor.smtpprobe import starttls
from mtasts_host.doctor.tlschecks import judge
from mtasts_host.doctor.tlsprobe import fetch_policy
from mtasts_host.tls import sender_context

from ..processes import free_port
from .servers import Handler, chained, server_context, serving_on, smtp

ADDRESS = "127.60.3.3"
HOST = "mta-sts.chain.test"
MX = "mx.chain.test"
DATE = r"\d{4}-\d\d-\d\d \d\d:\d\d UTC"


async def _not_found(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await reader.readuntil(b"\r\n\r\n")
    writer.write(b"HTTP/1.1 404 Not Found\r\n\r\n")
    await writer.drain()


def fetch_chained(
    tmp: Path, server: ssl.SSLContext | None, handler: Handler = _not_found
) -> Session:
    """The policy fetched from ``handler``, served with TLS by ``server`` (None: the handler
    starts TLS itself), as the doctor fetches it, trusting the root of ``tmp``."""

    async def main() -> Fetch:
        async with serving_on(ADDRESS, handler, server) as port:
            client = sender_context(str(tmp / "ca.pem"))
            return await fetch_policy(ADDRESS, HOST, port, client, 2.0)

    return asyncio.run(main()).session


def starttls_chained(tmp: Path, server: ssl.SSLContext) -> Session:
    port = free_port(ADDRESS)
    with smtp(ADDRESS, port, server):
        client = sender_context(str(tmp / "ca.pem"))
        return asyncio.run(starttls(ADDRESS, MX, port, client, 2.0, "doctor.test"))


def _warned_of_the_intermediate(session: Session) -> None:
    """The session names the intermediate the server sends, and the doctor warns of it."""
    assert session.failure is None, session.detail
    (middle,) = session.chain
    assert middle.subject == "CN=middle"
    assert 4 * 86400 < middle.not_after - time.time() <= 5 * 86400
    problem = judge(session, time.time())
    assert problem is not None
    status, message = problem
    assert status is Status.WARN
    # The server's own certificate has 60 days left: only the intermediate is named.
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(middle.not_after))
    assert message.endswith(
        f"({ADDRESS}): the intermediate certificate 'CN=middle' that it sends expires {date}, "
        "in 5 days: serve the CA's current intermediate in its place"
    )


def test_an_intermediate_expiring_soon_is_named_by_https(tmp_path: Path) -> None:
    _warned_of_the_intermediate(fetch_chained(tmp_path, chained(tmp_path, HOST, intermediate=5)))


def test_a_root_sent_and_expiring_soon_is_named_as_a_root(tmp_path: Path) -> None:
    server = chained(tmp_path, HOST, intermediate=30, root_days=5, send_root=True)
    session = fetch_chained(tmp_path, server)
    assert [(ca.subject, ca.root) for ca in session.chain] == [
        ("CN=middle", False),
        ("CN=root", True),
    ]
    problem = judge(session, time.time())
    assert problem is not None
    assert "the root certificate 'CN=root' that it sends expires " in problem[1]
    assert problem[1].endswith("in 5 days: serve the CA's current chain in its place")


def test_a_root_not_sent_is_the_doctors_own_not_the_servers(tmp_path: Path) -> None:
    # Only the trust store of the doctor holds it: each sender has its own.
    session = fetch_chained(tmp_path, chained(tmp_path, HOST, intermediate=30, root_days=5))
    assert [ca.subject for ca in session.chain] == ["CN=middle"]
    assert judge(session, time.time()) is None


def test_an_intermediate_expiring_soon_is_named_by_starttls(tmp_path: Path) -> None:
    _warned_of_the_intermediate(starttls_chained(tmp_path, chained(tmp_path, MX, intermediate=5)))


def test_the_trust_anchor_is_not_in_the_chain(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    # trustme's certificates are signed by the root itself: nothing but the root above them,
    # which comes from the doctor's own trust store, not from the server.
    async def main() -> Fetch:
        async with serving_on(ADDRESS, _not_found, server_context(ca.issue_cert(HOST))) as port:
            return await fetch_policy(ADDRESS, HOST, port, trusting, 2.0)

    session = asyncio.run(main()).session
    assert session.failure is None
    assert session.chain == ()


@pytest.mark.parametrize(
    ("intermediate", "leaf", "detail"),
    [
        pytest.param(
            -1,
            60,
            f"the intermediate certificate 'CN=middle' that it sends expired {DATE}",
            id="intermediate",
        ),
        pytest.param(60, -1, f"the certificate expired {DATE}", id="leaf"),
        pytest.param(
            -2,
            -1,
            f"the certificate expired {DATE}; the intermediate certificate 'CN=middle' that it "
            f"sends expired {DATE}",
            id="both",
        ),
    ],
)
def test_an_expired_certificate_is_named(
    intermediate: float, leaf: float, detail: str, tmp_path: Path
) -> None:
    # OpenSSL says only that a certificate of the chain has expired; a second connection,
    # which verifies nothing, sees which.
    server = chained(tmp_path, HOST, intermediate, leaf)
    session = fetch_chained(tmp_path, server)
    assert session.failure is Failure.EXPIRED
    assert re.fullmatch(detail, session.detail), session.detail
    mx = chained(tmp_path, MX, intermediate, leaf)
    session = starttls_chained(tmp_path, mx)
    assert session.failure is Failure.EXPIRED
    assert re.fullmatch(detail, session.detail), session.detail


def test_without_a_second_look_the_chain_is_blamed_as_a_whole(tmp_path: Path) -> None:
    server = chained(tmp_path, HOST, intermediate=-1)
    connections = 0

    async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # TLS for the first connection only: the second, which would look, is closed at once.
        nonlocal connections
        connections += 1
        if connections == 1:
            await writer.start_tls(server)
            await reader.read()

    session = fetch_chained(tmp_path, None, once)
    assert connections == 2
    assert session.failure is Failure.EXPIRED
    assert (
        session.detail == "a certificate of the chain (the server's or an intermediate) has expired"
    )


def test_a_chain_that_senders_accept_is_accepted_on_every_python(tmp_path: Path) -> None:
    # Without key identifiers or key usage: OpenSSL's default verification, as Postfix and
    # Exim use it, accepts them; Python 3.13's default context (VERIFY_X509_STRICT) does not.
    server = chained(tmp_path, HOST, intermediate=30, strict=False)
    session = fetch_chained(tmp_path, server)
    assert session.failure is None, session.detail
    mx = chained(tmp_path, MX, intermediate=30, strict=False)
    session = starttls_chained(tmp_path, mx)
    assert session.failure is None, session.detail


def test_a_trusted_intermediate_is_no_trust_anchor_on_any_python(tmp_path: Path) -> None:
    # Senders' OpenSSL needs a chain up to a root; Python 3.13's default context
    # (VERIFY_X509_PARTIAL_CHAIN) would stop at any certificate it trusts.
    server = chained(tmp_path, HOST, intermediate=30)
    _, middle = x509.load_pem_x509_certificates((tmp_path / "chain.pem").read_bytes())
    (tmp_path / "ca.pem").write_bytes(middle.public_bytes(serialization.Encoding.PEM))
    session = fetch_chained(tmp_path, server)
    assert session.failure is Failure.UNTRUSTED
    assert session.detail == (
        "the certificate does not chain to a trusted root (unable to get issuer certificate)"
    )
