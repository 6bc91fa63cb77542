"""The intake by mail: messages, bare files, standard input, a maildir, and exit codes."""

from __future__ import annotations

import base64
import email.message
import email.policy
import io
import os
import subprocess
import sys
from pathlib import Path
from typing import TextIO

import pytest

from mtasts_host.reports import Intake, ReportsSettings, ingest_command, mail, open_store
from mtasts_host.reports.mail import (
    EX_DATAERR,
    EX_NOINPUT,
    EX_OK,
    EX_TEMPFAIL,
    MAX_LINES,
    MAX_PARTS,
    reports_in,
)
from mtasts_host.reports.report import BadReport

from .conftest import NOW, encode, recent, report


def message(*parts: tuple[bytes, str, str | None]) -> bytes:
    """A report message as RFC 8460 section 5.3 describes it (multipart/report)."""
    msg = email.message.EmailMessage()
    msg["From"] = "tlsrpt@sender.example"
    msg["To"] = "tlsrpt@example.com"
    msg["Subject"] = "Report Domain: example.com Submitter: sender.example Report-ID: <x>"
    msg.set_content("This is an aggregate TLS report from sender.example")
    for data, subtype, filename in parts:
        maintype, _, sub = subtype.partition("/")
        msg.add_attachment(data, maintype=maintype, subtype=sub, filename=filename)
    msg.replace_header(
        "Content-Type", msg["Content-Type"].replace("multipart/mixed", "multipart/report")
    )
    return msg.as_bytes(policy=email.policy.SMTP)


def intake(url: str) -> Intake:
    return Intake(open_store(url), 400, clock=lambda: NOW)


def test_parts_by_type_or_file_name() -> None:
    gz, js = encode(report(day=recent())), encode(report(), compress=False)
    assert reports_in(message((gz, "application/tlsrpt+gzip", "r.json.gz"))) == [gz]
    assert reports_in(message((js, "application/tlsrpt+json", None))) == [js]
    assert reports_in(message((gz, "application/octet-stream", "x!y!1!2.json.gz"))) == [gz]
    assert reports_in(message((js, "application/octet-stream", "report.JSON"))) == [js]
    assert reports_in(message((gz, "application/pdf", "invoice.pdf"))) == []
    assert reports_in(gz) == [gz]  # a bare .json.gz
    assert reports_in(b"\n " + js) == [b"\n " + js]  # a bare .json


def test_a_message_is_stored_then_duplicate(sqlite_url: str) -> None:
    data = message(
        (encode(report(day=recent(), report_id="m1")), "application/tlsrpt+gzip", "r.json.gz")
    )
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=data, log=log) == EX_OK
    assert _ingest(sqlite_url, stdin=data, log=log) == EX_OK
    assert log.getvalue().splitlines() == [
        "<stdin>: stored: report 'm1' from 'Google Inc.'",
        "<stdin>: duplicate, already stored: report 'm1' from 'Google Inc.'",
    ]


def test_the_line_of_a_stored_report_shows_what_shows_nothing(sqlite_url: str) -> None:
    # repr() escapes controls, but keeps a combining grapheme joiner or a variation selector.
    body = encode(report(day=recent(), report_id="m\u034f", organization="Google Inc.\ufe0f"))
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=body, log=log) == EX_OK
    assert log.getvalue() == "<stdin>: stored: report 'm\\u034f' from 'Google Inc.\\ufe0f'\n"


def test_a_message_without_a_report_is_a_data_error(sqlite_url: str) -> None:
    data = message((b"%PDF-1.4", "application/pdf", "invoice.pdf"))
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=data, log=log) == EX_DATAERR
    assert log.getvalue() == ("<stdin>: no TLS report (application/tlsrpt+gzip or +json) found\n")


def test_a_bad_report_is_a_data_error(sqlite_url: str) -> None:
    data = message((b'{"report-id": "x"}', "application/tlsrpt+json", None))
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=data, log=log) == EX_DATAERR
    assert log.getvalue() == "<stdin>: bad report: organization-name: missing\n"


def test_store_unavailable_is_a_temporary_failure(tmp_path: Path) -> None:
    data = message((encode(report(day=recent())), "application/tlsrpt+gzip", "r.json.gz"))
    url = f"sqlite:///{tmp_path}/missing/reports.db"
    assert _ingest(url, stdin=data) == EX_TEMPFAIL


