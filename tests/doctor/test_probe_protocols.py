"""The probes against servers that speak HTTP and SMTP as some real ones do."""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import struct
from contextlib import AbstractAsyncContextManager as AsyncContextManager
from pathlib import Path

import pytest
import trustme

from mtasts_host.doctor import tlschecks
from mtasts_host.doctor.facts import Failure, Fetch, Names, Session
from mtasts_host.doctor.findings import Report, Status
from mtasts_host.doctor.smtpprobe import starttls
from mtasts_host.doctor.tlsprobe import fetch_policy
from mtasts_host.policy import Mode, policy_id
from mtasts_host.tls import sender_context

from .servers import Handler, chained, server_context, serving_on, smtp_dialogue

ADDRESS = "127.77.5.1"
HOST = "mta-sts.probe.test"
MX = "mx.probe.test"
BODY = b"version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n"


def serving(handler: Handler, context: ssl.SSLContext | None = None) -> AsyncContextManager[int]:
    return serving_on(ADDRESS, handler, context)


def answering(*parts: bytes, then_wait: float = 0.0) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        for part in parts:
            writer.write(part)
            await writer.drain()
        await asyncio.sleep(then_wait)

    return handler


def fetch(handler: Handler, ca: trustme.CA, context: ssl.SSLContext, timeout: float = 2.0) -> Fetch:
    async def main() -> Fetch:
        async with serving(handler, server_context(ca.issue_cert(HOST))) as port:
            return await fetch_policy(ADDRESS, HOST, port, context, timeout)

    return asyncio.run(main())


def smtp(handler: Handler, timeout: float = 2.0) -> Session:
    async def main() -> Session:
        async with serving(handler) as port:
            return await starttls(ADDRESS, MX, port, sender_context(), timeout, "doctor.test")

    return asyncio.run(main())


def smtp_heard(*replies: bytes, helo: str | None = "doctor.test") -> tuple[Session, bytes]:
    """The session with a server giving ``replies``, and all the probe said to it."""

    async def main() -> tuple[Session, bytes]:
        heard: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        async with serving(smtp_dialogue(*replies, heard=heard)) as port:
            session = await starttls(ADDRESS, MX, port, sender_context(), 2.0, helo)
            return session, await asyncio.wait_for(heard, 2.0)

    return asyncio.run(main())


