"""Reliability of a real server under load, reloads, hostile traffic and shutdown. Every loop
here ends on an event, and every wait for one is bounded in time."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from functools import partial
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from mtasts_host import create_app

from .conftest import BODY_D, CONFIG_D, INVALID_CONFIG, WriteConfig, wait_until
from .processes import Process, free_port, logged, running, serve_argv
from .rawhttp import http_get, raw_request, read_response, serves

REQUEST = (
    b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
    b"User-Agent: reliability\r\n\r\n"
)


def version(i: int) -> tuple[str, bytes]:
    max_age = 700000 + i
    return (
        CONFIG_D.replace("max_age: 604800", f"max_age: {max_age}"),
        BODY_D.replace(b"604800", str(max_age).encode()),
    )


async def _client(
    port: int, stop: threading.Event, bodies: set[bytes], failures: list[str]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while not stop.is_set():  # set once the rewrites are done, each bounded by wait_until
            writer.write(REQUEST)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            if not head.startswith(b"HTTP/1.1 200 "):
                failures.append(head.decode("latin-1"))
                break
            length = next(
                int(line.split(b":")[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            bodies.add(await asyncio.wait_for(reader.readexactly(length), 10))
    except (TimeoutError, OSError, asyncio.IncompleteReadError) as exc:
        failures.append(repr(exc))
    finally:
        stop.set()  # a client that fails ends the test rather than leave the others waiting
        writer.close()


def all_received(bodies: list[set[bytes]], body: bytes, stop: threading.Event) -> bool:
    return stop.is_set() or all(body in received for received in bodies)


def test_fifty_rewrites_under_32_busy_connections(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    path = write_config(version(0)[0])
    port = free_port()
    stop = threading.Event()
    bodies: list[set[bytes]] = [set() for _ in range(32)]  # what each connection received
    failures: list[str] = []
    last_valid = 0

    def rewrite(server: Process) -> None:
        nonlocal last_valid
        try:
            for i in range(1, 51):
                if stop.is_set():  # a client failed: the test has failed already
                    break
                tmp = path.with_name("next.yaml")
                if i % 2:  # odd: an invalid file, which must change nothing
                    tmp.write_text(INVALID_CONFIG)
                    os.replace(tmp, path)
                    wait_until(partial(logged, server, "rejected", (i + 1) // 2), 10)
                else:
                    text, body = version(i)
                    tmp.write_text(text)
                    os.replace(tmp, path)
                    wait_until(partial(serves, port, body), 10)
                    # every busy connection is answered with the new policy, too
                    wait_until(partial(all_received, bodies, body, stop), 10)
                    last_valid = i
        finally:
            stop.set()

    async def load() -> None:
        clients = [_client(port, stop, received, failures) for received in bodies]
        await asyncio.wait_for(asyncio.gather(*clients), 120)

    with running(
        serve_argv(path, port, "--no-access-log"), tmp_path / "s.log", "127.0.0.1", port
    ) as server:
        writer = threading.Thread(target=rewrite, args=(server,))
        writer.start()
        asyncio.run(load())
        writer.join(120)
        final = http_get(port)
    assert failures == []
    assert last_valid == 50
    expected = {version(i)[1] for i in range(0, 51, 2)}
    for received in bodies:
        # every policy served since the first rewrite, and never a torn or mixed body
        assert received >= expected - {version(0)[1]}
        assert received <= expected
    assert final == (200, version(50)[1])
    assert server.output().count("rejected") == 25
    assert "Traceback" not in server.output()


# -- hostile traffic, property-based, through the whole ASGI stack ----------------------------

_text = st.text(st.characters(min_codepoint=0, max_codepoint=0x2FFF), max_size=80)
_hosts = st.one_of(
    _text,
    st.sampled_from(["mta-sts.example.com", "MTA-STS.EXAMPLE.COM.", "mta-sts.", "[::1]", ""]),
    _text.map(lambda t: "mta-sts." + t),
    _text.map(lambda t: "mta-sts.example.com:" + t),
)
_paths = st.one_of(
    st.sampled_from(["/.well-known/mta-sts.txt", "/healthz", "/readyz", "/metrics", "/"]),
    _text.map(lambda t: "/" + t),
    st.sampled_from(["/tls-allowed"]).flatmap(lambda p: _text.map(lambda t: f"{p}?domain={t}")),
)
_methods = st.sampled_from(["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH", "XYZ"])
_header_bytes = st.binary(max_size=200).filter(lambda b: b"\r" not in b and b"\n" not in b)


@pytest.fixture(scope="module")
def hostile_client(tmp_path_factory: pytest.TempPathFactory) -> TestClient:
    path = tmp_path_factory.mktemp("hostile") / "config.yaml"
    path.write_text(CONFIG_D)
    return TestClient(create_app(path, watch=False), raise_server_exceptions=True)


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    host=_hosts,
    path=_paths,
    method=_methods,
    extra=st.lists(
        st.tuples(
            st.sampled_from(
                [b"user-agent", b"if-none-match", b"range", b"x-forwarded-host", b"host"]
            ),
            _header_bytes,
        ),
        max_size=3,
    ),
)
def test_hostile_requests_never_fail(
    hostile_client: TestClient,
    caplog: pytest.LogCaptureFixture,
    host: str,
    path: str,
    method: str,
    extra: list[tuple[bytes, bytes]],
) -> None:
    caplog.set_level(logging.WARNING)
    headers = [(b"host", host.encode("utf-8", "surrogatepass")), *extra]
    try:
        request = hostile_client.build_request(method, path, headers=headers)
    except Exception:  # building the request never calls the app: the client refused it
        return
    response = hostile_client.send(request)  # an exception in the app would propagate here
    assert response.status_code < 500
    assert response.headers.get("location") is None
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]


# -- slow, idle and broken connections against a real server ---------------------------------


def test_idle_and_slow_connections_do_not_block_others(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    port = free_port()
    with running(serve_argv(write_config(), port), tmp_path / "s.log", "127.0.0.1", port) as server:
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        slow = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        try:
            for sock in slow:  # half a request line each, then nothing
                sock.sendall(b"GET /.well-known/mta-s")
            for _ in range(20):  # each within http_get's own 10 s timeout
                assert http_get(port) == (200, BODY_D)
            # a request that stops midway, then is finished much later, is still answered
            slow[0].sendall(
                b"ts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\nConnection: close\r\n\r\n"
            )
            slow[0].settimeout(5)
            assert read_response(slow[0]).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in idle + slow:
                sock.close()
        assert http_get(port) == (200, BODY_D)
    assert "Traceback" not in server.output()


def test_idle_keep_alive_connections_are_closed(write_config: WriteConfig, tmp_path: Path) -> None:
    port = free_port()
    argv = serve_argv(write_config(), port, "--timeout-keep-alive", "1")
    with (
        running(argv, tmp_path / "s.log", "127.0.0.1", port),
        socket.create_connection(("127.0.0.1", port), timeout=10) as sock,
    ):
        sock.sendall(REQUEST)
        assert read_response(sock).endswith(BODY_D)
        sock.sendall(REQUEST)  # kept open after a response...
        assert read_response(sock).endswith(BODY_D)
        assert sock.recv(65536) == b""  # ...and closed by the server once idle for a second


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"\x00\x01\x02\x03\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET / HTTP/9.9\r\nHost: mta-sts.example.com\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost mta-sts.example.com\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n",
    ],
    ids=["binary", "no-version", "bad-version", "bad-header", "bad-length"],
)
def test_malformed_requests_get_4xx_or_a_closed_connection(
    write_config: WriteConfig, tmp_path: Path, request_bytes: bytes
) -> None:
    port = free_port()
    with running(serve_argv(write_config(), port), tmp_path / "s.log", "127.0.0.1", port) as server:
        response = raw_request(port, request_bytes)
        assert response == b"" or response.startswith((b"HTTP/1.1 4", b"HTTP/1.0 4"))
        assert http_get(port) == (200, BODY_D)
    assert "Traceback" not in server.output()


# -- shutdown ------------------------------------------------------------------------------


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_shutdown_completes_requests_and_exits_quickly(
    write_config: WriteConfig, tmp_path: Path, signum: signal.Signals
) -> None:
    port = free_port()
    with running(serve_argv(write_config(), port), tmp_path / "s.log", "127.0.0.1", port) as server:
        keep_alive = socket.create_connection(("127.0.0.1", port), timeout=10)
        keep_alive.sendall(REQUEST)
        assert read_response(keep_alive).endswith(BODY_D)
        in_flight = socket.create_connection(("127.0.0.1", port), timeout=10)
        in_flight.sendall(REQUEST[:-2])  # the request is complete only with its last CRLF
        server.process.send_signal(signum)
        in_flight.sendall(b"\r\n")
        response = read_response(in_flight)
        code = server.process.wait(10)  # raises TimeoutExpired if it takes longer
        keep_alive.close()
        in_flight.close()
    assert response.startswith(b"HTTP/1.1 200 ")
    assert response.endswith(BODY_D)
    assert code in (0, -signum)
    assert "Traceback" not in server.output()


# -- hostile configuration on reload ---------------------------------------------------------

HOSTILE_CONFIGS = {
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\n"
    + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]\n"
        for i in range(9)
    ),
    "deep-nesting": "domains: " + "[" * 200_000 + "]" * 200_000 + "\n",
    "binary": "\x00\x01garbage\xff",
}


@pytest.mark.parametrize("kind", [*HOSTILE_CONFIGS, "huge"])
def test_hostile_config_on_reload_keeps_the_old_one(
    write_config: WriteConfig, tmp_path: Path, kind: str
) -> None:
    path = write_config()
    port = free_port()
    with running(serve_argv(path, port), tmp_path / "s.log", "127.0.0.1", port) as server:
        tmp = path.with_name("next.yaml")
        if kind == "huge":
            with tmp.open("wb") as file:
                file.truncate(40 * 2**20)
        else:
            tmp.write_bytes(HOSTILE_CONFIGS[kind].encode("utf-8", "surrogateescape"))
        os.replace(tmp, path)
        wait_until(partial(logged, server, "rejected"), 10)
        assert http_get(port) == (200, BODY_D)
    assert "Traceback" not in server.output()