def test_files_bare_and_in_messages(sqlite_url: str, tmp_path: Path) -> None:
    files = {
        "a.json": encode(report(day=recent(), report_id="a"), compress=False),
        "b.json.gz": encode(report(day=recent(), report_id="b")),
        "c.eml": message(
            (encode(report(day=recent(), report_id="c")), "application/tlsrpt+gzip", "c.json.gz")
        ),
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    paths = [str(tmp_path / name) for name in files]
    log = io.StringIO()
    assert _ingest(sqlite_url, files=paths, log=log) == EX_OK
    assert len(log.getvalue().splitlines()) == 3
    # A file that is not there is no bad report: 66, as sysexits.h has it, not 65.
    log = io.StringIO()
    assert _ingest(sqlite_url, files=[*paths, str(tmp_path / "none")], log=log) == EX_NOINPUT
    assert log.getvalue().splitlines()[-1] == f"{tmp_path / 'none'}: No such file or directory"


def test_a_maildir(sqlite_url: str, tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    good = message(
        (encode(report(day=recent(), report_id="g")), "application/tlsrpt+gzip", "g.json.gz")
    )
    (maildir / "new" / "1.host").write_bytes(good)
    (maildir / "new" / "2.host").write_bytes(message((b"x", "application/pdf", "x.pdf")))
    assert _ingest(sqlite_url, maildir=str(maildir)) == EX_DATAERR
    assert sorted(path.name for path in (maildir / "cur").iterdir()) == ["1.host:2,S", "2.host:2,F"]
    assert list((maildir / "new").iterdir()) == []
    assert _ingest(sqlite_url, maildir=str(maildir)) == EX_OK  # nothing new


def test_a_maildir_waits_for_the_store(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    data = message((encode(report(day=recent())), "application/tlsrpt+gzip", "r.json.gz"))
    (maildir / "new" / "1.host").write_bytes(data)
    url = f"sqlite:///{tmp_path}/missing/reports.db"
    assert _ingest(url, maildir=str(maildir)) == EX_TEMPFAIL
    assert [path.name for path in (maildir / "new").iterdir()] == ["1.host"]


def test_a_report_with_a_long_report_id_is_bad_not_a_store_failure(
    postgres_url: str, tmp_path: Path
) -> None:
    # It was EX_TEMPFAIL with PostgreSQL: left in new/, it stopped every later run there.
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    long_id = "".join(f"{n:04x}" for n in range(750))
    for name, report_id in (("1.host", long_id), ("2.host", "after")):
        body = encode(report(day=recent(), report_id=report_id))
        data = message((body, "application/tlsrpt+gzip", "r.json.gz"))
        (maildir / "new" / name).write_bytes(data)
    assert _ingest(postgres_url, maildir=str(maildir)) == EX_DATAERR
    assert sorted(path.name for path in (maildir / "cur").iterdir()) == ["1.host:2,F", "2.host:2,S"]


def one_part(content_type: str, disposition: str, data: bytes) -> bytes:
    """A message that is one base64 part, its headers written as given."""
    head = (
        f"Content-Type: {content_type}\r\nContent-Transfer-Encoding: base64\r\n"
        f"Content-Disposition: {disposition}\r\n\r\n"
    )
    return head.encode() + base64.encodebytes(data)


MALFORMED_FILE_NAMES = [
    pytest.param("attachment; filename*0=r; filename*=r.json.gz", id="numbered-and-not"),
    pytest.param("attachment; filename*=utf\x008''r.json.gz", id="nul-in-charset"),
]


@pytest.mark.parametrize("disposition", MALFORMED_FILE_NAMES)
def test_a_malformed_file_name_is_none(disposition: str) -> None:
    # The email package raises on these RFC 2231 parameters; the type still tells.
    gz = encode(report(day=recent()))
    assert reports_in(one_part("application/tlsrpt+gzip", disposition, gz)) == [gz]
    assert reports_in(one_part("application/octet-stream", disposition, gz)) == []


@pytest.mark.parametrize("disposition", MALFORMED_FILE_NAMES)
def test_a_maildir_goes_past_a_malformed_file_name(
    sqlite_url: str, tmp_path: Path, disposition: str
) -> None:
    # It was a traceback: the message stayed in new/ and stopped every later run there.
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    poison = one_part("application/octet-stream", disposition, b"x")
    (maildir / "new" / "0.host").write_bytes(poison)
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_DATAERR
    assert sorted(path.name for path in (maildir / "cur").iterdir()) == ["0.host:2,F", "1.host:2,S"]
    assert log.getvalue().splitlines()[0] == (
        f"{maildir}/new/0.host: no TLS report (application/tlsrpt+gzip or +json) found"
    )


def test_a_maildir_goes_past_parts_nested_too_deeply(sqlite_url: str, tmp_path: Path) -> None:
    # It was a RecursionError: the message stayed in new/ and stopped every later run there.
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    # Messages in messages: multiparts that deep have more parts than are read at all.
    poison = b"Content-Type: message/rfc822\r\n\r\n" * 1000 + b"Subject: x\r\n\r\nx\r\n"
    (maildir / "new" / "0.host").write_bytes(poison)
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_DATAERR
    assert sorted(path.name for path in (maildir / "cur").iterdir()) == ["0.host:2,F", "1.host:2,S"]
    assert log.getvalue().splitlines()[0] == (
        f"{maildir}/new/0.host: MIME parts nested too deeply; not read"
    )


# The email package reads parameters in time quadratic in the header's length: 300 KB of
# these took a minute to read, and a message of 10 MB would take hours.
_SEMICOLONS = ";" * 20_000


@pytest.mark.parametrize(
    ("headers", "message_"),
    [
        pytest.param(
            f'Content-Type: multipart/mixed; boundary="{_SEMICOLONS}\r\n',
            "a Content-Type header longer than 1,000 characters",
            id="boundary",
        ),
        pytest.param(
            "Content-Type: text/plain\r\n"
            f'Content-Disposition: attachment; filename="{_SEMICOLONS}.json\r\n',
            "a Content-Disposition header longer than 1,000 characters",
            id="file-name",
        ),
        pytest.param(
            f"Content-Type: text/plain{'; a=b' * 4000}\r\n",
            "a Content-Type header longer than 1,000 characters",
            id="many-parameters",
        ),
        pytest.param(
            "Content-Type: text/plain;\r\n" + "\tname=a;\r\n" * 1000,
            "a Content-Type header longer than 1,000 characters",
            id="folded",
        ),
    ],
)
def test_a_header_with_parameters_too_long_to_read_is_bad(headers: str, message_: str) -> None:
    with pytest.raises(BadReport) as raised:
        reports_in(f"{headers}\r\n{{}}\r\n".encode())
    assert str(raised.value) == message_


def test_a_header_of_a_thousand_characters_is_read() -> None:
    js = encode(report(), compress=False)
    disposition = 'attachment; filename="' + "x" * 972 + '.json"'
    assert len(disposition) == 1000
    data = f"Content-Disposition: {disposition}\r\n\r\n".encode() + js
    assert reports_in(data) == [js]


def test_a_message_of_too_many_parts_is_bad(sqlite_url: str) -> None:
    # A million empty parts, in 7 MB, took 350 MB to parse.
    gz = encode(report(day=recent(), report_id="p"))
    data = message((gz, "application/tlsrpt+gzip", "p.json.gz"))
    assert reports_in(data) == [gz]
    empty = data.replace(b"\r\n--", b"\r\n--===nothing\r\n\r\n" * 1000 + b"\r\n--", 1)
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=empty, log=log) == EX_DATAERR
    assert log.getvalue() == (
        "<stdin>: more than 1,000 MIME parts (lines starting with --); not read\n"
    )


def test_a_message_of_too_many_lines_is_bad(sqlite_url: str) -> None:
    # 5 MiB of one-word header lines took 211 MB to parse.
    gz = encode(report(day=recent(), report_id="l"))
    data = message((gz, "application/tlsrpt+gzip", "l.json.gz"))
    lines = data.count(b"\n")
    assert _ingest(sqlite_url, stdin=b"X: y\r\n" * (MAX_LINES - lines) + data) == EX_OK
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=b"X: y\r\n" * (MAX_LINES - lines + 1) + data, log=log) == (
        EX_DATAERR
    )
    assert log.getvalue() == "<stdin>: more than 100,000 lines; not read\n"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param(
            b"X: y\r" * MAX_LINES + b"\r{}\r",
            "more than 100,000 lines",
            id="lines",
        ),
        pytest.param(
            b"Content-Type: multipart/mixed; boundary=B\r\r" + b"--B\r\r" * MAX_PARTS + b"--B--\r",
            "more than 1,000 MIME parts (lines starting with --)",
            id="parts",
        ),
    ],
)
def test_lines_that_end_in_a_carriage_return_alone_count(data: bytes, problem: str) -> None:
    # The email package ends a line at a "\r" alone too: counted as none, 5 MiB of header
    # lines so took 216 MB, and 200,000 empty parts 110 MB.
    with pytest.raises(BadReport) as raised:
        reports_in(data)
    assert str(raised.value) == problem


