"""The TLS probes against small servers of the test's own, on the same event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import ssl
import sys
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from pathlib import Path

import pytest
import trustme

from mtasts_host.doctor import DoctorError, DoctorOptions
from mtasts_host.doctor.facts import Answer, Failure, Fetch, Session
from mtasts_host.doctor.options import validate
from mtasts_host.doctor.smtpprobe import starttls
from mtasts_host.doctor.tlsprobe import fetch_policy
from mtasts_host.tls import sender_context as tls_context

from ..processes import free_port, running
from .conftest import cyclic_garbage
from .servers import Handler, server_context, serving_on, smtp_dialogue

ADDRESS = "127.60.3.1"
HOST = "mta-sts.probe.test"
MX = "mx.probe.test"


def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncContextManager[int]:
    return serving_on(ADDRESS, handler, context)


def answering(response: bytes) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(response)
        await writer.drain()

    return handler


def fetch(handler: Handler, ca: trustme.CA, context: ssl.SSLContext, name: str = HOST) -> Fetch:
    async def main() -> Fetch:
        async with serving(handler, server_context(ca.issue_cert(name))) as port:
            return await fetch_policy(ADDRESS, HOST, port, context, 2.0)

    return asyncio.run(main())


BODY = b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"


@pytest.mark.parametrize(
    ("response", "answer"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n\r\n" + BODY,
            Answer(200, "text/plain", None, BODY),
            id="content-length",
        ),
        pytest.param(
            b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n" + BODY,
            Answer(200, "text/plain", None, BODY),
            id="until-closed",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nversi\r\n"
            b"27\r\non: STSv1\r\nmode: none\r\nmax_age: 86400\r\n\r\n0\r\n\r\n",
            Answer(200, None, None, BODY),
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 70000\r\n\r\n",
            Answer(200, too_large=True),
            id="too-large-by-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * 70000,
            Answer(200, body=b"x" * 65536, too_large=True),
            id="too-large-until-closed",
        ),
        pytest.param(
            b"HTTP/1.1 308 Permanent Redirect\r\nLocation: https://x.test/\r\n\r\n",
            Answer(308, None, "https://x.test/"),
            id="redirect",
        ),
    ],
)
def test_answers(response: bytes, answer: Answer, ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    result = fetch(answering(response), ca, trusting)
    assert result.error is None
    assert result.answer == answer
    assert result.session.version in ("TLSv1.2", "TLSv1.3")


def test_not_http(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    result = fetch(answering(b"SSH-2.0-OpenSSH_9.2\r\n\r\n"), ca, trusting)
    assert result.answer is None
    assert result.error == "the HTTP answer is broken (not HTTP: 'SSH-2.0-OpenSSH_9.2')"


def test_untrusted_certificate(ca: trustme.CA) -> None:
    result = fetch(answering(b""), ca, tls_context())
    assert result.session.failure is Failure.UNTRUSTED
    assert result.session.detail == (
        "the certificate does not chain to a trusted root (unable to get local issuer certificate)"
    )


def test_refused() -> None:
    port = free_port(ADDRESS)
    result = asyncio.run(fetch_policy(ADDRESS, HOST, port, tls_context(), 2.0))
    assert result == Fetch(
        Session(
            HOST, ADDRESS, failure=Failure.UNREACHABLE, detail=f"connection refused on port {port}"
        )
    )


@pytest.mark.parametrize(
    ("replies", "failure", "detail"),
    [
        pytest.param(
            (b"554 5.3.2 go away\r\n",),
            Failure.REFUSED,
            "refuses the session: 554 5.3.2 go away (the doctor's address may be blocklisted "
            "there)",
            id="554",
        ),
        pytest.param((b"250 mx\r\n",), Failure.PROTOCOL, "greets with 250 mx", id="not-a-greeting"),
        pytest.param(
            (b"220 mx\r\n", b"250-mx\r\n250-STARTTLS\r\n250 8BITMIME\r\n", b"454 4.7.0 no TLS\r\n"),
            Failure.NO_STARTTLS,
            "answers STARTTLS with 454 4.7.0 no TLS",
            id="starttls-refused",
        ),
        pytest.param(
            (b"220 mx\r\n", b"502 what\r\n"),
            Failure.PROTOCOL,
            "answers EHLO with 502 what",
            id="no-ehlo",
        ),
        pytest.param(
            (b"HTTP/1.1 400 Bad Request\r\n",),
            Failure.PROTOCOL,
            "the server's answers make no sense (not SMTP: 'HTTP/1.1 400 Bad Request')",
            id="not-smtp",
        ),
    ],
)
def test_smtp_dialogues(replies: tuple[bytes, ...], failure: Failure, detail: str) -> None:
    async def main() -> Session:
        async with serving(smtp_dialogue(*replies)) as port:
            return await starttls(ADDRESS, MX, port, tls_context(), 2.0, "doctor.test")

    assert asyncio.run(main()) == Session(MX, ADDRESS, failure=failure, detail=detail)


def test_an_unreadable_ca_file_is_an_option_error(tmp_path: Path) -> None:
    path = tmp_path / "missing.pem"
    # The reason alone, not "[Errno 2] No such file or directory".
    with pytest.raises(DoctorError, match=f"^--ca-file {re.escape(str(path))}: No such file or "):
        validate(DoctorOptions(ca_file=str(path)))


def test_a_ca_file_without_a_certificate_is_an_option_error(tmp_path: Path) -> None:
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    message = f"--ca-file {path}: expected PEM certificates (NO_CERTIFICATE_OR_CRL_FOUND)"
    with pytest.raises(DoctorError) as raised:
        validate(DoctorOptions(ca_file=str(path)))
    assert str(raised.value) == message


@pytest.mark.timeout(5)
@pytest.mark.parametrize(
    ("name", "what"), [("fifo.pem", "not a regular file"), ("", "a directory")], ids=["fifo", "dir"]
)
def test_a_ca_file_that_is_no_file_is_an_option_error(tmp_path: Path, name: str, what: str) -> None:
    # OpenSSL opened a FIFO without a writer and waited for one: the doctor hung, silent.
    path = tmp_path / name
    if name:
        os.mkfifo(path)
    with pytest.raises(DoctorError) as raised:
        validate(DoctorOptions(ca_file=str(path)))
    assert str(raised.value) == f"--ca-file {path}: {what}; expected a file of PEM certificates"


def test_an_ehlo_name_that_is_none_is_an_option_error() -> None:
    # DoctorOptions also come from code embedding the doctor: no line breaks into the dialogue.
    with pytest.raises(
        DoctorError, match=r"^--ehlo: expected a fully qualified host name .*, got 'a\\r\\nRSET'$"
    ):
        validate(DoctorOptions(helo="a\r\nRSET"))


@pytest.fixture(scope="module")
def aiosmtpd(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """
    aiosmtpd in processes of their own, so that the garbage counted is the probes' alone:
    one speaking TLS from the first byte (``tls``), one offering STARTTLS (``starttls``).
    """
    tmp = tmp_path_factory.mktemp("aiosmtpd")
    certificate = ca.issue_cert(MX)
    certificate.cert_chain_pems[0].write_to_path(str(tmp / "cert.pem"))
    certificate.private_key_pem.write_to_path(str(tmp / "key.pem"))
    ports = {"tls": free_port(ADDRESS), "starttls": free_port(ADDRESS)}
    options = {"tls": "--smtps", "starttls": "--tls"}
    with contextlib.ExitStack() as stack:
        for name, port in ports.items():
            argv = [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"{ADDRESS}:{port}"]
            argv += [f"{options[name]}cert", str(tmp / "cert.pem")]
            argv += [f"{options[name]}key", str(tmp / "key.pem")]
            stack.enter_context(running(argv, tmp / f"{name}.log", ADDRESS, port))
        yield ports


# The exception that ends a connection stays in its streams, and the frames of its traceback
# held the streams: about 45 objects in cycles a connection, the TLS objects among them.
# asyncio's selector transport refers to itself (its _read_ready_cb, a bound method of its
# own): 7 objects a connection that are not the probes' to untangle. A certificate that
# fails verification is looked at again, on a second connection (chain.unverified).
_CONNECTIONS = 20
_CYCLIC_PER_CONNECTION = 2 * 10


def test_a_failed_tls_handshake_leaves_no_reference_cycles(aiosmtpd: dict[str, int]) -> None:
    async def fetches() -> list[Fetch]:
        port = aiosmtpd["tls"]
        probes = (fetch_policy(ADDRESS, MX, port, tls_context(), 2.0) for _ in range(_CONNECTIONS))
        return await asyncio.gather(*probes)

    fetched: list[list[Fetch]] = []
    garbage = cyclic_garbage(lambda: fetched.append(asyncio.run(fetches())))
    assert garbage <= _CONNECTIONS * _CYCLIC_PER_CONNECTION
    assert {fetch.session.failure for fetch in fetched[0]} == {Failure.UNTRUSTED}


def test_a_failed_starttls_handshake_leaves_no_reference_cycles(
    aiosmtpd: dict[str, int],
) -> None:
    async def sessions() -> list[Session]:
        port = aiosmtpd["starttls"]
        context = tls_context()
        probes = (starttls(ADDRESS, MX, port, context, 2.0, MX) for _ in range(_CONNECTIONS))
        return await asyncio.gather(*probes)

    probed: list[list[Session]] = []
    garbage = cyclic_garbage(lambda: probed.append(asyncio.run(sessions())))
    assert garbage <= _CONNECTIONS * _CYCLIC_PER_CONNECTION
    assert {session.failure for session in probed[0]} == {Failure.UNTRUSTED}
