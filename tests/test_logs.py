"""Log lines: formats, fields, and untrusted values that must not forge lines."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from mtasts_host import create_app
from mtasts_host.logs import ACCESS_LOGGER, JSONFormatter, TextFormatter, log_access

from .conftest import BODY_D, CONFIG_D, WriteConfig, wait_until
from .processes import free_port, running, serve_argv
from .rawhttp import POLICY_PATH, raw_request

HOSTILE_UA = b'x" level=error event="forged\\n" \t\xff\xfe'


def record(message: str, **fields: object) -> logging.LogRecord:
    entry = logging.LogRecord("mtasts_host.access", logging.INFO, __file__, 1, message, (), None)
    entry.fields = fields
    return entry


def test_text_quotes_strings() -> None:
    line = TextFormatter().format(record("request", host='a"\nb', status=200, domain=None))
    assert line.endswith(
        ' INFO    mtasts_host.access: request host="a\\"\\nb" status=200 domain=None'
    )
    assert "\n" not in line


@pytest.mark.parametrize(
    ("logger", "message", "value", "shown"),
    [
        pytest.param(
            "uvicorn.error",
            '%s:0 - "WebSocket %s" 403',
            ("evil\x85" + "2026-11-30T11:35:34.208Z CRITICAL x: forged", "/"),
            'evil\\x852026-11-30T11:35:34.208Z CRITICAL x: forged:0 - "WebSocket /" 403',
            id="uvicorn-client-from-x-forwarded-for",  # U+0085: a line break to many readers
        ),
        pytest.param(
            "mtasts_host.doctor.background",
            "doctor: %s",
            ("example.com: fail: mx-tls: refuses the session: 554 mx\rforged \x1b[2J",),
            "doctor: example.com: fail: mx-tls: refuses the session: 554 mx\\rforged \\x1b[2J",
            id="doctor-quoting-an-smtp-reply",
        ),
    ],
)
def test_text_escapes_what_is_not_printable_in_the_event(
    logger: str, message: str, value: tuple[str, ...], shown: str
) -> None:
    entry = logging.LogRecord(logger, logging.INFO, __file__, 1, message, value, None)
    line = TextFormatter().format(entry)
    assert line.endswith(f" INFO    {logger}: {shown}")
    assert len(line.splitlines()) == 1


def test_json_is_one_object_per_line() -> None:
    line = JSONFormatter().format(record("request", user_agent='a\n"b\u2028', bytes=5))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["level"] == "info"
    assert entry["event"] == "request"
    assert entry["logger"] == "mtasts_host.access"
    assert entry["user_agent"] == 'a\n"b\u2028'
    assert entry["time"].endswith("Z")


def request(port: int, host: bytes, user_agent: bytes) -> bytes:
    return raw_request(
        port,
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: "
        + host
        + b"\r\nUser-Agent: "
        + user_agent
        + b"\r\nConnection: close\r\n\r\n",
    )


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_access_log_of_a_real_server(
    write_config: WriteConfig, tmp_path: Path, log_format: str
) -> None:
    port = free_port()
    argv = serve_argv(write_config(), port, "--log-format", log_format)
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        assert request(port, b"mta-sts.example.com", b"postfix-mta-sts-resolver").endswith(BODY_D)
        request(port, b'mta-sts.evil"\xff.test', HOSTILE_UA)
    lines = server.output().splitlines()
    access = [line for line in lines if "mtasts_host.access" in line]
    assert len(access) == 2
    if log_format == "json":
        entries = [json.loads(line) for line in lines]  # every line, uvicorn's included
        good, evil = (e for e in entries if e["logger"] == "mtasts_host.access")
        assert good["domain"] == "example.com"
        assert (good["status"], good["bytes"]) == (200, len(BODY_D))
        assert good["user_agent"] == "postfix-mta-sts-resolver"
        assert good["duration_ms"] >= 0
        assert evil["domain"] is None
        assert evil["status"] == 404
        assert evil["user_agent"] == HOSTILE_UA.decode("utf-8", "backslashreplace")
        assert evil["event"] == "request"
    else:
        good_line, evil_line = access
        assert ' domain="example.com" ' in good_line
        assert ' user_agent="postfix-mta-sts-resolver" ' in good_line
        assert " status=404 " in evil_line
        assert "\t" not in evil_line
        assert evil_line.isascii()  # \xff and \xfe are escaped, not written raw
        assert evil_line.count(" level=error") == 1  # only inside the quoted value
        assert 'user_agent="x\\" level=error event=\\"forged' in evil_line


def test_no_access_log(write_config: WriteConfig, tmp_path: Path) -> None:
    port = free_port()
    argv = serve_argv(write_config(), port, "--no-access-log")
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        assert request(port, b"mta-sts.example.com", b"x").endswith(BODY_D)
    assert "mtasts_host.access" not in server.output()
    assert "Uvicorn running" in server.output()


def test_client_values_are_utf8_where_they_are_and_cut_to_a_readable_size(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = "mta-sts.bücher.example".encode()
    scope = {
        "method": "GET",
        "path": "/" + "p" * 5000,
        "query_string": b"q" * 5000,
        "headers": [(b"host", host), (b"user-agent", b"\x80" * 1_000_000)],
        "client": ("c" * 5000, 0),  # from X-Forwarded-For
    }
    with caplog.at_level(logging.INFO, logger="mtasts_host.access"):
        log_access(scope, 0.0, 404, 0, None)
    fields = caplog.records[0].fields  # type: ignore[attr-defined]
    assert fields["host"] == "mta-sts.bücher.example"
    assert fields["user_agent"] == "\\x80" * 256 + "... (1000000 bytes)"
    assert fields["path"] == "/" + "p" * 255 + "... (5001 characters)"
    assert fields["query"] == "q" * 256 + "... (5000 bytes)"
    assert fields["client"] == "c" * 256 + "... (5000 characters)"
    assert len(JSONFormatter().format(caplog.records[0])) < 3_000


def test_a_head_logs_no_body_bytes(
    write_config: WriteConfig, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(write_config(), watch=False)
    with TestClient(app, base_url="http://10.0.0.7") as client, caplog.at_level(logging.INFO):
        assert client.head("/readyz").status_code == 200
        assert client.head(POLICY_PATH, headers={"host": "mta-sts.example.com"}).status_code == 200
    lines = [r for r in caplog.records if r.name == ACCESS_LOGGER]
    assert [line.fields["bytes"] for line in lines] == [0, 0]  # type: ignore[attr-defined]


def test_changes_in_the_config_directory_log_no_lines_of_their_own(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # The log file is in the config's directory here: each line written is a change there.
    port = free_port()
    path = write_config()
    with running(serve_argv(path, port), tmp_path / "server.log", "127.0.0.1", port) as server:
        (tmp_path / "unrelated.txt").write_text("x")
        path.write_text(CONFIG_D.replace("604800", "1209600"))
        wait_until(lambda: "reloaded" in server.output())
        assert request(port, b"mta-sts.example.com", b"x").endswith(b"max_age: 1209600\r\n")
    assert "watchfiles" not in server.output()
