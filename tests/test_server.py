"""A real ``mtasts-host serve`` process, raw bytes on the wire, and real MTA-STS clients."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from functools import partial
from pathlib import Path

import pytest
import trustme

from mtasts_host import PolicyStore
from mtasts_host.config import load_config, parse_config

from .clients import CLIENTS, UVICORN_TLS_ADDRESS, assert_accepted, fetch_with_client
from .conftest import BODY_D, CONFIG_D, INVALID_CONFIG, SEVERAL, WriteConfig, wait_until
from .dnsserver import NAMESERVER, dns_server, zone_for
from .processes import (
    PYTHON,
    Process,
    free_port,
    logged,
    running,
    running_on_socket,
    serve_argv,
    uds_argv,
)
from .rawhttp import POLICY_PATH, raw_request, read_response, serves


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    tmp = tmp_path_factory.mktemp("serve")
    config = tmp / "config.yaml"
    config.write_text(SEVERAL)
    port = free_port()
    with running(serve_argv(config, port), tmp / "server.log", "127.0.0.1", port) as process:
        yield process
    assert "Traceback" not in process.output()


def http_request(
    method: bytes, host: bytes, target: bytes = POLICY_PATH.encode(), *, close: bool = False
) -> bytes:
    """One request as its bytes; with ``close``, the last on its connection."""
    last = b"Connection: close\r\n" if close else b""
    return method + b" " + target + b" HTTP/1.1\r\nHost: " + host + b"\r\n" + last + b"\r\n"


def get(server: Process, host: bytes, target: bytes = POLICY_PATH.encode()) -> bytes:
    return raw_request(server.port, http_request(b"GET", host, target, close=True))


def test_bytes_on_the_wire(server: Process) -> None:
    response = get(server, b"mta-sts.example.com")
    head, _, body = response.partition(b"\r\n\r\n")
    status, *header_lines = head.split(b"\r\n")
    assert status == b"HTTP/1.1 200 OK"
    headers = dict(line.lower().split(b": ", 1) for line in header_lines)
    assert headers[b"content-type"] == b"text/plain; charset=utf-8"
    assert headers[b"content-length"] == str(len(BODY_D)).encode()
    assert headers[b"cache-control"] == b"max-age=60"
    assert headers.keys() == {
        b"content-type",
        b"content-length",
        b"cache-control",
        b"x-content-type-options",
        b"date",  # RFC 9110 section 6.6.1: an origin server with a clock sends it
        b"connection",  # close, as asked
    }  # no location, and no server naming the software
    assert body == BODY_D


def test_answers_on_one_connection_are_each_whole(server: Process) -> None:
    # serve sends the same messages for every request a remembered answer answers: GET and
    # HEAD of a policy, and of a host without one, in turn on one connection, each answered
    # as on a connection of its own.
    hosts = (b"mta-sts.example.com", b"mta-sts.example.org", b"mta-sts.unknown.test")
    alone = {host: get(server, host).replace(b"connection: close\r\n", b"") for host in hosts}
    asked = [(method, host) for _ in range(3) for method in (b"GET", b"HEAD") for host in hosts]
    expected = b"".join(
        alone[host] if method == b"GET" else alone[host].partition(b"\r\n\r\n")[0] + b"\r\n\r\n"
        for method, host in asked
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(b"".join(http_request(method, host) for method, host in asked))
        received = b""
        while len(received) < len(expected):
            chunk = sock.recv(65536)
            assert chunk, received
            received += chunk
    assert received == expected


def test_unknown_host_on_the_wire(server: Process) -> None:
    assert get(server, b"mta-sts.unknown.test").startswith(b"HTTP/1.1 404 ")


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: \xff\xfe\x00\r\nConnection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.\xc3(.com\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n\r\n",
        b"GET http://evil.test/.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.unknown.test\r\n"
        b"Connection: close\r\n\r\n",
        b"BREW /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Connection: close\r\n\r\n",
        b"GET /"
        + b"a" * 20000
        + b" HTTP/1.1\r\nHost: mta-sts.example.com\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: mta-sts.example.com\r\nX-Big: "
        + b"b" * 100_000
        + b"\r\nConnection: close\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # TLS to a plain port
        b"GET / HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        + b"X-A: b\r\n" * 5000
        + b"Connection: close\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Transfer-Encoding: chunked\r\nContent-Length: 5\r\nConnection: close\r\n\r\n0\r\n\r\n",
    ],
    ids=[
        "binary-host",
        "bad-utf8-host",
        "no-host",
        "absolute-form",
        "odd-method",
        "long-target",
        "huge-header",
        "tls-hello",
        "many-headers",
        "smuggling",
    ],
)
def test_hostile_requests_never_5xx(server: Process, request_bytes: bytes) -> None:
    response = raw_request(server.port, request_bytes)
    assert not response.startswith(b"HTTP/1.1 5")
    assert not response.startswith(b"HTTP/1.0 5")
    # the server is still answering others
    assert get(server, b"mta-sts.example.com").endswith(BODY_D)


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n\r\n",
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: \r\nConnection: close\r\n\r\n",
    ],
    ids=["http-1.0-without-host", "empty-host"],
)
def test_no_host_gets_no_policy(server: Process, request_bytes: bytes) -> None:
    # notes, test 9: a 400 or a 404, never a 200 (whose policy?) and never a 5xx
    status = raw_request(server.port, request_bytes).split(b"\r\n", 1)[0]
    assert status.split(b" ")[1] in (b"400", b"404"), status


@pytest.mark.parametrize(
    ("request_bytes", "status", "body"),
    [
        (
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nConnection: close\r\n\r\n",
            b"HTTP/1.1 400 Bad Request",
            b"Bad request: no Host header.\n",
        ),
        (b"GET /metrics HTTP/1.1\r\nConnection: close\r\n\r\n", b"HTTP/1.1 400 Bad Request", None),
        (b"GET /.well-known/mta-sts.txt HTTP/1.0\r\n\r\n", b"HTTP/1.1 404 Not Found", None),
    ],
    ids=["http-1.1-policy", "http-1.1-metrics", "http-1.0"],
)
def test_a_missing_host_is_a_bad_request_in_http_1_1_only(
    server: Process, request_bytes: bytes, status: bytes, body: bytes | None
) -> None:
    # RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host.
    # httptools passes one on (h11 refuses it itself); HTTP/1.0 has no Host to miss.
    response = raw_request(server.port, request_bytes)
    assert response.split(b"\r\n", 1)[0] == status
    if body is not None:
        assert response.endswith(b"\r\n\r\n" + body)


def test_absolute_form_uses_the_host_header(server: Process) -> None:
    response = get(
        server, b"mta-sts.example.com", b"http://mta-sts.unknown.test/.well-known/mta-sts.txt"
    )
    assert response.startswith(b"HTTP/1.1 200 ")


def test_startup_failure_is_one_line(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config("domains:\n  a.example: {mode: enforced}\n")
    completed = _run(serve_argv(path, free_port()))
    assert completed.returncode == 1
    assert completed.stderr == (
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, "
        "got 'enforced'\n"
    )


def test_limit_concurrency_serves_that_many_connections(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # uvicorn counts the connection a request came on: --limit-concurrency 1 answered every
    # request 503, and N served N - 1 connections at once.
    port = free_port()
    argv = serve_argv(write_config(), port, "--limit-concurrency", "1")
    opened: list[http.client.HTTPConnection] = []

    def served_on_a_connection_kept_open() -> bool:
        # Again until served: the server may not have seen the close of the last one yet.
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        opened.append(connection)
        connection.request("GET", POLICY_PATH, headers={"Host": "mta-sts.example.com"})
        response = connection.getresponse()
        return (response.status, response.read()) == (200, BODY_D)

    with running(argv, tmp_path / "server.log", "127.0.0.1", port):
        try:
            wait_until(served_on_a_connection_kept_open)
            # That one still open (keep-alive), a second is over the limit.
            request = f"GET {POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            answer = raw_request(port, f"{request}Connection: close\r\n\r\n".encode())
            assert answer.startswith(b"HTTP/1.1 503 ")
        finally:
            for connection in opened:
                connection.close()


_TLS_UVICORN = (
    "import sys, uvicorn; from mtasts_host import create_app; "
    "uvicorn.run(create_app(sys.argv[1]), host=sys.argv[2], port=443, "
    "ssl_certfile=sys.argv[3], ssl_keyfile=sys.argv[4], log_level='warning')"
)


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.mark.system
@pytest.mark.parametrize("client", CLIENTS)
def test_real_clients_accept_every_policy_over_tls(
    client: str, ca: trustme.CA, tmp_path: Path
) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(SEVERAL)
    domains = list(load_config(config).domains)
    cert = ca.issue_cert(*(f"mta-sts.{d}" for d in [*domains, "unknown.test"]))
    cert.private_key_pem.write_to_path(str(tmp_path / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "cert.pem"))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    argv = [
        PYTHON,
        "-c",
        _TLS_UVICORN,
        str(config),
        UVICORN_TLS_ADDRESS,
        str(tmp_path / "cert.pem"),
        str(tmp_path / "key.pem"),
    ]
    # A domain whose TXT record points here but that is not configured gets no policy.
    zone = zone_for(config, UVICORN_TLS_ADDRESS, ("unknown.test",))
    with (
        dns_server(zone, NAMESERVER),
        running(argv, tmp_path / "uvicorn.log", UVICORN_TLS_ADDRESS, 443),
    ):
        results = fetch_with_client(
            client, [*domains, "unknown.test"], NAMESERVER, tmp_path / "ca.pem", tmp_path
        )
    assert_accepted(results, config)


def test_sighup_reloads(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config()
    port = free_port()
    argv = serve_argv(path, port, "--no-watch")
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        # Two edits and one SIGHUP: a server that watched would reload on its own as well.
        path.write_text(CONFIG_D.replace("604800", "604801"))
        path.write_text(CONFIG_D.replace("604800", "604802"))
        server.process.send_signal(signal.SIGHUP)
        wait_until(partial(serves, port, BODY_D.replace(b"604800", b"604802")))
    output = server.output()
    (reload,) = [line for line in output.splitlines() if f"reloaded {path}" in line]
    assert "changed 1: example.com id=" in reload
    # Start-up and reload name the file, the domains and the digest of what is served.
    before = PolicyStore(parse_config(CONFIG_D.encode(), str(path))).snapshot.describe()
    after = PolicyStore(load_config(path)).snapshot.describe()
    assert f" INFO    mtasts_host.app: serving {before}\n" in output
    assert f": reloaded {after}; changed 1: example.com id=" in reload


# serve, with the file changed and SIGHUP sent while it is still being loaded at start-up,
# which takes seconds for a large file; the reload the signal asks for is held until the
# gate file (the script's first argument) exists: a large file takes seconds to load again.
SIGHUP_WHILE_LOADING = """
import os, pathlib, signal, sys, time
from mtasts_host import cli, reload, server
build_app = server.build_app
load_config = reload.load_config
gate = pathlib.Path(sys.argv.pop(1))
def loading(args):
    app = build_app(args)
    path = pathlib.Path(args.config)
    path.write_text(path.read_text().replace("604800", "604801"))
    os.kill(os.getpid(), signal.SIGHUP)
    return app
