"""
An SMTP dialogue up to STARTTLS and the TLS handshake, with asyncio: bounded by one timeout
as a whole, it returns what it saw and never raises.
"""

from __future__ import annotations

import asyncio
import ssl

from .ehlo import address_literal
from .facts import Failure, Session
from .tlsprobe import BROKEN, classify, handshake


async def _reply(reader: asyncio.StreamReader) -> tuple[int, list[str]]:
    """One SMTP reply: its code and its lines' text."""
    lines: list[str] = []
    while True:
        line = (await reader.readuntil(b"\n")).decode("latin-1").rstrip("\r\n")
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise ValueError(f"not SMTP: {line[:40]!r}")
        if len(lines) < 100:  # the rest is read, not kept: the next reply starts after it
            lines.append(line[4:])
        if line[3:4] != "-":
            return int(line[:3]), lines


def _ended(command: str | None, code: int, lines: list[str]) -> tuple[Failure, str]:
    """Why a reply other than the one hoped for ends the dialogue (``command`` None: the
    greeting)."""
    text = f"{code} {' '.join(lines)}"
    # A refused EHLO is about its name: a 5xx, or a 4xx that quotes the name, <name>, as
    # Postfix's reject_unknown_helo_hostname does ("450 4.7.1 <name>: Helo command rejected:
    # Host not found", as it will tomorrow: waiting does not help, another --ehlo does). Its
    # refusals of the client itself name it otherwise: "<host[192.0.2.1]>", or "[192.0.2.1]".
    # 500 and 502 say that EHLO is unknown (RFC 5321 section 4.1.1.1), not that its name is bad.
    if (
        command is not None
        and command.startswith("EHLO ")
        and code not in (421, 500, 502)
        and (code >= 500 or f"<{command[5:]}>".lower() in text.lower())
    ):
        return Failure.EHLO, f"answers {command} with {text}"
    # 421 may answer anything (RFC 5321 section 3.8); a greeting may be 554 (section 3.1), or
    # 521 (RFC 7504), which postscreen also sends to the clients it drops; EHLO may be put
    # off (451) as a greylist does. A 454 to STARTTLS is no TLS for senders either (below).
    temporary = code // 100 == 4 and command != "STARTTLS"
    if code == 421 or temporary or (command is None and code // 100 == 5):
        if code // 100 == 4:
            return Failure.REFUSED, f"refuses the session for now: {text}"
        why = "the doctor's address may be blocklisted there"
        return Failure.REFUSED, f"refuses the session: {text} ({why})"
    if command is None:
        return Failure.PROTOCOL, f"greets with {text}"
    if command == "STARTTLS":
        return Failure.NO_STARTTLS, f"answers STARTTLS with {text}"
    return Failure.PROTOCOL, f"answers EHLO with {text}"


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
    writer = None

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
    except BROKEN as exc:
        return refused(*classify(exc, host, address, port))
    finally:
        if writer is not None:
            writer.transport.abort()
