"""
Log lines written by a thread of their own: a real ``mtasts-host serve`` whose stderr is a
pipe nobody reads keeps answering, drops lines and counts them, and says so once read again.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import socket
import subprocess
import threading
from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from mtasts_host import create_app, logs
from mtasts_host._logwriter import QUEUED

from .conftest import BODY_D, WriteConfig, wait_until
from .processes import PYTHON, free_port, serve_argv, wait_for_answer
from .rawhttp import POLICY_PATH, http_get

POLICY = (
    f"GET {POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\nUser-Agent: test\r\n\r\n"
).encode()
BATCH = 500
"""Requests sent at once on one connection (pipelined)."""
ANSWER = 10.0
"""Seconds a batch gets to be answered: a server held up by its log never answers it."""


def answered(sock: socket.socket, count: int) -> bytes:
    """Send ``count`` policy requests at once and read their answers."""
    sock.sendall(POLICY * count)
    data = b""
    while data.count(b"HTTP/1.1 200 OK\r\n") < count or not data.endswith(BODY_D):
        chunk = sock.recv(1 << 20)
        assert chunk, "connection closed"
        data += chunk
    return data


def dropped(port: int) -> int | None:
    """``mtasts_log_lines_dropped_total`` as /metrics gives it, None if it is not there."""
    status, body = http_get(port, host="localhost", path="/metrics")
    assert status == 200
    found = re.search(rb"^mtasts_log_lines_dropped_total (\S+)$", body, re.M)
    return None if found is None else int(float(found[1]))


class Server:
    def __init__(self, process: subprocess.Popen[bytes], port: int, log_format: str) -> None:
        self.process = process
        self.port = port
        self.log_format = log_format
        self.read = b""
        self._reader: threading.Thread | None = None

    def resume_reading(self) -> None:
        assert self.process.stderr is not None
        stream = self.process.stderr

        def read() -> None:
            while chunk := os.read(stream.fileno(), 1 << 16):
                self.read += chunk

        self._reader = threading.Thread(target=read)
        self._reader.start()

    def lines(self) -> list[str]:
        return self.read.decode().splitlines()

    def stop(self) -> int:
        """SIGTERM, then the whole of stderr read."""
        self.process.send_signal(signal.SIGTERM)
        status = self.process.wait(20)
        assert self._reader is not None
        self._reader.join(10)
        return status

    def access_lines(self) -> list[str]:
        if self.log_format == "json":  # each line one object, the writer's own included
            return [line for line in self.lines() if json.loads(line)["event"] == "request"]
        return [line for line in self.lines() if " mtasts_host.access: request " in line]

    def drop_counts(self) -> list[int]:
        """The counts of the lines that say lines were dropped."""
        found = re.findall(r"(\d+) log lines dropped: stderr was not read", self.read.decode())
        return [int(count) for count in found]


@pytest.fixture
def server(write_config: WriteConfig, request: pytest.FixtureRequest) -> Iterator[Server]:
    """``mtasts-host serve`` with its stderr a pipe that the test reads only when it says."""
    log_format: str = getattr(request, "param", "text")
    port = free_port()
    argv = serve_argv(write_config(), port, "--log-format", log_format)
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        wait_for_answer("127.0.0.1", port, process)
        yield Server(process, port, log_format)
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


@pytest.mark.parametrize("server", ["text", "json"], indirect=True)
def test_a_log_reader_that_stalls_never_stops_serving(server: Server) -> None:
    requests = 1  # the fixture's, which waited for an answer
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER) as sock:
        # The pipe holds 64 KiB, the queue QUEUED lines: past both, lines are dropped.
        while True:
            answered(sock, BATCH)
            lost = dropped(server.port)
            requests += BATCH + 1
            if lost:
                break
            assert requests < 5 * QUEUED, "no line dropped"
        server.resume_reading()
        wait_until(server.drop_counts, timeout=ANSWER)
        assert sum(server.drop_counts()) >= lost
        answered(sock, BATCH)  # and lines again
        requests += BATCH
    assert server.stop() == -signal.SIGTERM
    # Every line was written or counted, the last ones included; the count said in lines.
    assert len(server.access_lines()) + sum(server.drop_counts()) == requests
    assert "Finished server process" in server.lines()[-1]


def test_sigterm_writes_the_last_lines(server: Server) -> None:
    server.resume_reading()
    with socket.create_connection(("127.0.0.1", server.port), timeout=ANSWER) as sock:
        answered(sock, 2 * BATCH)
    assert server.stop() == -signal.SIGTERM  # at once: lines still wait in the queue
    assert len(server.access_lines()) == 1 + 2 * BATCH  # the fixture's request too
    assert server.drop_counts() == []
    assert "uvicorn.error: Finished server process" in server.lines()[-1]


@pytest.mark.parametrize(
    ("broken", "lost"),
    [
        ("closed pipe", BATCH),  # every line fails with EPIPE: counted
        ("no stderr", 0),  # 2>&-: the lines go to /dev/null, put in its place
    ],
)
def test_a_broken_stderr_never_stops_serving(
    write_config: WriteConfig, broken: str, lost: int
) -> None:
    port = free_port()
    argv = serve_argv(write_config(), port)
    if broken == "no stderr":
        argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", *argv]
    read, write = os.pipe()
    process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=write, stderr=write)
    os.close(write)
    os.close(read)  # stdout too: its reader gone, as a log collector's that ended
    try:
        wait_for_answer("127.0.0.1", port, process)
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER) as sock:
            answered(sock, BATCH)
        wait_until(lambda: (dropped(port) or 0) >= lost, timeout=ANSWER)
        assert (dropped(port) == 0) == (lost == 0)
    finally:
        process.send_signal(signal.SIGTERM)
        status = process.wait(20)
    assert status == -signal.SIGTERM


def test_an_embedded_app_starts_no_writer(write_config: WriteConfig) -> None:
    # The host's logging is the host's: no handler, no thread, no metric of ours.
    with TestClient(create_app(write_config(), watch=False)) as client:
        assert client.get(POLICY_PATH, headers={"host": "mta-sts.example.com"}).content == BODY_D
        assert "mtasts_log_lines_dropped" not in client.get("/metrics").text
    assert logs.dropped() is None
    assert logging.getLogger("mtasts_host").handlers == []
    assert [t for t in threading.enumerate() if t.name == "mtasts-host log"] == []


def test_under_another_asgi_server_a_stalled_reader_never_stops_serving(
    write_config: WriteConfig,
) -> None:
    # uvicorn's own lines (its access log off) are uvicorn's; ours go through a writer.
    port = free_port()
    argv = [PYTHON, "-m", "uvicorn", "mtasts_host.asgi:app", "--port", str(port)]
    argv.append("--no-access-log")
    env = {**os.environ, "MTASTS_HOST_CONFIG": str(write_config())}
    process = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    try:
        wait_for_answer("127.0.0.1", port, process)
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER) as sock:
            for _ in range(QUEUED // BATCH + 4):
                answered(sock, BATCH)
        assert (dropped(port) or 0) > 0
    finally:
        process.kill()
        process.wait(10)
        assert process.stderr is not None
        process.stderr.close()


def test_an_error_printed_comes_after_the_lines_logged_before(write_config: WriteConfig) -> None:
    argv = serve_argv(write_config(), free_port(), "--doctor-interval", "1m")
    argv += ["--ca-file", "/nonexistent/ca.pem"]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
    assert done.returncode == 2
    serving, error = done.stderr.decode().splitlines()
    assert " INFO    mtasts_host.app: serving " in serving
    assert error == "mtasts-host: error: --ca-file /nonexistent/ca.pem: No such file or directory"


FORKED = """
import logging, os
from mtasts_host import logs
logs.attach()
log = logging.getLogger("mtasts_host.test")
log.info("before the fork")
logs.flush_all()
child = os.fork()
log.info("in the child" if child == 0 else "in the parent")
if child == 0:
    logging.shutdown()
    os._exit(0)
os.waitpid(child, 0)
"""


def test_a_forked_worker_writes_its_lines() -> None:
    # As a server that imports the app, then forks its workers (gunicorn --preload).
    done = subprocess.run([PYTHON, "-c", FORKED], capture_output=True, timeout=60, check=True)
    events = [line.split(": ", 1)[1] for line in done.stderr.decode().splitlines()]
    assert sorted(events) == ["before the fork", "in the child", "in the parent"]