def maildir_with(tmp_path: Path, *subdirectories: str) -> Path:
    """A maildir with these subdirectories and one good message in ``new/``."""
    maildir = tmp_path / "Maildir"
    for sub in subdirectories:
        (maildir / sub).mkdir(parents=True)
    data = message(
        (encode(report(day=recent(), report_id="g")), "application/tlsrpt+gzip", "g.json.gz")
    )
    (maildir / "new" / "1.host").write_bytes(data)
    return maildir


def test_a_maildir_that_is_not_there(sqlite_url: str, tmp_path: Path) -> None:
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(tmp_path / "Mialdir"), log=log) == EX_NOINPUT
    assert log.getvalue() == f"{tmp_path}/Mialdir/new: No such file or directory\n"


def test_a_maildir_without_cur_is_not_read(sqlite_url: str, tmp_path: Path) -> None:
    maildir = maildir_with(tmp_path, "new", "tmp")
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_NOINPUT
    assert log.getvalue() == f"{maildir}/cur: no such directory; a maildir has new/ and cur/\n"
    assert [path.name for path in (maildir / "new").iterdir()] == ["1.host"]
    assert open_store(sqlite_url).raw("Google Inc.", "g") is None  # not stored, not re-read


def test_a_message_that_cannot_be_read_is_named_and_left_in_new(
    sqlite_url: str, tmp_path: Path
) -> None:
    # It was skipped without a word and the run exited 0: a message of another user, mode
    # 0600, stayed in new/ unread for good. A directory cannot be read by root either.
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    (maildir / "new" / "0.host").mkdir()
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_NOINPUT
    assert log.getvalue().splitlines() == [
        f"{maildir}/new/0.host: a directory",
        f"{maildir}/new/1.host: stored: report 'g' from 'Google Inc.'",
    ]
    assert [path.name for path in (maildir / "new").iterdir()] == ["0.host"]
    assert [path.name for path in (maildir / "cur").iterdir()] == ["1.host:2,S"]


