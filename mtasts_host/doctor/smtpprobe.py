"""
An SMTP dialogue up to STARTTLS and the TLS handshake, with asyncio: bounded by one timeout
as a whole (and one more for a second look at a chain out of its dates), it returns what it
saw and never raises.
"""

from __future__ import annotations

import asyncio
import re
import ssl

from ..names import is_address
from .ehlo import address_literal
from .facts import Failure, Session
from .tlsprobe import BROKEN, classify, failed, handshake, untangle

_MAX_LINE = 512
"""The longest reply line RFC 5321 section 4.5.3.1.5 allows, CRLF included: what is kept of
a longer one, which would otherwise be quoted whole in the finding (64 KiB, the stream's
limit, 100 times: in every report, log line and /readyz answer)."""


_MAX_LINES = 1000
"""The most lines of one reply: RFC 5321 sets no bound, but a reply that never ends would
hold the probe until the timeout, which would then say that no greeting came."""


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One SMTP reply: its code and its lines' text."""
    lines: list[str] = []
    for _ in range(_MAX_LINES):
        line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise ValueError(f"not SMTP: {line[:40]!r}")
        if len(lines) < 100:  # the rest is read, not kept: the next reply starts after it
            lines.append(line[4 : _MAX_LINE - 2])
        if line[3:4] != "-":
            return int(line[:3]), lines
    raise ValueError(f"a reply of more than {_MAX_LINES} lines")


_BRACKETED = re.compile(r"\[(?:IPv6:)?([0-9A-Fa-f.:]+)\]")


def _names_address(text: str) -> bool:
    """Whether ``text`` names an IP address in brackets, as Postfix's refusals of a client
    do: ``<unknown[192.0.2.1]>``, ``cannot find your hostname, [192.0.2.1]``."""
    return any(is_address(match[1]) for match in _BRACKETED.finditer(text))


def _ended(command: str | None, code: int, lines: list[str]) -> tuple[Failure, str]:
    """Why a reply other than the one hoped for ends the dialogue (``command`` None: the
    greeting)."""
    text = f"{code} {' '.join(lines)}"
    # A refused EHLO is about its name: a 5xx, or a 4xx that quotes the name, <name>, as
    # Postfix's reject_unknown_helo_hostname does ("450 4.7.1 <name>: Helo command rejected:
    # Host not found", as it will tomorrow: waiting does not help, another --ehlo does). Its
    # refusals of the client itself name it otherwise: "<host[192.0.2.1]>", or "[192.0.2.1]",
    # in a 4xx as in a 5xx (check_client_access or reject_unknown_client_hostname among the
    # smtpd_helo_restrictions): those refuse the doctor's address, whatever its name.
    # 500 and 502 say that EHLO is unknown (RFC 5321 section 4.1.1.1), not that its name is bad.
    name = command[5:] if command is not None and command.startswith("EHLO ") else None
    quoted = name is not None and f"<{name}>".lower() in text.lower()
    client = name is not None and not quoted and _names_address(text)
    if (
        name is not None
        and code not in (421, 500, 502)
        and (quoted or (code >= 500 and not client))
    ):
        return Failure.EHLO, f"answers {command} with {text}"
    # 421 may answer anything (RFC 5321 section 3.8); a greeting may be 554 (section 3.1), or
    # 521 (RFC 7504), which postscreen also sends to the clients it drops; EHLO may be put
    # off (451) as a greylist does. A 454 to STARTTLS is no TLS for senders either (below).
    temporary = code // 100 == 4 and command != "STARTTLS"
    if code == 421 or temporary or (code // 100 == 5 and (command is None or client)):
        if code // 100 == 4:
            return Failure.REFUSED, f"refuses the session for now: {text}"
        why = "the doctor's address may be blocklisted there"
        return Failure.REFUSED, f"refuses the session: {text} ({why})"
    if command is None:
        return Failure.PROTOCOL, f"greets with {text}"
    if command == "STARTTLS":
        return Failure.NO_STARTTLS, f"answers STARTTLS with {text}"
    return Failure.PROTOCOL, f"answers EHLO with {text}"


async def _to_starttls(address: str, port: int, name: str) -> asyncio.StreamWriter:
    """A second connection, up to where TLS starts: the dialogue went there before."""
    reader, writer = await asyncio.open_connection(address, port)
    try:
        for command in ("", f"EHLO {name}\r\n", "STARTTLS\r\n"):  # "": the greeting
            writer.write(command.encode())
            code = (await _reply(reader))[0]
            if code // 100 != 2:
                raise ValueError(f"another dialogue than the first: {code}")
    except BaseException:
        writer.transport.abort()
        raise
    return writer


async def starttls(
    address: str,
    host: str,
    port: int,
    context: ssl.SSLContext,
    timeout: float,
    helo: str | None,
) -> Session:
    """
    Greeting, EHLO, STARTTLS and the TLS handshake with ``host`` as the name to verify.

    Args:
        helo: the name given in EHLO; None: the address literal of this end of the connection.
    """
    step = "no connection"
    reader: asyncio.StreamReader | None = None
    writer = None
    name = None

    def refused(failure: Failure, detail: str) -> Session:
        return Session(host, address, failure=failure, detail=detail)

    def ended(
        writer: asyncio.StreamWriter, command: str | None, code: int, lines: list[str]
    ) -> Session:
        # QUIT ends a session (RFC 5321 section 4.1.1.10); after a 554 greeting the server
        # waits for it (section 3.1), after a 421 it has gone (section 3.8). Its reply is not
        # awaited, as Postfix does not await it (smtp_skip_quit_response).
        if code != 421:
            writer.write(b"QUIT\r\n")
        return refused(*_ended(command, code, lines))

    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(address, port)
            step = "no greeting"
            code, lines = await _reply(reader)
            if code != 220:
                return ended(writer, None, code, lines)
            name = helo or address_literal(writer.get_extra_info("sockname")[0])
            step = "no answer to EHLO"
            writer.write(f"EHLO {name}\r\n".encode())
            code, lines = await _reply(reader)
            if code != 250:
                return ended(writer, f"EHLO {name}", code, lines)
            if not any(line.upper().split()[:1] == ["STARTTLS"] for line in lines[1:]):
                writer.write(b"QUIT\r\n")
                return refused(Failure.NO_STARTTLS, "does not offer STARTTLS")
            step = "no answer to STARTTLS"
            writer.write(b"STARTTLS\r\n")
            code, lines = await _reply(reader)
            if code != 220:
                return ended(writer, "STARTTLS", code, lines)
            step = "no TLS handshake"
            session = await handshake(writer, host, address, context)
            writer.write(b"QUIT\r\n")
            return session
    except TimeoutError:
        return refused(Failure.TIMEOUT, f"{step} within {timeout:g} s on port {port}")
    except (asyncio.IncompleteReadError, ConnectionResetError) as exc:
        untangle(exc)
        if step == "no TLS handshake":
            return refused(*classify(exc, host, address, port))
        # It ran, listened and spoke: say when it hung up (a reset: a firewall in front, often).
        how = "reset" if isinstance(exc, ConnectionResetError) else "closed"
        return refused(Failure.PROTOCOL, f"the server {how} the connection: {step}")
    except BROKEN as exc:
        untangle(exc)
        failure, detail = classify(exc, host, address, port)
        if name is None:
            return refused(failure, detail)
        again = name
        return await failed(
            failure, detail, host, address, timeout, lambda: _to_starttls(address, port, again)
        )
    finally:
        if writer is not None:
            writer.transport.abort()
        reader = writer = None  # see tlsprobe.untangle