@pytest.mark.parametrize(
    "interim",
    [
        b"HTTP/1.1 100 Continue\r\n\r\n",
        b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
        b"HTTP/1.1 102 Processing\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n",
    ],
)
def test_interim_1xx_answers_are_skipped(
    interim: bytes, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    # RFC 9110 section 15.2: a client MUST be able to parse 1xx responses before the final one.
    final = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n\r\n" + BODY
    result = fetch(answering(interim, final), ca, trusting)
    assert result.answer is not None
    assert (result.answer.status, result.answer.body) == (200, BODY)


def test_smtp_server_closing_after_starttls_220() -> None:
    greeting = b"220-mx.probe.test ESMTP\r\n220 ready\r\n"
    ehlo = b"250-mx.probe.test\r\n250-PIPELINING\r\n250-starttls\r\n250 8BITMIME\r\n"
    session = smtp(smtp_dialogue(greeting, ehlo, b"220 2.0.0 go ahead\r\n", close=True))
    assert session.detail == "the server closed the connection during the TLS handshake"


@pytest.mark.parametrize(
    ("replies", "detail"),
    [
        pytest.param((b"",), "no greeting", id="at-once"),  # as a firewall or tcpwrappers do
        pytest.param((b"220 mx.probe.test ESMTP\r\n",), "no answer to EHLO", id="after-greeting"),
        pytest.param(
            (b"220 mx.probe.test ESMTP\r\n", b"250-mx.probe.test\r\n250 STARTTLS\r\n"),
            "no answer to STARTTLS",
            id="after-ehlo",
        ),
    ],
)
def test_smtp_server_closing_says_when(replies: tuple[bytes, ...], detail: str) -> None:
    # Not only "the server closed the connection": at which step, as a timeout says.
    session = smtp(smtp_dialogue(*replies, close=True))
    assert session == Session(
        MX, ADDRESS, failure=Failure.PROTOCOL, detail=f"the server closed the connection: {detail}"
    )


def resetting(*replies: bytes) -> Handler:
    """A greeting, then the next reply to each line the client sends, then a reset (RST) when
    it speaks again, as a firewall or an intrusion prevention system in front may send."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(replies[0])
        for reply in replies[1:]:
            await reader.readuntil(b"\n")
            writer.write(reply)
        await reader.read(1)
        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
        )

    return handler


@pytest.mark.parametrize(
    ("replies", "detail"),
    [
        pytest.param(
            (b"220 mx.probe.test ESMTP\r\n",),
            "the server reset the connection: no answer to EHLO",
            id="after-greeting",
        ),
        pytest.param(
            (b"220 mx.probe.test ESMTP\r\n", b"250-mx.probe.test\r\n250 STARTTLS\r\n"),
            "the server reset the connection: no answer to STARTTLS",
            id="after-ehlo",
        ),
    ],
)
def test_smtp_server_resetting_says_when(replies: tuple[bytes, ...], detail: str) -> None:
    # Not "connection reset by peer on port N; check that the server runs and listens on
    # that port": it ran, listened and answered.
    session = smtp(resetting(*replies))
    assert session == Session(MX, ADDRESS, failure=Failure.PROTOCOL, detail=detail)


def test_smtp_server_resetting_during_the_tls_handshake() -> None:
    greeting, ehlo = b"220 mx.probe.test ESMTP\r\n", b"250-mx.probe.test\r\n250 STARTTLS\r\n"
    session = smtp(resetting(greeting, ehlo, b"220 2.0.0 go ahead\r\n"))
    assert session == Session(
        MX,
        ADDRESS,
        failure=Failure.HANDSHAKE,
        detail="the server reset the connection during the TLS handshake",
    )


def test_https_server_closing_on_client_hello(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    async def closing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read(1)

    async def main() -> Fetch:
        async with serving(closing) as port:  # no TLS: it hangs up on the ClientHello
            return await fetch_policy(ADDRESS, HOST, port, trusting, 2.0)

    result = asyncio.run(main())
    assert result.session.detail == "the server closed the connection during the TLS handshake"


def test_an_expired_intermediate_is_not_blamed_on_the_servers_certificate(
    tmp_path: Path,
) -> None:
    server = chained(tmp_path, HOST, intermediate=-1)

    async def main() -> Fetch:
        async with serving(answering(BODY), server) as port:
            client = sender_context(str(tmp_path / "ca.pem"))
            return await fetch_policy(ADDRESS, HOST, port, client, 2.0)

    detail = asyncio.run(main()).session.detail
    # The server's own certificate is good for 60 more days: "the certificate has expired;
    # renew the certificate" sends its operator after the wrong one.
    assert "intermediate" in detail


def test_a_server_compressing_when_not_told_otherwise(
    ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    import gzip

    compressed = gzip.compress(BODY)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = (await reader.readuntil(b"\r\n\r\n")).lower()
        # RFC 9110 section 12.5.3: without Accept-Encoding any content coding is acceptable.
        if b"\r\naccept-encoding: identity\r\n" in request:
            head, body = b"", BODY
        else:
            head, body = b"Content-Encoding: gzip\r\n", compressed
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n%sContent-Length: %d\r\n\r\n%s"
            % (head, len(body), body)
        )
        await writer.drain()

    result = fetch(handler, ca, trusting)
    assert result.answer is not None
    assert result.answer.body == BODY


def test_compression_despite_identity_is_named(ca: trustme.CA, trusting: ssl.SSLContext) -> None:
    from mtasts_host.doctor import tlschecks
    from mtasts_host.doctor.findings import Status

    response = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Encoding: br\r\n\r\nxx"
    result = fetch(answering(response), ca, trusting)
    finding = tlschecks.policy("probe.test", [result], BODY, announced=False)
    assert finding.status is Status.FAIL
    assert "Content-Encoding 'br'" in finding.message
    assert "another body" not in finding.message


def test_a_reply_of_more_than_100_lines_is_read_to_its_end() -> None:
    banner = b"".join(b"220-line %d of a long banner\r\n" % n for n in range(150))
    ehlo = b"250-mx.probe.test\r\n250 STARTTLS\r\n"
    session = smtp(
        smtp_dialogue(banner + b"220 ready\r\n", ehlo, b"454 4.7.0 TLS not available\r\n")
    )
    # Not "answers EHLO with 220 line 101 ...": the rest of the greeting read as EHLO's reply.
    assert session.detail == "answers STARTTLS with 454 4.7.0 TLS not available"


def test_a_reply_that_never_ends() -> None:
    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            writer.write(b"220-mx.probe.test ESMTP\r\n" * 100)
            await writer.drain()

    # Not "no greeting within 2 s" once the timeout strikes: it greeted, and never stopped.
    session = smtp(endless)
    assert session == Session(
        MX,
        ADDRESS,
        failure=Failure.PROTOCOL,
        detail="the server's answers make no sense (a reply of more than 1000 lines)",
    )


def test_a_reply_line_is_kept_to_the_longest_smtp_allows() -> None:
    # RFC 5321 section 4.5.3.1.5: 512 octets with the CRLF. Else 100 lines of 64 KiB each,
    # 6.5 MB, would be quoted in the finding, and so in each report, log line and /readyz.
    greeting = b"554-" + b"x" * 60000 + b"\r\n" + b"554 5.3.2 go away\r\n"
    session, _ = smtp_heard(greeting)
    assert session.detail == (
        f"refuses the session: 554 {'x' * 506} 5.3.2 go away (the doctor's address may be "
        "blocklisted there)"
    )


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 44\r\n\r\nversion",
            "the body did not arrive in full within 1 s (the headers did)",
            id="content-length-short",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + BODY,
            "the body did not arrive in full within 1 s (no Content-Length, not chunked, "
            "and the connection stayed open)",
            id="never-closes",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
            "the headers did not arrive in full within 1 s",
            id="headers-stall",  # a server trickling its answer, or stalled after the status
        ),
    ],
)
def test_a_body_that_never_ends(
    response: bytes, detail: str, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    result = fetch(answering(response, then_wait=3), ca, trusting, timeout=1.0)
    # Not "no HTTP answer within 1 s": the status line and headers came.
    assert result.error == detail


@pytest.mark.parametrize(
    ("response", "detail"),
    [
        pytest.param(
            b"",
            "the server closed the connection: no HTTP answer",
            id="no-answer",  # nginx's "return 444", for a name it has no server block for
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n",
            "the server closed the connection: the headers did not arrive in full",
            id="headers-cut",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + BODY,
            "the server closed the connection: the body did not arrive in full (the headers did)",
            id="content-length-too-long",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"2c\r\nversion",
            "the server closed the connection: the body did not arrive in full (the headers did)",
            id="chunk-cut",
        ),
    ],
)
def test_a_connection_closed_before_the_answer_ends(
    response: bytes, detail: str, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    # Not "the HTTP answer is broken (0 bytes read on a total of undefined expected bytes)".
    result = fetch(answering(response), ca, trusting)
    assert (result.answer, result.error) == (None, detail)


@pytest.mark.parametrize(
    ("greeting", "detail", "heard"),
    [
        pytest.param(
            b"554 5.7.1 Service unavailable; client [192.0.2.9] blocked using zen.spamhaus.org\r\n",
            "refuses the session: 554 5.7.1 Service unavailable; client [192.0.2.9] blocked "
            "using zen.spamhaus.org (the doctor's address may be blocklisted there)",
            b"QUIT\r\n",  # RFC 5321 section 3.1: the server waits for it
            id="554-blocklist",
        ),
        pytest.param(
            b"421-mx.probe.test is too busy to accept mail right now.\r\n"
            b"421 Please come back in 2040 seconds.\r\n",
            "refuses the session for now: 421 mx.probe.test is too busy to accept mail right "
            "now. Please come back in 2040 seconds.",
            b"",  # RFC 5321 section 3.8: a 421 has closed the session, so no QUIT
            id="421-busy",
        ),
    ],
)
def test_a_greeting_that_refuses_the_session(greeting: bytes, detail: str, heard: bytes) -> None:
    session, said = smtp_heard(greeting)
    assert said == heard
    assert session.detail == detail
    assert session == Session(MX, ADDRESS, failure=Failure.REFUSED, detail=detail)
    # Perhaps only the doctor is refused: no "check what listens there", and no failure.
    finding = tlschecks.mx_tls(
        "probe.test", Mode.ENFORCE, [MX], {MX: Names((ADDRESS,))}, [session], 0.0
    )
    assert finding.status is Status.WARN
    assert finding.message == (
        f"{MX} ({ADDRESS}): {detail}; the doctor could not check STARTTLS there: run it from "
        "another address, and if other senders are refused too, see the MX's log"
    )


def test_a_reply_cannot_steer_the_operators_terminal() -> None:
    # Erase the line, go back to its start, and print a line of the report's own.
    reply = b"454 4.7.0 \x1b[1A\x1b[2K\rprobe.test: 7 ok\x9b2J\r\n"
    ehlo = b"250-mx.probe.test\r\n250 STARTTLS\r\n"
    session, _ = smtp_heard(b"220 mx.probe.test ESMTP\r\n", ehlo, reply)
    finding = tlschecks.mx_tls(
        "probe.test", Mode.ENFORCE, [MX], {MX: Names((ADDRESS,))}, [session], 0.0
    )
    assert Report({"probe.test": (finding,)}).to_text() == (
        f"probe.test: fail: mx-tls: {MX} ({ADDRESS}): answers STARTTLS with 454 4.7.0 "
        "\\x1b[1A\\x1b[2K\\rprobe.test: 7 ok\\x9b2J; offer STARTTLS with a certificate for the MX "
        "name\nprobe.test: 1 fail"
    )


def test_a_refused_ehlo_names_the_ehlo_option_and_does_not_fall_back_to_helo() -> None:
    session, said = smtp_heard(
        b"220 mx.probe.test ESMTP\r\n", b"501 5.5.4 Invalid domain name\r\n", helo="vm"
    )
    assert said == b"EHLO vm\r\nQUIT\r\n"  # no HELO: STARTTLS needs ESMTP
    assert session == Session(
        MX,
        ADDRESS,
        failure=Failure.EHLO,
        detail="answers EHLO vm with 501 5.5.4 Invalid domain name",
    )
    problem = tlschecks.judge(session, 0.0)
    assert problem is not None
    assert problem[1].endswith(
        "; the doctor's EHLO name may be the cause: give it one the server accepts (--ehlo NAME)"
    )


def test_an_ehlo_put_off_is_a_refusal_for_now() -> None:
    session, said = smtp_heard(
        b"220 mx.probe.test ESMTP\r\n", b"451 4.7.1 Please try again later\r\n", helo="vm"
    )
    assert said == b"EHLO vm\r\nQUIT\r\n"
    detail = "refuses the session for now: 451 4.7.1 Please try again later"
    assert session == Session(MX, ADDRESS, failure=Failure.REFUSED, detail=detail)


@pytest.mark.parametrize(
    ("reply", "failure", "detail"),
    [
        pytest.param(
            b"450 4.7.1 <Doctor.Example>: Helo command rejected: Host not found\r\n",
            Failure.EHLO,
            "answers EHLO doctor.example with 450 4.7.1 <Doctor.Example>: Helo command "
            "rejected: Host not found",
            id="name-unknown",  # Postfix's reject_unknown_helo_hostname (test_postfix.py)
        ),
        pytest.param(
            b"450 4.7.1 <doctor.example[192.0.2.9]>: Client host rejected: try again\r\n",
            Failure.REFUSED,
            "refuses the session for now: 450 4.7.1 <doctor.example[192.0.2.9]>: Client host "
            "rejected: try again",
            id="client-named-so",  # the client, whose name is the EHLO name too
        ),
    ],
)
def test_an_ehlo_put_off_is_about_the_name_when_it_quotes_the_name(
    reply: bytes, failure: Failure, detail: str
) -> None:
    session, said = smtp_heard(b"220 mx.probe.test ESMTP\r\n", reply, helo="doctor.example")
    assert said == b"EHLO doctor.example\r\nQUIT\r\n"
    assert session == Session(MX, ADDRESS, failure=failure, detail=detail)


@pytest.mark.parametrize(
    ("reply", "failure", "detail"),
    [
        pytest.param(
            b"554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access denied\r\n",
            Failure.REFUSED,
            "refuses the session: 554 5.7.1 <unknown[192.0.2.9]>: Client host rejected: Access "
            "denied (the doctor's address may be blocklisted there)",
            id="client-access",  # Postfix's check_client_access in smtpd_helo_restrictions
        ),
        pytest.param(
            b"550 5.7.25 Client host rejected: cannot find your hostname, [2001:db8::9]\r\n",
            Failure.REFUSED,
            "refuses the session: 550 5.7.25 Client host rejected: cannot find your hostname, "
            "[2001:db8::9] (the doctor's address may be blocklisted there)",
            id="client-no-name",  # reject_unknown_client_hostname, its 450 made a 550
        ),
        pytest.param(
            b"504 5.5.2 <[192.0.2.9]>: Helo command rejected: need fully-qualified hostname\r\n",
            Failure.EHLO,
            "answers EHLO [192.0.2.9] with 504 5.5.2 <[192.0.2.9]>: Helo command rejected: "
            "need fully-qualified hostname",
            id="name-quoted",  # the address literal given as the name, quoted
        ),
    ],
)
def test_an_ehlo_refused_is_about_the_client_when_it_names_its_address(
    reply: bytes, failure: Failure, detail: str
) -> None:
    # As for a 4xx: refusing the client's address is no fault of the EHLO name, and perhaps
    # only the doctor is refused. Not a failure saying "give it one the server accepts".
    session, said = smtp_heard(b"220 mx.probe.test ESMTP\r\n", reply, helo="[192.0.2.9]")
    assert said == b"EHLO [192.0.2.9]\r\nQUIT\r\n"
    assert session == Session(MX, ADDRESS, failure=failure, detail=detail)


def test_without_a_name_ehlo_gives_the_address_literal_of_this_end() -> None:
    # RFC 5321 section 4.1.1.1: an address literal where the client has no usable name.
    session, said = smtp_heard(b"220 mx.probe.test ESMTP\r\n", b"250 mx.probe.test\r\n", helo=None)
    assert re.fullmatch(rb"EHLO \[127\.\d+\.\d+\.\d+\]\r\nQUIT\r\n", said)
    assert session.detail == "does not offer STARTTLS"


LF_BODY = BODY.replace(b"\r\n", b"\n")
SERVED = f"https://{HOST}/.well-known/mta-sts.txt serves this config's policy, 44 bytes"


@pytest.mark.parametrize(
    ("response", "status", "message"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 44\n\n" + BODY,
            Status.OK,
            SERVED,
            id="content-length",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\nContent-Type: text/plain\nTransfer-Encoding: chunked\n\n"
            b"2c\n" + BODY + b"\n0\n\n",
            Status.OK,
            SERVED,
            id="chunked",
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\nContent-Type: text/plain\nContent-Length: 41\n\n" + LF_BODY,
            Status.FAIL,
            f"{ADDRESS}: serves another body than this config (id {policy_id(LF_BODY)}): line 1 "
            "is b'version: STSv1\\n', expected b'version: STSv1\\r\\n'; a stale cache or "
            "another server in front answers, or the server has not loaded this config",
            id="body-ending-in-bare-lf-too",
        ),
    ],
)
def test_header_lines_ending_in_a_bare_lf(
    response: bytes, status: Status, message: str, ca: trustme.CA, trusting: ssl.SSLContext
) -> None:
    # RFC 9112 section 2.2: a recipient MAY take a bare LF for the end of a line. The server
    # keeps the connection open, so the answer must not wait for the timeout.
    result = fetch(answering(response, then_wait=3), ca, trusting)
    finding = tlschecks.policy("probe.test", [result], BODY, announced=False)
    assert (finding.status, finding.message) == (status, message)