@pytest.mark.timeout(5)
def test_a_fifo_in_new_is_named_and_left_there(sqlite_url: str, tmp_path: Path) -> None:
    # Its open waited for a writer that never came: the run hung, and every run after it.
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    os.mkfifo(maildir / "new" / "0.host")
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_NOINPUT
    assert log.getvalue().splitlines() == [
        f"{maildir}/new/0.host: not a regular file",
        f"{maildir}/new/1.host: stored: report 'g' from 'Google Inc.'",
    ]
    assert [path.name for path in (maildir / "new").iterdir()] == ["0.host"]


def test_a_message_taken_by_another_reader_meanwhile(
    sqlite_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    ingest = mail.ingest

    def and_taken(intake: Intake, data: bytes, name: str, log: TextIO) -> int:
        result = ingest(intake, data, name, log)
        os.replace(name, maildir / "cur" / "1.host:2,S")  # the other reader
        return result

    monkeypatch.setattr(mail, "ingest", and_taken)
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_OK
    assert log.getvalue() == f"{maildir}/new/1.host: stored: report 'g' from 'Google Inc.'\n"
    assert [path.name for path in (maildir / "cur").iterdir()] == ["1.host:2,S"]


def test_a_message_that_cannot_be_moved_stops_the_run(sqlite_url: str, tmp_path: Path) -> None:
    maildir = maildir_with(tmp_path, "new", "cur", "tmp")
    (maildir / "cur" / "1.host:2,S").mkdir()  # in the way
    log = io.StringIO()
    assert _ingest(sqlite_url, maildir=str(maildir), log=log) == EX_DATAERR
    assert log.getvalue().splitlines()[-1] == (
        f"{maildir}/new/1.host: not moved to {maildir}/cur: Is a directory"
    )
    assert [path.name for path in (maildir / "new").iterdir()] == ["1.host"]


def test_too_large_a_message(sqlite_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("mtasts_host.reports.mail.MAX_MESSAGE_SIZE", 100)
    assert _ingest(sqlite_url, stdin=b"x" * 200) == EX_DATAERR


def _ingest(
    url: str,
    *,
    stdin: bytes = b"",
    files: list[str] | None = None,
    maildir: str | None = None,
    log: io.StringIO | None = None,
) -> int:
    return ingest_command(
        ReportsSettings(url),
        files=files or (),
        maildir=maildir,
        stdin=io.BytesIO(stdin),
        log=log or io.StringIO(),
    )


def test_intake_counts_for_mail_too(sqlite_url: str) -> None:
    taken = intake(sqlite_url)
    taken.accept(encode(report()))  # the day before the tests' clock
    assert taken.outcomes == {"stored": 1}


def test_a_report_from_the_future_is_a_data_error(sqlite_url: str) -> None:
    document = report(day=recent() + 3, report_id="f")
    data = message((encode(document), "application/tlsrpt+gzip", "f.json.gz"))
    log = io.StringIO()
    assert _ingest(sqlite_url, stdin=data, log=log) == EX_DATAERR
    end = document["date-range"]["end-datetime"]
    assert (
        log.getvalue()
        == f"<stdin>: bad report: the report ends more than a day from now, at {end}\n"
    )


def _run_ingest(tmp_path: Path, store: str, argv: list[str], stdin: bytes) -> tuple[int, str]:
    """``mtasts-host reports ingest`` as a mail filter runs it: its own process, a pipe."""
    config = tmp_path / "config.yaml"
    config.write_text(
        f"domains:\n  example.com: {{mode: testing, mx: mail.example.com}}\n"
        f"reports: {{store: '{store}'}}\n"
    )
    command = [sys.executable, "-m", "mtasts_host", "reports", "ingest", "--config", str(config)]
    completed = subprocess.run(
        [*command, *argv], input=stdin, capture_output=True, check=False, timeout=60
    )
    return completed.returncode, completed.stderr.decode()


def test_a_store_outage_and_a_rejected_report_are_one_line_each(tmp_path: Path) -> None:
    # Python's last-resort handler printed the intake's log line before the command's own.
    outage = f"sqlite:///{tmp_path / 'no-such-directory' / 'r.db'}"
    data = encode(report(day=recent(), report_id="r1"))
    status, said = _run_ingest(tmp_path, outage, ["-"], data)
    assert (status, said.count("\n")) == (EX_TEMPFAIL, 1)
    assert said.startswith("<stdin>: report store unavailable: ")
    store = f"sqlite:///{tmp_path / 'r.db'}"
    bad = encode({"report-id": "x"}, compress=False)
    status, said = _run_ingest(tmp_path, store, [], bad)
    assert (status, said) == (EX_DATAERR, "<stdin>: bad report: organization-name: missing\n")
    status, said = _run_ingest(tmp_path, store, [], b"Subject: hello\r\n\r\nno report\r\n")
    expected = "<stdin>: no TLS report (application/tlsrpt+gzip or +json) found\n"
    assert (status, said) == (EX_DATAERR, expected)


@pytest.mark.parametrize("form", ["json", "gzip", "message"])
def test_a_file_named_dash_is_standard_input(tmp_path: Path, form: str) -> None:
    document = report(day=recent(), report_id="piped")
    data = {
        "json": encode(document, compress=False),
        "gzip": encode(document),
        "message": message((encode(document), "application/tlsrpt+gzip", "r.json.gz")),
    }[form]
    store = f"sqlite:///{tmp_path / 'r.db'}"
    other = tmp_path / "other.json"
    other.write_bytes(encode(report(day=recent(), report_id="file"), compress=False))
    status, said = _run_ingest(tmp_path, store, [str(other), "-"], data)
    assert (status, said.splitlines()) == (
        EX_OK,
        [
            f"{other}: stored: report 'file' from 'Google Inc.'",
            "<stdin>: stored: report 'piped' from 'Google Inc.'",
        ],
    )
    status, said = _run_ingest(tmp_path, store, ["-"], data)
    assert (status, said) == (
        EX_OK,
        "<stdin>: duplicate, already stored: report 'piped' from 'Google Inc.'\n",
    )
