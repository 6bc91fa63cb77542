"""
``mtasts_host.asgi:app`` under other ASGI servers: configured from the environment, with the
same policy rules (RFC 8461 section 3.3: a plain 200 or nothing) and the same reloading.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import subprocess
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import pytest

from mtasts_host.reports.rows import DAY

from .conftest import BODY_D, CONFIG_D, INVALID_CONFIG, WriteConfig, wait_until
from .processes import PYTHON, free_port, granian_argv, running
from .rawhttp import POLICY_PATH, raw_request, serves
from .reports.conftest import encode, report

SERVERS: dict[str, Callable[[int], list[str]]] = {
    "uvicorn": lambda port: [PYTHON, "-m", "uvicorn", "mtasts_host.asgi:app", "--port", str(port)],
    "granian": granian_argv,
    "hypercorn": lambda port: [
        PYTHON,
        "-m",
        "hypercorn",
        "--bind",
        f"127.0.0.1:{port}",
        # The worker in hypercorn's own process: with a spawned worker (its default),
        # hypercorn 0.18 exits 0 whatever status the worker ended with.
        "--workers",
        "0",
        "mtasts_host.asgi:app",
    ],
}
# The status each server exits with when the import ends the process (bad config, bad
# variable): granian's main process exits 1 whenever its worker ends unexpectedly.
EXIT_STATUSES = {"uvicorn": (1, 2), "granian": (1, 1), "hypercorn": (1, 2)}


def request(port: int, method: str, path: str, host: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request(method, path, headers={"Host": host, "X-Forwarded-Proto": "http"})
    response = connection.getresponse()
    response.read()
    connection.close()
    return response


def whole_policy(port: int, **headers: str) -> tuple[int, str | None, str | None, bytes]:
    """GET the policy of mta-sts.example.com: status, Content-Type, Content-Length, body."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", POLICY_PATH, headers={"Host": "mta-sts.example.com", **headers})
        response = connection.getresponse()
        body = response.read()
        return (
            response.status,
            response.getheader("content-type"),
            response.getheader("content-length"),
            body,
        )
    finally:
        connection.close()


@pytest.mark.parametrize("server", SERVERS)
def test_policy_rules_and_reload(server: str, write_config: WriteConfig, tmp_path: Path) -> None:
    config = write_config()
    port = free_port()
    env = {"MTASTS_HOST_CONFIG": str(config)}
    with running(SERVERS[server](port), tmp_path / "server.log", "127.0.0.1", port, env=env) as p:
        # The notes' tests 1, 17 and 18: the whole policy as a plain 200, whatever the request
        # asks of the server.
        policy = (200, "text/plain; charset=utf-8", str(len(BODY_D)), BODY_D)
        for headers in (
            {},
            {"Range": "bytes=0-5"},
            {"If-None-Match": "*"},
            {"If-Modified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"},
            {"If-Match": '"x"'},
        ):
            assert whole_policy(port, **headers) == policy, headers
        head = request(port, "HEAD", POLICY_PATH, "mta-sts.example.com")
        assert (head.status, head.getheader("content-length")) == (200, str(len(BODY_D)))
        refused = request(port, "POST", POLICY_PATH, "mta-sts.example.com")
        assert (refused.status, refused.getheader("allow")) == (405, "GET, HEAD")
        assert request(port, "GET", POLICY_PATH + "/", "mta-sts.example.com").status == 404
        assert request(port, "GET", POLICY_PATH, "mta-sts.unknown.test").status == 404
        assert request(port, "GET", "/healthz", "10.0.0.7").status == 200
        # A bad edit keeps the policy; a good one is served, without a restart.
        config.write_text(INVALID_CONFIG)
        wait_until(lambda: "rejected, still serving the last good policies" in p.output())
        assert serves(port, BODY_D)
        config.write_text(CONFIG_D.replace("enforce", "testing"))
        wait_until(partial(serves, port, BODY_D.replace(b"enforce", b"testing")))
        # mtasts-host's own lines, as under serve: the reload names the id to publish.
        wait_until(lambda: "mtasts_host.reload: reloaded" in p.output())
    assert "mtasts_host.access: request " in p.output()
    assert "Traceback" not in p.output()


# A policy request in HTTP/1.1 without Host (README, "What is served"): uvicorn passes it on
# (the app's 400), h11 under hypercorn refuses it itself, granian makes it an empty Host.
NO_HOST_STATUSES = {"uvicorn": b"400", "granian": b"404", "hypercorn": b"400"}


