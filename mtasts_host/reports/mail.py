"""
The intake by mail: reports in RFC 5322 messages (RFC 8460 section 5.3), bare report files,
and a maildir, with the exit codes of sysexits.h that a mail server acts on.
"""

from __future__ import annotations

import email
import os
from collections.abc import Iterable
from email.message import Message
from email.policy import Compat32
from pathlib import Path
from typing import BinaryIO, TextIO

from .._files import NotAFile, read_file
from .._text import printable
from .body import GZIP_MAGIC, TooLarge
from .intake import Intake
from .report import BadReport
from .store import Outcome, StoreUnavailable

EX_OK = 0
EX_DATAERR = 65
"""A message without a report, or with a bad one: Postfix bounces it."""
EX_NOINPUT = 66
"""A file or maildir given that is not there or cannot be read: nothing to retry, as a
temporary failure would have a mail system do, and no bad report either."""
EX_TEMPFAIL = 75
"""The store is unavailable: Postfix keeps the message and delivers it again later."""
MAX_MESSAGE_SIZE = 64 << 20
"""Read no more of a message: its reports are at most 1 MiB each once decoded from base64."""
MAX_PARAMETERS_HEADER = 1000
"""Characters of a ``Content-Type`` or ``Content-Disposition`` header: real ones name a type
and a file in a few hundred. The email package reads their parameters in time quadratic in
their length (CPython gh-136063; Python 3.11.7 has it): 300 KB of ``;`` after a quote took a
minute, and a message of 10 MB would take hours."""
MAX_PARTS = 1000
"""Lines starting with ``--``, which every MIME part but the first follows: counted before
parsing, as the email package builds a few hundred bytes of objects for each part, and a
million empty ones fit in 7 MB. Real reports come in two or three."""
MAX_LINES = 100_000
"""Lines of a message, counted before parsing: the email package keeps an object of some
200 bytes for each, and 5 MiB of one-word header lines took 211 MB. A report of 1 MiB, the
most one may be, is 18,000 lines of base64, or some 35,000 of JSON printed one value a line."""
REPORT_TYPES = ("application/tlsrpt+gzip", "application/tlsrpt+json")
REPORT_SUFFIXES = (".json", ".json.gz")


class _Policy(Compat32):
    """``compat32``, refusing what the email package would take quadratic time to read."""

    def header_source_parse(self, sourcelines: list[str]) -> tuple[str, str]:
        name, value = super().header_source_parse(sourcelines)
        if len(value) > MAX_PARAMETERS_HEADER and name.strip().lower() in _PARAMETERS_HEADERS:
            raise BadReport(
                f"a {name.strip()} header longer than {MAX_PARAMETERS_HEADER:,} characters"
            )
        return name, value


_PARAMETERS_HEADERS = ("content-type", "content-disposition")
_POLICY = _Policy()


def reports_in(data: bytes) -> list[bytes]:
    """
    The report bodies in a file: the file itself if it is a bare report (gzip, or JSON
    text), else the parts of the message whose type is ``application/tlsrpt+gzip`` or
    ``+json``, or whose file name ends in ``.json`` or ``.json.gz``.

    Raises:
        BadReport: the message has too many lines or MIME parts, or parts nested too
            deeply, or a header with parameters too long to be read.
    """
    if data.startswith(GZIP_MAGIC) or data.lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return [data]
    # Lines end as the email package splits them: at "\r\n", "\n" or a "\r" alone, which
    # counted as no line end put 5 MiB of header lines past both limits (216 MB).
    if data.count(b"\n") + data.count(b"\r") - data.count(b"\r\n") > MAX_LINES:
        raise BadReport(f"more than {MAX_LINES:,} lines")
    if data.count(b"\n--") + data.count(b"\r--") > MAX_PARTS:
        raise BadReport(f"more than {MAX_PARTS:,} MIME parts (lines starting with --)")
    try:
        message = email.message_from_bytes(data, policy=_POLICY)
        parts = [part for part in message.walk() if not part.is_multipart()]
    except RecursionError:
        # The email package recurses once per level of nested parts: a thousand levels, in
        # some 70 KB, exhaust Python's stack. Real reports are two or three levels down.
        raise BadReport("MIME parts nested too deeply") from None
    found = []
    for part in parts:
        if part.get_content_type() in REPORT_TYPES or _file_name(part).endswith(REPORT_SUFFIXES):
            payload = part.get_payload(decode=True)
            if isinstance(payload, bytes) and payload:
                found.append(payload)
    return found


def _file_name(part: Message) -> str:
    try:
        name = part.get_filename()
    except (TypeError, ValueError):
        # The email package raises on some malformed RFC 2231 parameters (a name both
        # numbered and not, a NUL in its charset): no name then, as if none were given.
        return ""
    return (name or "").strip().lower()