def held(path, previous=None):
    while not gate.exists():
        time.sleep(0.01)
    return load_config(path, previous)
server.build_app = loading
reload.load_config = held
sys.exit(cli.main(sys.argv[1:]))
"""


def _sighup_while_loading(path: Path, port: int, gate: Path, *options: str) -> list[str]:
    arguments = serve_argv(path, port, *options)[3:]  # after "python -m mtasts_host"
    return [PYTHON, "-c", SIGHUP_WHILE_LOADING, str(gate), *arguments]


def test_sighup_while_starting_reloads_once_started(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    port = free_port()
    gate = tmp_path / "gate"
    gate.touch()
    argv = _sighup_while_loading(write_config(), port, gate, "--no-watch")
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        wait_until(partial(serves, port, BODY_D.replace(b"604800", b"604801")))
    assert "Traceback" not in server.output()


def test_sighup_while_starting_serves_while_that_reload_runs(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # Starting to watch (the default) waited for the reload the signal asked for: the first
    # request, and uvicorn's start-up, waited for the whole file to load a second time.
    port = free_port()
    gate = tmp_path / "gate"
    argv = _sighup_while_loading(write_config(), port, gate)
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        assert serves(port, BODY_D)  # the file as loaded at start-up, while the reload waits
        wait_until(partial(logged, server, "Uvicorn running on"))
        assert ": reloaded " not in server.output()
        gate.touch()
        wait_until(partial(serves, port, BODY_D.replace(b"604800", b"604801")))
    assert "Traceback" not in server.output()


# serve as PID 1 in a container, which ignores a signal it has no handler for (simulated
# here by a SIGTERM ignored from the start), sent SIGTERM while the file is being loaded.
SIGTERM_WHILE_LOADING = """
import os, signal, sys
from mtasts_host import cli, server
signal.signal(signal.SIGTERM, signal.SIG_IGN)
build_app = server.build_app
def loading(args):
    os.kill(os.getpid(), signal.SIGTERM)
    return build_app(args)