@pytest.mark.parametrize("server", SERVERS)
def test_a_request_without_host(server: str, write_config: WriteConfig, tmp_path: Path) -> None:
    port = free_port()
    env = {"MTASTS_HOST_CONFIG": str(write_config())}
    request = f"GET {POLICY_PATH} HTTP/1.1\r\nConnection: close\r\n\r\n".encode()
    with running(SERVERS[server](port), tmp_path / "server.log", "127.0.0.1", port, env=env):
        status = raw_request(port, request).split(b"\r\n", 1)[0]
    assert status.split(b" ")[1] == NO_HOST_STATUSES[server], status


@pytest.mark.parametrize(
    ("server", "option"),
    [
        ("granian", ["--url-path-prefix", "/"]),  # a root path of "/"
        ("hypercorn", ["--root-path", "/tls"]),  # a root path the intake's path starts with
    ],
)
def test_the_intake_under_a_root_path(
    server: str, option: list[str], write_config: WriteConfig, tmp_path: Path
) -> None:
    # It was a 404: the root path was cut off the front of "/tlsrpt" without a "/" after it.
    store = f"sqlite:///{tmp_path / 'reports.db'}"
    config = write_config(CONFIG_D + f"reports: {{store: '{store}'}}\n")
    port = free_port()
    argv = [*SERVERS[server](port)[:-1], *option, "mtasts_host.asgi:app"]
    env = {"MTASTS_HOST_CONFIG": str(config)}
    # Yesterday's report: the server takes the real date, where the fixtures fix one.
    body = encode(report(day=int(time.time() // DAY) - 1))
    with (
        running(argv, tmp_path / "server.log", "127.0.0.1", port, env=env),
        contextlib.closing(http.client.HTTPConnection("127.0.0.1", port, timeout=10)) as http_,
    ):
        http_.request("POST", "/tlsrpt", body, headers={"Host": "tlsrpt.example.com"})
        response = http_.getresponse()
        assert (response.status, response.read()) == (201, b"stored\n")


def load(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Import the module as a server would, in a process of its own."""
    return subprocess.run(
        [PYTHON, "-c", "import mtasts_host.asgi"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_a_bad_config_is_one_line_as_with_serve(write_config: WriteConfig) -> None:
    path = write_config(INVALID_CONFIG)
    result = load({"MTASTS_HOST_CONFIG": str(path)})
    assert (result.returncode, result.stdout) == (1, "")
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"{path}:")
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "mtasts-host: error: no configuration file: set MTASTS_HOST_CONFIG"),
        (
            {"MTASTS_HOST_WATCH": "perhaps"},
            "mtasts-host: error: MTASTS_HOST_WATCH: expected one of 1, true, yes, on, 0, false, "
            "no, off, got 'perhaps'",
        ),
    ],
)
def test_a_bad_variable_is_a_usage_error(
    env: dict[str, str], message: str, write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MTASTS_HOST_CONFIG", raising=False)
    if env:
        env = {"MTASTS_HOST_CONFIG": str(write_config()), **env}
    result = load(env)
    assert (result.returncode, result.stderr) == (2, message + "\n")


def test_importing_the_package_reads_no_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [PYTHON, "-c", "import mtasts_host, mtasts_host.cli, mtasts_host.app"],
        env={**os.environ, "MTASTS_HOST_CONFIG": str(tmp_path / "absent.yaml")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, "")


def test_auto_publish_is_said_to_be_serves_alone(write_config: WriteConfig) -> None:
    path = write_config(CONFIG_D + "publish: {command: 'true', auto: true}\n")
    result = subprocess.run(
        [PYTHON, "-c", "import mtasts_host.asgi"],
        env={**os.environ, "MTASTS_HOST_CONFIG": str(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0
    assert "publish.auto is acted on by 'mtasts-host serve' alone" in result.stderr


@pytest.mark.parametrize("server", SERVERS)
def test_a_bad_config_or_variable_ends_each_server_with_a_failure(
    server: str, write_config: WriteConfig
) -> None:
    bad_config = {"MTASTS_HOST_CONFIG": str(write_config(INVALID_CONFIG, name="bad.yaml"))}
    bad_variable = {"MTASTS_HOST_CONFIG": str(write_config()), "MTASTS_HOST_WATCH": "perhaps"}
    statuses = []
    for env in (bad_config, bad_variable):
        result = subprocess.run(
            SERVERS[server](free_port()),
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert "Traceback" not in result.stderr
        statuses.append(result.returncode)
    assert tuple(statuses) == EXIT_STATUSES[server]