def ingest(intake: Intake, data: bytes, name: str, log: TextIO) -> int:
    """
    Store the reports of one file or message; write one line per report to ``log``.

    Returns:
        ``EX_OK`` when every report is stored or a duplicate, ``EX_TEMPFAIL`` when the store
        is unavailable, ``EX_DATAERR`` when there is no report, or a bad one.
    """
    if len(data) > MAX_MESSAGE_SIZE:
        intake.reject("message too large")
        print(f"{name}: larger than {MAX_MESSAGE_SIZE >> 20} MiB; not read", file=log)
        return EX_DATAERR
    try:
        bodies = reports_in(data)
    except BadReport as exc:
        intake.reject(str(exc))
        print(f"{name}: {exc}; not read", file=log)
        return EX_DATAERR
    if not bodies:
        intake.reject("no report")
        print(f"{name}: no TLS report (application/tlsrpt+gzip or +json) found", file=log)
        return EX_DATAERR
    status = EX_OK
    for body in bodies:
        try:
            outcome, report = intake.accept(body)
        except (BadReport, TooLarge) as exc:
            print(f"{name}: bad report: {exc}", file=log)
            status = max(status, EX_DATAERR)
        except StoreUnavailable as exc:
            print(f"{name}: report store unavailable: {exc}", file=log)
            return EX_TEMPFAIL
        else:
            done = "stored" if outcome is Outcome.STORED else "duplicate, already stored"
            line = f"{name}: {done}: report {report.report_id!r} from {report.organization_name!r}"
            print(printable(line), file=log)
    return status


def ingest_files(
    intake: Intake, paths: Iterable[str | Path], log: TextIO, stdin: BinaryIO | None = None
) -> int:
    """
    Ingest files; return the worst exit code (``EX_TEMPFAIL`` stops at once, ``EX_NOINPUT``
    for a file that cannot be read). A path ``-`` is the message on ``stdin``, as for
    ``cat``; it is read once.
    """
    status = EX_OK
    for path in paths:
        if str(path) == "-" and stdin is not None:
            status = max(status, ingest_stdin(intake, stdin, log))
            if status == EX_TEMPFAIL:
                break
            continue
        try:
            data = _read(Path(path))
        except OSError as exc:
            print(f"{path}: {exc.strerror or exc}", file=log)
            status = max(status, EX_NOINPUT)
            continue
        status = max(status, ingest(intake, data, str(path), log))
        if status == EX_TEMPFAIL:
            break
    return status


def ingest_stdin(intake: Intake, stdin: BinaryIO, log: TextIO) -> int:
    """Ingest one message from standard input, as Postfix's ``pipe`` delivers it."""
    try:
        data = stdin.read(MAX_MESSAGE_SIZE + 1)
    except OSError as exc:
        # Open for writing only (0>file), or an I/O error: as a closed standard input, the
        # mail system keeps the message and tries again (see cli).
        print(f"<stdin>: cannot be read: {exc.strerror or exc}", file=log)
        return EX_TEMPFAIL
    return ingest(intake, data, "<stdin>", log)


def ingest_maildir(intake: Intake, maildir: str | Path, log: TextIO) -> int:
    """
    Ingest the messages in ``new/`` and move each handled one to ``cur/``: marked seen
    (``:2,S``) when its reports are stored, flagged (``:2,F``) when it has none or a bad
    one, so that it is not read again. Stops, leaving the rest in ``new/``, when the store
    is unavailable or a message cannot be moved; reads nothing without ``new/`` and ``cur/``
    (``EX_NOINPUT``), and leaves a message that cannot be read in ``new/`` (``EX_NOINPUT``).
    """
    root = Path(maildir)
    new, cur = root / "new", root / "cur"
    try:
        names = sorted(entry.name for entry in os.scandir(new) if not entry.name.startswith("."))
    except OSError as exc:
        print(f"{new}: {exc.strerror or exc}", file=log)
        return EX_NOINPUT
    if not cur.is_dir():
        # Checked first: a message that cannot be moved would be read again on every run.
        print(f"{cur}: no such directory; a maildir has new/ and cur/", file=log)
        return EX_NOINPUT
    status = EX_OK
    for name in names:
        try:
            # Never a FIFO's open, which waits for a writer: the run would hang there for good.
            data, _ = read_file(new / name, MAX_MESSAGE_SIZE)
        except FileNotFoundError:
            continue  # taken by another reader meanwhile
        except (OSError, NotAFile) as exc:
            # Left in new/ and said on every run: skipped unsaid (a file of another user,
            # mode 0600), it was never read and the run still exited 0.
            print(f"{new / name}: {getattr(exc, 'strerror', None) or exc}", file=log)
            status = max(status, EX_NOINPUT)
            continue
        result = ingest(intake, data, str(new / name), log)
        if result == EX_TEMPFAIL:
            return EX_TEMPFAIL
        status = max(status, result)
        flags = "S" if result == EX_OK else "F"
        problem = _move(new / name, cur / f"{name.split(':2,', 1)[0]}:2,{flags}")
        if problem is not None:
            print(f"{new / name}: not moved to {cur}: {problem}", file=log)
            return EX_DATAERR
    return status


def _move(source: Path, target: Path) -> str | None:
    try:
        os.replace(source, target)
    except OSError as exc:
        if not os.path.lexists(source):
            return None  # another reader took it meanwhile, and stores the same reports
        return exc.strerror or str(exc)
    return None


def _read(path: Path) -> bytes:
    with path.open("rb") as file:
        return file.read(MAX_MESSAGE_SIZE + 1)
