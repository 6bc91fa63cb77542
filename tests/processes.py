"""Real processes for the tests: start one, wait until it listens, stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import pytest

PYTHON = sys.executable
STARTUP_TIMEOUT = 20.0


def missing(what: str, package: str) -> NoReturn:
    """
    Stop a test for want of a program: skipped on a developer's machine, failed in CI, where
    ``scripts/test`` installs every one.
    """
    message = f"{what} is not installed (Debian package {package})"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


_SBIN = os.pathsep.join(("/usr/local/sbin", "/usr/sbin", "/sbin"))


def need(program: str, package: str) -> str:
    """
    The path of ``program``, looked for in the sbin directories too (named, keymgr and
    tsig-keygen live there, outside a user's usual PATH); see ``missing`` for when it is
    not installed.
    """
    found = shutil.which(program) or shutil.which(program, path=_SBIN)
    if found is None:
        missing(program, package)
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A port free on ``host`` for TCP and for UDP: the DNS servers of the tests take both,
    and a UDP socket (a lookup's, anywhere) may hold a number the TCP side has free."""
    for _ in range(100):
        with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            tcp.bind((host, 0))
            port: int = tcp.getsockname()[1]
            try:
                udp.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no port free for both TCP and UDP on {host}")


def wait_for_port(
    host: str,
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


def wait_for_answer(
    host: str,
    port: int,
    process: subprocess.Popen[bytes] | None = None,
    timeout: float = STARTUP_TIMEOUT,
) -> None:
    """
    Wait until an HTTP server on ``host:port`` answers a request: ``mtasts-host serve``
    listens before its file has loaded, and answers the connections of meanwhile after.
    """
    deadline = time.monotonic() + timeout
    wait_for_port(host, port, process, timeout)
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no answer from {host}:{port}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), left) as sock:
            sock.sendall(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
            if sock.recv(5) == b"HTTP/":
                return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before answering")
        time.sleep(0.05)


def _serves(argv: Sequence[str]) -> bool:
    """Whether ``argv`` runs ``mtasts-host serve``, which listens before its file loads."""
    return "serve" in argv and any(Path(a).name in ("mtasts_host", "mtasts-host") for a in argv)


def _wait_until_serving(process: Process) -> None:
    """Until uvicorn says it runs: the file loaded and everything beside it started."""
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not logged(process, "Uvicorn running on"):
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"not serving:\n{process.output()}")
        time.sleep(0.05)


@dataclass
class Process:
    process: subprocess.Popen[bytes]
    log: Path
    host: str
    port: int

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        return self.process.returncode


@contextlib.contextmanager
def running(
    argv: Sequence[str],
    log: Path,
    host: str,
    port: int,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> Iterator[Process]:
    """Start a process that listens on host:port; stop it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            cwd=cwd,
        )
    server = Process(process, log, host, port)
    try:
        wait_for_port(host, port, process)
        if _serves(argv):
            _wait_until_serving(server)
        yield server
    finally:
        server.stop()


@contextlib.contextmanager
def running_on_socket(argv: Sequence[str], log: Path, path: Path) -> Iterator[Process]:
    """Start a server that listens on a Unix socket; stop it afterwards."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
    server = Process(process, log, str(path), 0)
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        # The file alone is not enough: it is there from the bind, a moment before the
        # listen.
        while not _accepts(path):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {path}")
            time.sleep(0.05)
        if _serves(argv):
            _wait_until_serving(server)
        yield server
    finally:
        server.stop()


def _accepts(path: Path) -> bool:
    """Whether a server listens on the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def uds_argv(config: Path, path: Path) -> list[str]:
    """The command line of ``mtasts-host serve`` on the Unix socket ``path``."""
    return [PYTHON, "-m", "mtasts_host", "serve", "--config", str(config), "--uds", str(path)]


def serve_argv(config: Path, port: int, *extra: str) -> list[str]:
    """The command line of ``mtasts-host serve`` on 127.0.0.1:port (the benchmark's too)."""
    return [
        PYTHON,
        "-m",
        "mtasts_host",
        "serve",
        "--config",
        str(config),
        "--port",
        str(port),
        *extra,
    ]


def granian_argv(port: int) -> list[str]:
    """``mtasts_host.asgi:app`` under granian on 127.0.0.1:port, one worker, as serve runs."""
    return [
        str(Path(PYTHON).parent / "granian"),
        "--interface",
        "asgi",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-ws",
        "--log-level",
        "warning",
        "mtasts_host.asgi:app",
    ]


def logged(process: Process, text: str, times: int = 1) -> bool:
    """Whether the process's output holds ``text`` at least ``times`` times."""
    return process.output().count(text) >= times