server.build_app = loading
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigterm_while_starting_ends_the_process(write_config: WriteConfig) -> None:
    # It was lost: the server started and served on until the orchestrator killed it.
    arguments = serve_argv(write_config(), free_port())[3:]  # after "python -m mtasts_host"
    completed = _run([PYTHON, "-c", SIGTERM_WHILE_LOADING, *arguments])
    # Ended, not served: with 0, as a PID 1 that SIGTERM ends once serving (it is ignored
    # when raised again, once the companions have stopped).
    assert (completed.returncode, completed.stderr) == (0, "")


# The same, with SIGTERM sent as the automatic publisher has just started, before the doctor.
SIGTERM_WHILE_COMPANIONS_START = """
import os, signal, sys, threading
from mtasts_host import cli
from mtasts_host.publish import command
signal.signal(signal.SIGTERM, signal.SIG_IGN)
start_background = command.start_background
def starting(app, args):
    publisher = start_background(app, args)
    os.kill(os.getpid(), signal.SIGTERM)
    return publisher
command.start_background = starting
status = cli.main(sys.argv[1:])
print(sorted(thread.name for thread in threading.enumerate()))
sys.exit(status)
"""


def test_sigterm_while_the_companions_start_stops_those_started(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # The publisher started went on publishing: the signal unwound serve before it was
    # among the companions to stop.
    key = tmp_path / "tsig.key"
    key.write_text('key "k" { algorithm hmac-sha256; secret "c2VjcmV0c2VjcmV0c2VjcmV0"; };\n')
    port = free_port()
    publish = (
        f"publish: {{server: '127.0.0.1:{port}', tsig_key_file: '{key}', auto: true,\n"
        "  verify_url: 'http://mta-sts.{domain}/.well-known/mta-sts.txt'}\n"
    )
    path = write_config(CONFIG_D + publish)
    doctor = ("--doctor-interval", "1h", "--resolver", f"127.0.0.1:{port}")
    arguments = serve_argv(path, free_port(), *doctor)[3:]  # after "python -m mtasts_host"
    # A server with no zone, which answers at once: the publisher's run fails without a wait.
    with dns_server("", "127.0.0.1", port):
        completed = _run([PYTHON, "-c", SIGTERM_WHILE_COMPANIONS_START, *arguments])
    assert (completed.returncode, completed.stdout) == (0, "['MainThread']\n"), completed.stderr


def all_answered(seen: list[set[tuple[int, bytes]]], response: tuple[int, bytes]) -> bool:
    return all(response in responses for responses in seen)


def test_reload_while_serving(write_config: WriteConfig, tmp_path: Path) -> None:
    path = write_config()
    port = free_port()
    edits = [
        (
            CONFIG_D.replace("604800", str(604800 + i)),
            BODY_D.replace(b"604800", str(604800 + i).encode()),
        )
        if i % 5 != 4
        else (INVALID_CONFIG, None)  # every fifth edit is rejected
        for i in range(20)
    ]
    seen: list[set[tuple[int, bytes]]] = [set() for _ in range(4)]  # what each client got
    stop = threading.Event()

    def fetch(responses: set[tuple[int, bytes]]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        while not stop.is_set():  # set once the edits are done, each bounded by wait_until
            connection.request("GET", POLICY_PATH, headers={"Host": "mta-sts.example.com"})
            response = connection.getresponse()
            responses.add((response.status, response.read()))
        connection.close()

    with running(serve_argv(path, port), tmp_path / "server.log", "127.0.0.1", port) as server:
        clients = [threading.Thread(target=fetch, args=(responses,)) for responses in seen]
        for thread in clients:
            thread.start()
        try:
            rejected = 0
            for text, body in edits:
                tmp = path.with_name("new.yaml")
                tmp.write_text(text)
                os.replace(tmp, path)
                if body is None:
                    rejected += 1
                    wait_until(partial(logged, server, "rejected", rejected))
                else:
                    # every client is answered with each version, while the edits go on
                    wait_until(partial(all_answered, seen, (200, body)))
        finally:
            stop.set()
            for thread in clients:
                thread.join(30)
    bodies = {BODY_D} | {body for _, body in edits if body is not None}
    for responses in seen:
        assert responses <= {(200, body) for body in bodies}  # never an error or a torn body
    assert "Traceback" not in server.output()


def test_unix_socket(write_config: WriteConfig, tmp_path: Path) -> None:
    path = tmp_path / "mtasts.sock"
    argv = uds_argv(write_config(), path)
    with running_on_socket(argv, tmp_path / "server.log", path) as server:
        assert _policy_on_socket(path).endswith(BODY_D)
    assert "Traceback" not in server.output()
    # Ended by SIGTERM (the helper's stop), as before, but not before uvicorn removed it.
    assert (server.process.returncode, path.exists()) == (-signal.SIGTERM, False)


def _policy_on_socket(path: Path, headers: bytes = b"") -> bytes:
    """The answer to a GET of mta-sts.example.com's policy over the Unix socket ``path``."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        sock.sendall(
            b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            + headers
            + b"Connection: close\r\n\r\n"
        )
        return read_response(sock)


def test_uvicorns_own_forwarded_allow_ips_variable_is_not_read(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # Left to uvicorn, FORWARDED_ALLOW_IPS=* (named by no option, nor the README) made serve
    # trust anyone's X-Forwarded-For: access lines named whatever address a client made up.
    port = free_port()
    argv = serve_argv(write_config(), port, "--host", "127.0.0.2")
    env = {"FORWARDED_ALLOW_IPS": "*"}
    with running(argv, tmp_path / "server.log", "127.0.0.2", port, env=env) as server:
        with socket.create_connection(("127.0.0.2", port), 10, ("127.0.0.3", 0)) as sock:
            sock.sendall(
                b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
                b"X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n"
            )
            assert read_response(sock).endswith(BODY_D)
        wait_until(lambda: " request " in server.output())
    assert ' client="127.0.0.3"' in server.output()


def test_unix_socket_left_by_a_killed_server_is_replaced(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    path = tmp_path / "mtasts.sock"
    with socket.socket(socket.AF_UNIX) as stale:
        stale.bind(str(path))  # closed without listening: the file of a server killed -9
    request = (
        b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
        b"Connection: close\r\n\r\n"
    )

    def answered() -> bytes | None:
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(10)
            try:
                sock.connect(str(path))
            except ConnectionRefusedError:
                return None
            sock.sendall(request)
            return read_response(sock)

    with running_on_socket(uds_argv(write_config(), path), tmp_path / "server.log", path):
        wait_until(answered, timeout=30)
        assert (answered() or b"").endswith(BODY_D)


@pytest.mark.parametrize(
    ("where", "problem"),
    [
        pytest.param("missing/mtasts.sock", "No such file or directory", id="no-directory"),
        pytest.param("x" * 120 + ".sock", "AF_UNIX path too long", id="too-long"),
        pytest.param("config.yaml", "a file that is not a socket is there", id="a-file"),
        pytest.param("listening.sock", "another server is listening there", id="in-use"),
    ],
)
def test_a_unix_socket_that_cannot_be_ours_is_one_line_and_touches_nothing(
    write_config: WriteConfig, tmp_path: Path, where: str, problem: str
) -> None:
    # uvicorn binds without a check: it printed two tracebacks naming no path, deleted the
    # file in the way (here the config itself), and took the path of a listening server.
    config = write_config()
    path = tmp_path / where
    with socket.socket(socket.AF_UNIX) as other:
        if where == "listening.sock":
            other.bind(str(path))
            other.listen()
        completed = _run(uds_argv(config, path))
    assert completed.returncode == 3  # as uvicorn's when the port is taken
    # The error alone: no "serving FILE" line before it, for a server that serves nothing.
    assert completed.stderr == f"mtasts-host: error: cannot listen on {path}: {problem}\n"
    assert config.read_text() == CONFIG_D
    assert path.exists() == (where in ("config.yaml", "listening.sock"))


def test_a_port_taken_is_one_line_and_starts_nothing_beside_the_server(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # The port held by another mtasts-host, the publisher of this one, which then could not
    # listen, wrote the DNS records of a configuration that it never served.
    written = tmp_path / "written"
    hook = tmp_path / "dns-hook"
    hook.write_text(f"#!/bin/sh\ntouch '{written}'\n")
    hook.chmod(0o755)
    publish = (
        f"publish: {{server: '127.0.0.1:{free_port()}', command: '{hook}', auto: true,\n"
        "  verify_url: 'http://mta-sts.{domain}/.well-known/mta-sts.txt'}\n"
    )
    path = write_config(CONFIG_D + publish)
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        completed = _run(
            serve_argv(path, port, "--doctor-interval", "1h", "--resolver", "127.0.0.1:9")
        )
    assert completed.returncode == 3
    # The error alone: no "serving FILE" line, nor the doctor's or the publisher's.
    assert completed.stderr == (
        f"mtasts-host: error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
    )
    assert not written.exists()


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("a..b", id="empty-label"),
        pytest.param("a" * 64 + ".test", id="label-too-long"),
    ],
)
def test_a_host_name_idna_refuses_is_one_line(write_config: WriteConfig, host: str) -> None:
    # The name is resolved before anything starts: a label IDNA refuses raised UnicodeError
    # there, a traceback in place of the one line and exit 3 of a name that does not resolve.
    port = free_port()
    argv = serve_argv(write_config(), port, "--host", host)
    completed = _run(argv)
    assert completed.returncode == 3
    assert "Traceback" not in completed.stderr
    assert completed.stderr.splitlines()[-1] == (
        f"mtasts-host: error: cannot listen on {host}:{port}: "
        "not a host name: label empty or too long"
    )


def test_unix_socket_trusts_the_x_forwarded_for_of_the_proxy(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # The proxy's end of a Unix socket has no address, never one of --forwarded-allow-ips:
    # unless the socket is trusted, no access line names a sender (README, Operations).
    path = tmp_path / "mtasts.sock"
    argv = uds_argv(write_config(), path)
    with running_on_socket(argv, tmp_path / "server.log", path) as server:
        assert _policy_on_socket(path, b"X-Forwarded-For: 203.0.113.9\r\n").endswith(BODY_D)
        wait_until(partial(logged, server, 'path="/.well-known/mta-sts.txt"'))
    assert 'client="203.0.113.9"' in server.output()


def test_a_storm_of_sighups_is_a_few_reloads(tmp_path: Path) -> None:
    # A file large enough that a reload takes a while: signals come faster than reloads.
    lines = ["defaults: {mode: enforce, mx: mail.example.net}", "domains:"]
    lines += [f"  d{i}.example.com: {{max_age: {604800 + i}}}" for i in range(10000)]
    path = tmp_path / "config.yaml"
    path.write_text("\n".join(lines) + "\n")
    port = free_port()
    argv = serve_argv(path, port, "--no-watch", "--no-access-log")
    with running(argv, tmp_path / "server.log", "127.0.0.1", port) as server:
        for _ in range(100):
            server.process.send_signal(signal.SIGHUP)
            time.sleep(0.002)
        done = f"reloaded {path}"
        wait_until(lambda: logged(server, done))
        counts = [-1, server.output().count(done)]
        while counts[-1] != counts[-2]:  # until no reload has ended for a second
            time.sleep(1)
            counts.append(server.output().count(done))
        # One reload per signal that found none waiting would be dozens.
        assert counts[-1] <= 10, counts
        body = b"version: STSv1\r\nmode: enforce\r\nmx: mail.example.net\r\nmax_age: 604800\r\n"
        assert serves(port, body, "mta-sts.d0.example.com")


def _free_on_both() -> int:
    """A port free on 127.0.0.1 and on ::1."""
    for _ in range(100):
        port = free_port()
        with socket.socket(socket.AF_INET6) as probe:
            try:
                probe.bind(("::1", port))
            except OSError:
                continue
        return port
    raise RuntimeError("no port free on both 127.0.0.1 and ::1")


POLICY_REQUEST = (
    b"GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
    b"Connection: close\r\n\r\n"
)


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        pytest.param(["--host", "127.0.0.1", "--host", "::1"], {}, id="host-twice"),
        pytest.param(["--host", "127.0.0.1,[::1]"], {}, id="a-list-bracketed"),
        pytest.param([], {"MTASTS_HOST_HOST": "127.0.0.1, ::1"}, id="variable"),
    ],
)
def test_one_process_serves_ipv4_and_ipv6(
    write_config: WriteConfig, tmp_path: Path, argv: list[str], env: dict[str, str]
) -> None:
    # One address only: "::" is IPv6 alone (IPV6_V6ONLY, as the event loop binds it), so a
    # pod on an IPv6-only cluster, or a dual-stack host, needed a process per family.
    port = _free_on_both()
    serve = serve_argv(write_config(), port, *argv)
    with running(serve, tmp_path / "server.log", "127.0.0.1", port, env=env) as server:
        for address in ("127.0.0.1", "::1"):
            assert raw_request(port, POLICY_REQUEST, address).endswith(BODY_D)
        wait_until(partial(logged, server, 'client="::1"'))
    output = server.output()
    assert f"Uvicorn running on http://127.0.0.1:{port} (Press CTRL+C to quit)\n" in output
    assert f"Uvicorn running on http://[::1]:{port} (Press CTRL+C to quit)\n" in output
    assert 'client="127.0.0.1"' in output
    assert "Traceback" not in output


@pytest.mark.parametrize(
    ("taken", "where"),
    [
        pytest.param(socket.AF_INET, "127.0.0.1", id="ipv4-taken"),
        pytest.param(socket.AF_INET6, "[::1]", id="ipv6-taken"),
    ],
)
def test_one_address_of_two_taken_is_one_line(
    write_config: WriteConfig, tmp_path: Path, taken: socket.AddressFamily, where: str
) -> None:
    store = tmp_path / "reports.db"
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{store}'}}\n")
    port = _free_on_both()
    with socket.socket(taken) as other:
        other.bind((where.strip("[]"), port))
        other.listen()
        completed = _run(serve_argv(path, port, "--host", "127.0.0.1", "--host", "::1"))
    assert completed.returncode == 3
    assert completed.stderr == (
        f"mtasts-host: error: cannot listen on {where}:{port}: Address already in use\n"
    )
    assert not store.exists()
    # Neither address is left taken by the server that could not listen on both.
    for address in ("127.0.0.1", "::1"):
        with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as sock:
            sock.bind((address, port))


# serve, with another server taking its port while the file loads: a server of its own (as
# mtasts-host, nginx or uvicorn do, SO_REUSEADDR), which could while serve only checked.
TAKEN_WHILE_LOADING = """
import socket, sys
from mtasts_host import cli, server
build_app = server.build_app
def loading(args):
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        other.bind(("127.0.0.1", args.port))
        other.listen()
    except OSError as exc:
        print(exc.strerror)
        return None  # as a configuration that does not load: ends with 1
    server.OTHER = other
    return build_app(args)
server.build_app = loading
sys.exit(cli.main(sys.argv[1:]))
"""


def test_no_other_server_takes_the_port_while_the_file_loads(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # The port was checked, let go, and checked again once the file had loaded: by then the
    # report store was opened (its SQLite file created), and the other server's port ended
    # the start with 3. Now it is held from the start: the other server cannot take it.
    store = tmp_path / "reports.db"
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{store}'}}\n")
    arguments = serve_argv(path, free_port())[3:]  # after "python -m mtasts_host"
    completed = _run([PYTHON, "-c", TAKEN_WHILE_LOADING, *arguments])
    assert (completed.returncode, completed.stdout) == (1, "Address already in use\n")
    assert not store.exists()


# serve, asked for /healthz while the file loads, as a proxy or a probe may ask it.
ASKED_WHILE_LOADING = """
import os, signal, socket, sys, threading
from mtasts_host import cli, server
build_app = server.build_app
def answer(sock):
    with sock:
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    print(data.split(b"\\r\\n")[0].decode(), flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
def loading(args):
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=30)
    sock.sendall(b"GET /healthz HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
    threading.Thread(target=answer, args=(sock,)).start()
    return build_app(args)
server.build_app = loading
sys.exit(cli.main(sys.argv[1:]))
"""


def test_a_connection_while_the_file_loads_is_answered_once_it_has(
    write_config: WriteConfig,
) -> None:
    arguments = serve_argv(write_config(), free_port())[3:]  # after "python -m mtasts_host"
    completed = _run([PYTHON, "-c", ASKED_WHILE_LOADING, *arguments])
    assert (completed.returncode, completed.stdout) == (-signal.SIGTERM, "HTTP/1.1 200 OK\n")
    assert "Traceback" not in completed.stderr


def _run(argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
    """A command run to its end (a serve that cannot start, or one a script stops), its
    output captured."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
