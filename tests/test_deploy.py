"""The deployment files, run for real: nginx and Caddy in front, the container's command line,
and the Kubernetes manifests."""

from __future__ import annotations

import contextlib
import http.client
import inspect
import json
import os
import re
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pytest
import trustme
import yaml
from kubernetes_validate import validate as kubernetes_validate

from mtasts_host import __version__
from mtasts_host.cli import main
from mtasts_host.config import parse_config
from mtasts_host.doctor.background import Background
from mtasts_host.publish.auto import AutoPublisher
from mtasts_host.reload import Reloader
from mtasts_host.reports import ReportsSettings, open_store
from mtasts_host.reports.http import BODY_TIMEOUT
from mtasts_host.server import GRACEFUL_SHUTDOWN, SERVE_OPTIONS

from .caddy import CADDYFILE, shipped_caddy
from .clients import CADDY_ADDRESS, CLIENTS, NGINX_ADDRESS, assert_accepted, fetch_with_client
from .conftest import BODY_D, CONFIG_D, SEVERAL, WriteConfig, wait_until
from .dnsserver import NAMESERVER, dns_server, zone_for
from .nginx import SITE
from .nginx import nginx as nginx_running
from .processes import (
    Process,
    free_port,
    logged,
    need,
    running,
    running_on_socket,
    serve_argv,
    uds_argv,
)
from .rawhttp import POLICY_PATH, http_get, read_response, serves
from .reports.conftest import REPORTS_HOST, encode, recent, report

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
UNKNOWN = "unknown.test"
CACHE_ADDRESS = "127.44.3.4"


@pytest.fixture(scope="module")
def policies(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Process]]:
    """
    A real ``mtasts-host serve`` with several domains and the report intake, as the
    proxies' upstream; its report store is ``reports.db`` beside the config.
    """
    tmp = tmp_path_factory.mktemp("upstream")
    config = tmp / "config.yaml"
    rua = f"max_age: 1209600, tlsrpt_rua: ['https://{REPORTS_HOST}/tlsrpt']}}"
    several = SEVERAL.replace("max_age: 1209600}", rua, 1)
    config.write_text(several + f"reports: {{store: 'sqlite:///{tmp / 'reports.db'}'}}\n")
    port = free_port()
    with running(serve_argv(config, port), tmp / "serve.log", "127.0.0.1", port) as server:
        yield config, server
    assert "Traceback" not in server.output()


def domains_of(config: Path) -> list[str]:
    return list(parse_config(config.read_bytes()).domains)


def handshake(address: str, name: str, ca_file: Path) -> None:
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((address, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name),
    ):
        pass


def verifies(address: str, name: str, ca_file: Path) -> bool:
    try:
        handshake(address, name, ca_file)
    except ssl.SSLError:
        return False
    return True


# -- nginx -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def nginx(
    policies: tuple[Path, Process], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """nginx running deploy/nginx/mtasts-host.conf as shipped, but for paths and addresses."""
    config, upstream = policies
    tmp = tmp_path_factory.mktemp("nginx")
    certs = tmp / "certs"
    certs.mkdir()
    ca = trustme.CA()
    # Issued by an intermediate, as a public CA's are: clients that trust the root alone
    # verify only if nginx sends the whole chain in the file (notes, section 4).
    issuer = ca.create_child_ca()
    for name in [*(f"mta-sts.{domain}" for domain in domains_of(config)), REPORTS_HOST]:
        cert = issuer.issue_cert(name)
        cert.private_key_pem.write_to_path(str(certs / f"{name}.key"))
        (certs / f"{name}.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    upstream_address = ("127.0.0.1", upstream.port)
    with nginx_running(tmp, certs, upstream_address, NGINX_ADDRESS, 443, connections=256):
        yield tmp / "ca.pem"


@pytest.mark.system
def test_nginx_gives_no_certificate_to_other_names(nginx: Path) -> None:
    handshake(NGINX_ADDRESS, "mta-sts.example.com", nginx)
    for name in (f"mta-sts.{UNKNOWN}", "example.com", "mta-sts.sub.example.com"):
        with pytest.raises(ssl.SSLError):
            handshake(NGINX_ADDRESS, name, nginx)


# -- Caddy -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def caddy(
    policies: tuple[Path, Process], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Caddy running deploy/caddy/Caddyfile with on-demand TLS from its internal CA."""
    _, upstream = policies
    tmp = tmp_path_factory.mktemp("caddy")
    argv, env = shipped_caddy(tmp, upstream.port, CADDY_ADDRESS)
    with running(argv, tmp / "caddy.log", CADDY_ADDRESS, 443, env=env) as process:
        root = tmp / "storage" / "pki" / "authorities" / "local" / "root.crt"
        wait_until(root.exists, timeout=20)
        # The first handshake for a name has Caddy issue its certificate on demand, valid
        # from the current second: wait until each verifies, or a client a moment later
        # could find it "not yet valid".
        for domain in domains_of(policies[0]):
            wait_until(partial(verifies, CADDY_ADDRESS, f"mta-sts.{domain}", root), timeout=20)
        wait_until(partial(verifies, CADDY_ADDRESS, REPORTS_HOST, root), timeout=20)
        yield root
    assert "panic" not in process.output()


@pytest.fixture(params=["nginx", "caddy"])
def proxy(request: pytest.FixtureRequest) -> tuple[str, Path]:
    """The address of a running proxy, and the only CA its clients trust."""
    address = {"nginx": NGINX_ADDRESS, "caddy": CADDY_ADDRESS}[request.param]
    ca_file: Path = request.getfixturevalue(request.param)
    return address, ca_file


@pytest.mark.system
@pytest.mark.parametrize("client", CLIENTS)
def test_real_clients_through_each_proxy(
    client: str, proxy: tuple[str, Path], policies: tuple[Path, Process], tmp_path: Path
) -> None:
    config, _ = policies
    address, ca_file = proxy
    with dns_server(zone_for(config, address, (UNKNOWN,)), NAMESERVER):
        results = fetch_with_client(
            client, [*domains_of(config), UNKNOWN], NAMESERVER, ca_file, tmp_path
        )
    assert_accepted(results, config)


def negotiated(address: str, name: str, ca_file: Path, version: ssl.TLSVersion) -> str:
    """The protocol a handshake offering only ``version`` and newer negotiates."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = version
    with (
        socket.create_connection((address, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        return str(tls.version())


def refuses_tls_1_1(address: str, name: str, ca_file: Path) -> bool:
    """Whether the server itself refuses a client that offers TLS 1.1 at most."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # else OpenSSL would not even offer TLS 1.1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # as it should be: that is the point
        context.minimum_version = ssl.TLSVersion.TLSv1
        context.maximum_version = ssl.TLSVersion.TLSv1_1
    try:
        with (
            socket.create_connection((address, 443), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=name),
        ):
            return False
    except ssl.SSLError as exc:
        # The server's alert, not a client that had nothing to offer.
        return "ALERT_PROTOCOL_VERSION" in str(exc) or "UNSUPPORTED_PROTOCOL" in str(exc)


@pytest.mark.system
def test_each_proxy_negotiates_tls_1_3_and_refuses_tls_1_1(proxy: tuple[str, Path]) -> None:
    # RFC 8461 section 7.2: TLS 1.2 or newer; TLS 1.3 is what the shipped configs intend.
    address, ca_file = proxy
    name = "mta-sts.example.com"
    assert negotiated(address, name, ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.3"
    assert negotiated(address, name, ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"
    assert refuses_tls_1_1(address, name, ca_file)


@pytest.mark.system
@pytest.mark.parametrize("path", ["/metrics", "/readyz", "/healthz", "/reports"])
def test_each_proxy_keeps_the_operational_endpoints_off_its_policy_hosts(
    proxy: tuple[str, Path], path: str
) -> None:
    """A connection for mta-sts.example.com asking for another Host gets no app page."""
    address, ca_file = proxy
    context = ssl.create_default_context(cafile=str(ca_file))
    hosts = ("localhost", "10.0.0.7", "mta-sts.example.org", "mta-sts.", "MTA-STS.:443")
    for host in (*hosts, REPORTS_HOST):
        with (
            socket.create_connection((address, 443), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="mta-sts.example.com") as tls,
        ):
            tls.sendall(
                f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            head = read_response(tls).partition(b"\r\n\r\n")[0]
        status = head.split(b"\r\n")[0]
        assert b" 200 " not in status, (host, status)


@pytest.mark.system
def test_each_proxy_answers_other_hosts_with_a_plain_404(proxy: tuple[str, Path]) -> None:
    """
    The notes' test 6 and section 1.2: a Host that is no policy host gets 404 with a
    text/plain body, not an HTML page (mox reads a 404 as "no policy served").
    """
    address, ca_file = proxy
    context = ssl.create_default_context(cafile=str(ca_file))
    for host in ("example.com", "localhost", "10.0.0.7", REPORTS_HOST):
        with (
            socket.create_connection((address, 443), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname="mta-sts.example.com") as tls,
        ):
            tls.sendall(
                f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
            )
            head, _, body = read_response(tls).partition(b"\r\n\r\n")
        status, *lines = head.decode("latin-1").split("\r\n")
        headers = dict(line.lower().split(": ", 1) for line in lines)
        assert status.split(" ")[1] == "404", (host, status)
        assert headers.get("content-type", "").startswith("text/plain"), (host, headers)
        assert b"<" not in body, (host, body)


@pytest.mark.system
@pytest.mark.parametrize(
    "host",
    [
        "MTA-STS.Example.COM",
        "mta-sts.example.com:443",
        "mta-sts.example.com.",
        "mta-sts.example.com.:443",
    ],
)
def test_each_proxy_serves_the_policy_under_every_form_of_its_host(
    proxy: tuple[str, Path], host: str
) -> None:
    """Case, the default port and one trailing dot are the same host (RFC 8461 notes, 2-4)."""
    address, ca_file = proxy
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((address, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="mta-sts.example.com") as tls,
    ):
        request = f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        tls.sendall(request.encode())
        head, _, body = read_response(tls).partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 200 OK"
    assert body == BODY_D


def exchange(
    address: str, ca_file: Path, request: str, name: str = "mta-sts.example.com"
) -> tuple[int, dict[str, str], bytes]:
    """
    One request as written, on a TLS connection for ``name`` (its SNI) to ``address``, port
    443, read until the server closes it: the status, the headers (lower-case names) and the
    body.
    """
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((address, 443), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name) as tls,
    ):
        tls.sendall(request.encode())
        head, _, body = read_until_closed(tls).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    fields = (line.split(":", 1) for line in lines)
    headers = {field.lower(): value.strip() for field, value in fields}
    return int(status.split(" ")[1]), headers, body


def ask(
    proxy: tuple[str, Path],
    *lines: str,
    method: str = "GET",
    target: str = POLICY_PATH,
    host: str = "mta-sts.example.com",
) -> tuple[int, dict[str, str], bytes]:
    """One request to a proxy on a connection for mta-sts.example.com, with more header lines."""
    extra = "".join(f"{line}\r\n" for line in lines)
    request = f"{method} {target} HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n"
    return exchange(*proxy, request)


def assert_policy_answer(answer: tuple[int, dict[str, str], bytes], body: bytes = BODY_D) -> None:
    """The policy as senders accept it (notes, tests 1, 19 and 21); ``body`` is empty for HEAD."""
    status, headers, received = answer
    assert (status, received) == (200, body), headers
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["content-length"] == str(len(BODY_D))
    assert headers["cache-control"] == "max-age=60"
    for absent in ("content-encoding", "content-range", "set-cookie", "location", "etag"):
        assert absent not in headers, headers


@pytest.mark.system
@pytest.mark.parametrize(
    "line",
    [
        "Accept-Encoding: gzip, deflate, br",  # never compressed (notes, section 1.2)
        "Range: bytes=0-5",  # never a 206 (notes, test 18)
        "If-None-Match: *",  # never a 304 (notes, test 17)
        "If-Modified-Since: Fri, 01 Jan 2100 00:00:00 GMT",
        "X-Forwarded-Proto: http",  # never a redirect to https (notes, test 16)
        "User-Agent: postfix-tlspol/1.8",  # real fetchers' agents are served (notes, 1.2)
    ],
)
def test_each_proxy_gives_senders_the_whole_policy_whatever_they_send(
    proxy: tuple[str, Path], line: str
) -> None:
    """
    What a sender sees over HTTPS is the app's plain 200, whatever the request carries, and
    whether or not the proxy has the policy in its cache (nginx's, filled by the first
    request).
    """
    assert_policy_answer(ask(proxy))
    for _ in range(2):
        assert_policy_answer(ask(proxy, line))


@pytest.mark.system
def test_each_proxy_serves_the_policy_over_http2(proxy: tuple[str, Path], tmp_path: Path) -> None:
    """
    The Go senders (go-mtasts, maddy, mox, postfix-tlspol) use HTTP/2 wherever a proxy offers
    it (Caddy does): the policy must be the same answer there.
    """
    address, ca_file = proxy
    body = tmp_path / "body"
    completed = subprocess.run(
        [
            need("curl", "curl"),
            "--silent",
            "--show-error",
            "--http2",
            "--cacert",
            str(ca_file),
            "--resolve",
            f"mta-sts.example.com:443:{address}",
            "--output",
            str(body),
            "--write-out",
            "%{http_version} %{http_code} %{content_type}",
            f"https://mta-sts.example.com{POLICY_PATH}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    version, status, content_type = completed.stdout.split(" ", 2)
    assert version == ("2" if address == CADDY_ADDRESS else "1.1")
    assert (status, content_type) == ("200", "text/plain; charset=utf-8")
    assert body.read_bytes() == BODY_D


@pytest.mark.system
def test_each_proxy_answers_head_with_the_headers_of_get(proxy: tuple[str, Path]) -> None:
    """Notes, test 10: HEAD gets GET's headers, Content-Length included, and no body."""
    for _ in range(2):
        assert_policy_answer(ask(proxy, method="HEAD"), b"")


@pytest.mark.system
@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_each_proxy_passes_on_the_apps_405(proxy: tuple[str, Path], method: str) -> None:
    """Notes, test 11: other methods on the policy path get 405 with Allow: GET, HEAD."""
    status, headers, _ = ask(proxy, "Content-Length: 0", method=method)
    assert status == 405
    assert headers["allow"] == "GET, HEAD"
    assert "location" not in headers


@pytest.mark.system
@pytest.mark.parametrize(
    "target",
    [
        POLICY_PATH + "/",  # notes, test 13: a 404, not a redirect
        "/.well-known/MTA-STS.txt",  # notes, test 14
        "/mta-sts.txt",
        "/",  # notes, test 15
        "//.well-known/mta-sts.txt/",
    ],
)
def test_each_proxy_answers_other_paths_with_a_plain_404(
    proxy: tuple[str, Path], target: str
) -> None:
    for _ in range(2):
        status, headers, body = ask(proxy, target=target)
        assert status == 404, (target, status)
        assert headers["content-type"].startswith("text/plain")
        assert "location" not in headers
        assert b"STSv1" not in body


@pytest.mark.system
def test_each_proxy_ignores_the_query_string(proxy: tuple[str, Path]) -> None:
    """Notes, test 12."""
    assert_policy_answer(ask(proxy, target=POLICY_PATH + "?x=1"))


@pytest.mark.system
@pytest.mark.parametrize(
    "host",
    [
        f"mta-sts.{UNKNOWN}",  # notes, test 5
        "mta-sts.sub.example.com",  # notes, test 7: no parent fallback (RFC 8461 section 3.4)
        "mta-sts.mta-sts.example.com",  # notes, test 8
    ],
)
def test_each_proxy_serves_no_policy_to_other_policy_hosts(
    proxy: tuple[str, Path], host: str
) -> None:
    """
    The proxies refuse the handshake for these names (see the certificate tests); asked on
    a policy host's connection, they answer the app's 404, never another domain's policy.
    """
    for _ in range(2):
        status, headers, body = ask(proxy, host=host)
        assert status == 404, (host, status)
        assert headers["content-type"].startswith("text/plain")
        assert b"STSv1" not in body


@pytest.mark.system
@pytest.mark.parametrize("path", [POLICY_PATH, "/metrics", "/readyz", "/healthz", "/reports"])
@pytest.mark.parametrize(
    "request_line",
    ["GET {path} HTTP/1.0\r\n", "GET {path} HTTP/1.1\r\nHost: \r\n"],
    ids=["http-1.0-without-host", "empty-host"],
)
def test_each_proxy_answers_a_request_without_a_host_with_a_4xx(
    proxy: tuple[str, Path], path: str, request_line: str
) -> None:
    """
    Notes, test 9: no Host (HTTP/1.0 needs none) or an empty one is a 400 or a 404, never a
    200 or a 5xx; and a policy host's connection never reaches the operational endpoints.
    """
    request = request_line.format(path=path) + "Connection: close\r\n\r\n"
    status, _, body = exchange(*proxy, request)
    assert status in (400, 404), (path, status, body)


def over_tls(
    address: str, ca_file: Path, name: str, method: str, path: str, body: bytes | None = None
) -> int:
    """The status of one request for ``name`` (its SNI and Host) to ``address``, port 443."""
    context = ssl.create_default_context(cafile=str(ca_file))
    connection = http.client.HTTPConnection(name, timeout=10)
    sock = socket.create_connection((address, 443), timeout=10)
    connection.sock = context.wrap_socket(sock, server_hostname=name)
    try:
        connection.request(method, path, body)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def stored(config: Path, report_id: str) -> bool:
    """Whether the upstream's store holds the report (the tests' reports are Google's)."""
    store = open_store(f"sqlite:///{config.parent / 'reports.db'}")
    return store.raw("Google Inc.", report_id) is not None


@pytest.mark.system
@pytest.mark.parametrize("name", ["mta-sts.example.com", "mta-sts.example.org"])
def test_each_proxy_refuses_reports_on_its_policy_hosts(
    proxy: tuple[str, Path], policies: tuple[Path, Process], name: str
) -> None:
    """A policy host serves the policy and nothing else: no report intake there."""
    address, ca_file = proxy
    report_id = f"to-{name}-through-{address}"
    body = encode(report(day=recent(), report_id=report_id))
    assert over_tls(address, ca_file, name, "POST", "/tlsrpt", body) == 404
    assert not stored(policies[0], report_id)


@pytest.mark.system
def test_each_proxy_passes_only_report_posts_on_its_reports_host(
    proxy: tuple[str, Path], policies: tuple[Path, Process]
) -> None:
    """The reports host is public: a report may be posted there, and nothing else asked."""
    address, ca_file = proxy
    report_id = f"to-{REPORTS_HOST}-through-{address}"
    body = encode(report(day=recent(), report_id=report_id))
    assert over_tls(address, ca_file, REPORTS_HOST, "POST", "/tlsrpt", body) == 201
    assert stored(policies[0], report_id)
    for method, path in [
        ("GET", "/metrics"),
        ("GET", "/readyz"),
        ("GET", "/reports"),
        ("GET", "/healthz"),
        ("GET", "/tls-allowed?domain=mta-sts.example.com"),
        ("GET", POLICY_PATH),
        ("GET", "/tlsrpt"),  # the intake's own 405 stays inside
        ("HEAD", "/tlsrpt"),
        ("POST", "/reports"),
        ("POST", "/tlsrpt/"),
    ]:
        status = over_tls(
            address, ca_file, REPORTS_HOST, method, path, b"" if method == "POST" else None
        )
        assert status == 404, (method, path, status)


@pytest.mark.system
def test_caddy_issues_certificates_only_for_served_names(
    caddy: Path, policies: tuple[Path, Process]
) -> None:
    _, upstream = policies
    handshake(CADDY_ADDRESS, "mta-sts.example.org", caddy)
    for name in (f"mta-sts.{UNKNOWN}", "example.org", "mta-sts.sub.example.org"):
        with pytest.raises(ssl.SSLError):
            handshake(CADDY_ADDRESS, name, caddy)
    asked = [line for line in upstream.output().splitlines() if "/tls-allowed" in line]
    assert any(
        f'query="domain=mta-sts.{UNKNOWN}"' in line and "status=404" in line for line in asked
    )
    assert any(
        'query="domain=mta-sts.example.org"' in line and "status=200" in line for line in asked
    )


# -- the container -----------------------------------------------------------------------------


def dockerfile() -> dict[str, Any]:
    """The final stage's ENV, ENTRYPOINT, CMD and HEALTHCHECK command."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final = text.split("\nFROM ")[-1]
    result: dict[str, Any] = {"env": {}}
    for line in final.splitlines():
        word, _, rest = line.strip().partition(" ")
        if word == "ENV":
            result["env"].update(dict(pair.split("=", 1) for pair in shlex.split(rest)))
        elif word in ("ENTRYPOINT", "CMD", "USER", "EXPOSE"):
            result[word] = json.loads(rest) if rest.startswith("[") else rest
        elif word == "HEALTHCHECK":
            result[word] = json.loads(rest[rest.index("CMD ") + 4 :])
    return result


def test_the_image_installs_the_postgresql_driver(tmp_path: Path) -> None:
    # Replicas share their reports through PostgreSQL (the Deployment runs two): without
    # psycopg in the image a postgresql:// store is a config error and serve does not start.
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    (run,) = [line for line in text.splitlines() if "> requirements.txt" in line]
    argv = shlex.split(run.strip().removeprefix("RUN ").partition(" > requirements.txt")[0])
    assert argv[0] == "python"
    (tmp_path / "pyproject.toml").write_bytes((ROOT / "pyproject.toml").read_bytes())
    listed = subprocess.run(
        [sys.executable, *argv[1:]], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert "psycopg[binary]>=3.1" in listed.stdout.splitlines()


@pytest.mark.system
def test_the_image_command_line(tmp_path: Path) -> None:
    image = dockerfile()
    assert image["ENTRYPOINT"] == ["mtasts-host"]
    assert image["USER"] == "10001:10001"
    assert image["EXPOSE"] == "8080"
    assert image["env"]["MTASTS_HOST_CONFIG"] == "/etc/mtasts-host/config.yaml"
    # The same command and environment, with the config at a path of ours and loopback only.
    port = free_port()
    env = {
        **image["env"],
        "MTASTS_HOST_CONFIG": str(ROOT / "config.example.yaml"),
        "MTASTS_HOST_HOST": "127.0.0.1",
        "MTASTS_HOST_PORT": str(port),
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    # As with `docker run --read-only`: the whole root filesystem read-only, in a private
    # mount namespace, so that any write the server attempted would fail.
    read_only = ["unshare", "--mount", "sh", "-c", 'mount -o remount,bind,ro / && exec "$@"', "-"]
    argv = [*read_only, *image["ENTRYPOINT"], *image["CMD"]]
    healthcheck = image["HEALTHCHECK"]  # on the port MTASTS_HOST_PORT names, as the server
    with running(
        argv, tmp_path / "container.log", "127.0.0.1", port, env=env, cwd=tmp_path
    ) as server:
        assert http_get(port)[0] == 200
        check = subprocess.run(healthcheck, env=env, timeout=10, check=False)
        assert check.returncode == 0
        elsewhere = {**env, "MTASTS_HOST_PORT": str(free_port())}
        missed = subprocess.run(healthcheck, env=elsewhere, timeout=10, capture_output=True)
        assert missed.returncode != 0
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(10) in (0, -signal.SIGTERM)  # TimeoutExpired past 10 s
    assert "Traceback" not in server.output()


def test_the_image_healthcheck_asks_the_server_itself_whatever_the_proxy_settings(
    tmp_path: Path,
) -> None:
    # The Docker CLI gives containers the proxy of its config.json as http_proxy and
    # HTTP_PROXY: the health check must not ask that proxy for 127.0.0.1.
    image = dockerfile()
    port = free_port()
    closed = free_port()  # nothing listens there: a proxy that refuses every connection
    proxy = f"http://127.0.0.1:{closed}"
    env = {
        "MTASTS_HOST_PORT": str(port),
        "http_proxy": proxy,
        "HTTP_PROXY": proxy,
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
    }
    argv = serve_argv(ROOT / "config.example.yaml", port)
    with running(argv, tmp_path / "serve.log", "127.0.0.1", port):
        check = subprocess.run(
            image["HEALTHCHECK"], env={**os.environ, **env}, timeout=10, capture_output=True
        )
        assert check.returncode == 0, check.stderr.decode()


def test_the_image_healthcheck_asks_where_the_variables_have_the_server_listen(
    tmp_path: Path,
) -> None:
    # It asked 127.0.0.1 on MTASTS_HOST_PORT whatever MTASTS_HOST_UDS or MTASTS_HOST_HOST
    # said: a server on a Unix socket (beside a proxy in the same pod) was always unhealthy.
    image = dockerfile()
    base = {"PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}

    def check(**env: str) -> int:
        done = subprocess.run(
            image["HEALTHCHECK"], env={**base, **env}, timeout=10, capture_output=True
        )
        return done.returncode

    path = tmp_path / "mtasts.sock"
    argv = [*serve_argv(ROOT / "config.example.yaml", 0)[:6], "--uds", str(path)]
    with running_on_socket(argv, tmp_path / "uds.log", path):
        assert check(MTASTS_HOST_UDS=str(path)) == 0
        assert check(MTASTS_HOST_UDS=str(tmp_path / "other.sock")) == 1
    port = free_port("127.0.0.2")
    argv = serve_argv(ROOT / "config.example.yaml", port, "--host", "127.0.0.2")
    with running(argv, tmp_path / "host.log", "127.0.0.2", port):
        assert check(MTASTS_HOST_HOST="127.0.0.2", MTASTS_HOST_PORT=str(port)) == 0
        assert check(MTASTS_HOST_HOST="0.0.0.0", MTASTS_HOST_PORT=str(port)) == 1
        # Several addresses, as serve reads them: the first is asked.
        assert check(MTASTS_HOST_HOST="127.0.0.2,::", MTASTS_HOST_PORT=str(port)) == 0
        assert check(MTASTS_HOST_HOST="127.0.0.2 ::", MTASTS_HOST_PORT=str(port)) == 0
        # Blanks and commas before it, which serve skips: it asked 127.0.0.1.
        assert check(MTASTS_HOST_HOST=" ,127.0.0.2,::", MTASTS_HOST_PORT=str(port)) == 0
    # An IPv6 address bracketed as in a URL, which serve takes: it was looked up as a name.
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        port = probe.getsockname()[1]
    argv = serve_argv(ROOT / "config.example.yaml", port, "--host", "[::1]")
    with running(argv, tmp_path / "ipv6.log", "::1", port):
        assert check(MTASTS_HOST_HOST="[::1]", MTASTS_HOST_PORT=str(port)) == 0
        assert check(MTASTS_HOST_HOST="[::]", MTASTS_HOST_PORT=str(port)) == 0


# -- Kubernetes --------------------------------------------------------------------------------

K8S = DEPLOY / "kubernetes"


def manifests() -> dict[str, dict[str, Any]]:
    return {path.name: yaml.safe_load(path.read_text()) for path in sorted(K8S.glob("*.yaml"))}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = manifests()["kustomization.yaml"]
    assert sorted(kustomization["resources"]) == sorted(
        name for name in manifests() if name != "kustomization.yaml"
    )


@pytest.mark.parametrize(
    "name", sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
)
def test_manifest_is_valid_kubernetes(name: str) -> None:
    kubernetes_validate(manifests()[name], "1.37.0", strict=True)


def configmap_config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(manifests()["configmap.yaml"]["data"]["config.yaml"])
    return path


def test_configmap_passes_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(configmap_config(tmp_path))]) == 0
    assert capsys.readouterr().err == ""


def test_ingress_carries_every_policy_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dns", "--format", "hosts", str(configmap_config(tmp_path))]) == 0
    hosts = capsys.readouterr().out.split()
    ingress = manifests()["ingress.yaml"]
    assert ingress["spec"]["tls"][0]["hosts"] == hosts
    rules = [rule for rule in ingress["spec"]["rules"] if rule["host"] != REPORTS_HOST]
    assert [rule["host"] for rule in rules] == hosts
    assert "cert-manager.io/cluster-issuer" in ingress["metadata"]["annotations"]
    for rule in rules:  # the policy alone, never the report intake
        assert [(p["path"], p["pathType"]) for p in rule["http"]["paths"]] == [
            (POLICY_PATH, "Exact")
        ]


def test_ingress_routes_the_report_path_alone_on_the_reports_host() -> None:
    ingress = manifests()["ingress.yaml"]
    assert [tls["hosts"] for tls in ingress["spec"]["tls"]][1:] == [[REPORTS_HOST]]
    (rule,) = [rule for rule in ingress["spec"]["rules"] if rule["host"] == REPORTS_HOST]
    (path,) = rule["http"]["paths"]
    assert (path["path"], path["pathType"]) == (ReportsSettings("sqlite:///x.db").path, "Exact")
    assert path["backend"] == ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]


def test_deployment_is_locked_down() -> None:
    deployment = manifests()["deployment.yaml"]
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert spec["replicas"] == 2
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert container["resources"]["requests"]
    assert container["resources"]["limits"]
    assert "subPath" not in container["volumeMounts"][0]  # subPath mounts never update
    annotations = spec["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/path"] == "/metrics"


def test_deployment_runs_the_image_of_this_version() -> None:
    # The README has users build and push the image with this tag.
    (container,) = manifests()["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    assert container["image"] == f"mtasts-host:{__version__}"


def test_deployment_drains_before_it_stops() -> None:
    # A pod that is told to stop leaves the Service's endpoints at that moment, but the
    # ingress controller and kube-proxy learn of it later and still send it requests: it got
    # SIGTERM at once and refused them. preStop waits first (exec: the image's sleep, since the
    # native sleep action needs Kubernetes 1.30), and the grace period covers that wait and
    # everything serve does after SIGTERM, each bounded: the kubelet kills the pod after it.
    pod = manifests()["deployment.yaml"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command[0] == "sleep"
    drain = int(command[1])
    assert drain >= 5
    assert drain + shutdown_time() < pod["terminationGracePeriodSeconds"]


def shutdown_time() -> float:
    """The longest ``serve`` takes after SIGTERM: the requests in flight, then the watcher,
    the publisher and the doctor, each stopped with a timeout of its own."""
    stops: list[float] = [
        parameter.default
        for stop in (Reloader.stop, AutoPublisher.stop, Background.stop)
        for name, parameter in inspect.signature(stop).parameters.items()
        if name == "timeout"
    ]
    assert len(stops) == 3
    return GRACEFUL_SHUTDOWN + sum(stops)


def test_deployment_probes_answer_on_a_running_server(tmp_path: Path) -> None:
    (container,) = manifests()["deployment.yaml"]["spec"]["template"]["spec"]["containers"]
    port = free_port()
    argv = serve_argv(configmap_config(tmp_path), port, *container["args"][1:])
    with running(argv, tmp_path / "serve.log", "127.0.0.1", port):
        for probe in ("livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            # kubelet probes the pod address, which is not an mta-sts.* host
            connection = http.client.HTTPConnection("127.0.0.1", port)
            connection.request("GET", path, headers={"Host": f"10.1.2.3:{port}"})
            assert 200 <= connection.getresponse().status < 300
            connection.close()
        scraped = http_get(port, host=f"10.1.2.3:{port}")
        assert scraped[0] == 404  # the policy path is not served on the pod address


# -- Docker Compose ------------------------------------------------------------------------------


def test_compose_wires_caddy_to_mtasts_host() -> None:
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    services = compose["services"]
    policies, caddy = services["mtasts-host"], services["caddy"]
    assert policies["build"] == "../.."
    assert policies["read_only"] is True
    # the directory is mounted, so that files replaced by rename are seen
    assert policies["volumes"][0] == "./:/etc/mtasts-host:ro"
    assert policies["environment"]["MTASTS_HOST_CONFIG"] == "/etc/mtasts-host/config.yaml"
    assert caddy["environment"]["MTASTS_HOST_UPSTREAM"] == "mtasts-host:8080"
    # Docker's default of 10 s killed serve while the publisher finished a record.
    assert shutdown_time() < float(policies["stop_grace_period"].removesuffix("s"))
    caddyfile = caddy["volumes"][0].split(":")[0]
    assert (DEPLOY / "compose" / caddyfile).resolve() == (DEPLOY / "caddy" / "Caddyfile")
    # 80: the ACME HTTP-01 challenge, and Caddy's redirects to https
    assert caddy["ports"] == ["80:80", "443:443"]
    assert dockerfile()["EXPOSE"] == "8080"


def test_compose_gives_the_reports_store_a_writable_volume() -> None:
    # The root filesystem is read-only: the example's SQLite store (config.example.yaml,
    # README "TLS reports") must lie on a volume, or the intake answers 503. A new named
    # volume takes the owner of the image's directory, which must be user 10001.
    example = re.search(r"store: sqlite:///(/\S+)", (ROOT / "config.example.yaml").read_text())
    assert example is not None
    directory = str(PurePosixPath(example[1]).parent)
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    mounts = [volume.split(":") for volume in compose["services"]["mtasts-host"]["volumes"]]
    (name,) = [mount[0] for mount in mounts if mount[1:] == [directory]]  # writable
    assert name in compose["volumes"]
    final = (ROOT / "Dockerfile").read_text().replace("\\\n", " ").split("\nFROM ")[-1]
    assert f"install -d -o 10001 -g 10001 {directory}" in final
    assert dockerfile()["USER"] == "10001:10001"


def test_compose_has_mtasts_host_log_the_senders_address(tmp_path: Path) -> None:
    # Caddy reaches mtasts-host from its own container's address, never from 127.0.0.1,
    # uvicorn's only trusted proxy by default: unless the compose environment trusts it, every
    # access line names Caddy instead of the sender (README, Operations).
    compose = yaml.safe_load((DEPLOY / "compose" / "compose.yaml").read_text())
    env = {
        key: str(value) for key, value in compose["services"]["mtasts-host"]["environment"].items()
    }
    port = free_port()
    argv = serve_argv(ROOT / "config.example.yaml", port)  # --config wins over the variable
    with running(argv, tmp_path / "serve.log", "127.0.0.1", port, env=env) as server:
        with socket.socket() as sock:
            sock.bind(("127.0.0.2", 0))  # Caddy, at an address of its own
            sock.connect(("127.0.0.1", port))
            sock.sendall(
                f"GET {POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
                "X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n".encode()
            )
            assert sock.recv(12) == b"HTTP/1.1 200"
        wait_until(lambda: logged(server, 'client="203.0.113.9"'))


def test_nginx_has_mtasts_host_log_the_senders_address_over_a_unix_socket(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # Behind nginx on `serve --uds`, the proxy's end of the socket has no address for uvicorn
    # to trust: mtasts-host trusts what comes through the socket, and nginx must send the
    # sender's address alone, not a list whose first address the sender wrote (README,
    # Operations).
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = trustme.CA()
    cert = ca.issue_cert("mta-sts.example.com")
    cert.private_key_pem.write_to_path(str(certs / "mta-sts.example.com.key"))
    (certs / "mta-sts.example.com.crt").write_bytes(
        b"".join(b.bytes() for b in cert.cert_chain_pems)
    )
    context = ssl.create_default_context()
    ca.configure_trust(context)
    path = tmp_path / "mtasts.sock"
    argv = uds_argv(write_config(), path)
    port = free_port(CACHE_ADDRESS)
    with (
        running_on_socket(argv, tmp_path / "serve.log", path) as server,
        nginx_running(tmp_path / "nginx", certs, path, CACHE_ADDRESS, port),
        socket.socket() as sock,
    ):
        sock.settimeout(10)
        sock.bind(("127.0.0.2", 0))  # the sender
        sock.connect((CACHE_ADDRESS, port))
        with context.wrap_socket(sock, server_hostname="mta-sts.example.com") as tls:
            tls.sendall(
                f"GET {POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
                "X-Forwarded-For: 203.0.113.9\r\nConnection: close\r\n\r\n".encode()
            )
            assert read_until_closed(tls).endswith(BODY_D)
        wait_until(lambda: logged(server, 'path="/.well-known/mta-sts.txt"'))
    assert 'client="127.0.0.2"' in server.output()


def test_nginx_closes_idle_connections_to_mtasts_host_before_it_does() -> None:
    # nginx sending a request on a kept-alive connection just as mtasts-host closes it for
    # being idle gets no answer: it tries a GET again, but a POST (a TLS report) it answers
    # with a 502. Measured with serve --timeout-keep-alive 1 and a POST a second after the
    # last: 2 of 59 such reports got a 502, none once nginx closed first.
    upstream = re.search(r"\nupstream mtasts_host \{\n(.*?)\n\}", SITE.read_text(), re.S)
    assert upstream is not None
    timeout = re.search(r"^ *keepalive_timeout (\d+)s;", upstream[1], re.M)
    assert timeout is not None, upstream[1]
    default = next(
        option.default for option in SERVE_OPTIONS if option.name == "timeout-keep-alive"
    )
    assert isinstance(default, int)
    assert int(timeout[1]) < default


def test_caddy_closes_idle_connections_to_mtasts_host_before_it_does() -> None:
    # As for nginx: Caddy kept idle connections for 2 minutes, and a report POSTed on one as
    # mtasts-host closed it got a 502 ("EOF" in Caddy's log; 1 of 61 such reports a second
    # after the last, with serve --timeout-keep-alive 1). Every reverse_proxy must close first.
    block = r"\n\t+reverse_proxy [^\n]*\{\n((?:[^{}]|\{[^{}]*\})*)\}"
    proxies = re.findall(block, CADDYFILE.read_text())
    default = next(
        option.default for option in SERVE_OPTIONS if option.name == "timeout-keep-alive"
    )
    assert isinstance(default, int)
    assert len(proxies) == 2
    for proxy in proxies:
        timeout = re.search(r"\n\t+transport http \{\n\t+keepalive (\d+)s\n", proxy)
        assert timeout is not None, proxy
        assert int(timeout[1]) < default


@contextlib.contextmanager
def caddy_in_front(
    config: Path,
    tmp_path: Path,
    http_port: int | None = None,
    *,
    body_timeout: float | None = None,
    edit: Callable[[str], str] | None = None,
) -> Iterator[tuple[int, Path, Process]]:
    """
    ``mtasts-host serve`` of ``config`` behind the shipped Caddyfile, on a free port of
    CADDY_ADDRESS (and ``http_port`` for http, if given) once the certificate of
    mta-sts.example.com verifies: that port, Caddy's root certificate and the server.
    ``body_timeout`` replaces the intake's ``BODY_TIMEOUT`` in the server, and ``edit`` the
    Caddyfile's text, for a test of timeouts at a scale it can wait for.
    """
    upstream, port = free_port(), free_port(CADDY_ADDRESS)
    argv, env = shipped_caddy(
        tmp_path / "caddy", upstream, CADDY_ADDRESS, https_port=port, http_port=http_port, edit=edit
    )
    root = tmp_path / "caddy" / "storage" / "pki" / "authorities" / "local" / "root.crt"
    serve = serve_argv(config, upstream)
    if body_timeout is not None:
        serve[1:3] = ["-c", _BODY_TIMEOUT_REPLACED % body_timeout]
    with (
        running(serve, tmp_path / "serve.log", "127.0.0.1", upstream) as s,
        running(argv, tmp_path / "caddy.log", CADDY_ADDRESS, port, env=env),
    ):
        wait_until(root.exists, timeout=20)
        # The certificate is issued on demand, valid from the current second.
        wait_until(partial(caddy_verifies, port, "mta-sts.example.com", root), timeout=20)
        yield port, root, s


_BODY_TIMEOUT_REPLACED = """
import sys
import mtasts_host.reports.http
from mtasts_host.cli import main
mtasts_host.reports.http.BODY_TIMEOUT = %r
raise SystemExit(main(sys.argv[1:]))
"""


def caddy_verifies(port: int, name: str, ca_file: Path) -> bool:
    """Whether Caddy's certificate for ``name`` verifies against the CA."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        contextlib.suppress(OSError, ssl.SSLError),
        socket.create_connection((CADDY_ADDRESS, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname=name),
    ):
        return True
    return False


def caddy_policy_head(port: int, root: Path) -> list[bytes]:
    """The header lines, in lower case, of Caddy's answer to mta-sts.example.com's policy."""
    context = ssl.create_default_context(cafile=str(root))
    with (
        socket.create_connection((CADDY_ADDRESS, port), timeout=10) as sock,
        context.wrap_socket(sock, server_hostname="mta-sts.example.com") as tls,
    ):
        tls.sendall(
            f"GET {POLICY_PATH} HTTP/1.1\r\nHost: mta-sts.example.com\r\n"
            "Connection: close\r\n\r\n".encode()
        )
        answer = read_until_closed(tls)
    assert answer.endswith(BODY_D)
    return answer.partition(b"\r\n\r\n")[0].lower().split(b"\r\n")


def test_caddy_sends_one_server_header(write_config: WriteConfig, tmp_path: Path) -> None:
    # Caddy names itself in Server and passed uvicorn's on as a second line: two lines of a
    # field that is no list (RFC 9110 sections 5.3 and 10.2.4).
    with caddy_in_front(write_config(), tmp_path) as (port, root, _):
        head = caddy_policy_head(port, root)
    assert [line for line in head if line.startswith(b"server:")] == [b"server: caddy"]


def test_caddy_offers_no_http3(write_config: WriteConfig, tmp_path: Path) -> None:
    # Caddy listened on UDP too and sent 'Alt-Svc: h3=":443"' with each policy: a port that
    # compose.yaml does not publish, so clients that take it up wait for QUIC in vain.
    with caddy_in_front(write_config(), tmp_path) as (port, root, _):
        head = caddy_policy_head(port, root)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind((CADDY_ADDRESS, port))  # free: nothing listens for HTTP/3
    assert [line for line in head if line.startswith(b"alt-svc:")] == []


@pytest.mark.parametrize(
    ("host", "target"),
    [
        ("mta-sts.example.com", POLICY_PATH),
        ("MTA-STS.example.com:80", POLICY_PATH),
        (REPORTS_HOST, "/tlsrpt"),
        ("localhost", "/metrics"),
    ],
)
def test_caddy_redirects_plain_http_to_https(
    write_config: WriteConfig, tmp_path: Path, host: str, target: str
) -> None:
    # compose.yaml published port 443 alone: no ACME HTTP-01 challenge, and plain http got
    # no answer. Port 80 answers now, but never with a policy or anything of the app's:
    # senders fetch over https only (RFC 8461 section 3.3).
    http_port = free_port(CADDY_ADDRESS)
    with (
        caddy_in_front(write_config(), tmp_path, http_port) as (_, _, server),
        socket.create_connection((CADDY_ADDRESS, http_port), timeout=10) as sock,
    ):
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        head, _, body = read_response(sock).partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    name = host.lower().removesuffix(":80")
    assert (status, headers["location"]) == (
        "HTTP/1.1 308 Permanent Redirect",
        f"https://{name}{target}",
    )
    assert body == b""
    assert f'path="{target}"' not in server.output()


def caddy_timeouts() -> dict[str, int]:
    """The server timeouts of the shipped Caddyfile, in seconds."""
    block = re.search(r"\n\t\ttimeouts \{\n((?:\t\t\t\w+ \d+s\n)+)\t\t\}\n", CADDYFILE.read_text())
    assert block is not None
    return {name: int(value) for name, value in re.findall(r"(\w+) (\d+)s", block[1])}


def test_caddy_reads_a_report_body_for_longer_than_mtasts_host_waits_for_it() -> None:
    # Caddy's read_body counts from the request's first byte, the intake's 60 s from its
    # headers: Caddy must give up last, or it cuts the request off and answers 200 with no
    # body (seen with read_body 10s), which a sender takes for a stored report.
    timeouts = caddy_timeouts()
    assert timeouts["read_header"] + BODY_TIMEOUT < timeouts["read_body"]


def test_caddy_passes_on_the_apps_408_to_a_report_body_that_trickles(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # Over HTTP/1.1 Caddy (Go) reads the rest of a body of up to 256 KiB before it answers,
    # and it read on for ever: the intake's 408 after 60 s never reached a sender that kept
    # trickling its body (still none after 200 s). Scaled down: Caddy's read_body a tenth of
    # the shipped one, the intake's wait a twentieth, for a margin a loaded machine keeps
    # (the test above keeps the shipped numbers in order).
    timeouts = caddy_timeouts()
    scaled = BODY_TIMEOUT / 20

    def tenth(caddyfile: str) -> str:
        shipped = f"read_body {timeouts['read_body']}s"
        assert shipped in caddyfile
        return caddyfile.replace(shipped, f"read_body {timeouts['read_body'] / 10:g}s")

    rua = f"mode: enforce\n    tlsrpt_rua: ['https://{REPORTS_HOST}/tlsrpt']"
    store = f"sqlite:///{tmp_path / 'reports.db'}"
    config = write_config(
        CONFIG_D.replace("mode: enforce", rua) + f"reports: {{store: '{store}'}}\n"
    )
    with caddy_in_front(config, tmp_path, body_timeout=scaled, edit=tenth) as (port, root, server):
        wait_until(partial(caddy_verifies, port, REPORTS_HOST, root), timeout=20)
        context = ssl.create_default_context(cafile=str(root))
        with (
            socket.create_connection((CADDY_ADDRESS, port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=REPORTS_HOST) as tls,
        ):
            tls.sendall(
                f"POST /tlsrpt HTTP/1.1\r\nHost: {REPORTS_HOST}\r\n"
                "Content-Length: 100000\r\n\r\n".encode()
            )
            tls.settimeout(0.5)
            answer = b""
            for _ in range(200):  # two bytes a second, far fewer than promised
                with contextlib.suppress(TimeoutError):
                    tls.sendall(b"{")
                    answer = tls.recv(65536)
                    break
            answer += read_until_closed(tls)
        assert logged(server, "status=408")
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.split(b"\r\n")[0] == b"HTTP/1.1 408 Request Timeout"
    assert body == f"the report did not arrive within {scaled:g} s\n".encode()


@pytest.mark.parametrize("path", ["/readyz", "/metrics", "/reports"])
def test_caddy_keeps_the_operational_endpoints_off_its_policy_hosts_over_http2(
    write_config: WriteConfig, tmp_path: Path, path: str
) -> None:
    # Go's (?i) folds the long s, U+017F, to "s", so a matcher of (?i)^mta-sts\. passed on
    # HTTP/2's :authority "mta-\u017fts.\u200d" (HTTP/1.1 refuses such a Host), which
    # mtasts-host takes for no policy host (it is no IDNA name): the operational endpoints
    # answered on a policy host's connection, /reports included.
    store = f"sqlite:///{tmp_path / 'reports.db'}"
    config = write_config(CONFIG_D + f"reports: {{store: '{store}'}}\n")
    with caddy_in_front(config, tmp_path) as (port, root, _):
        completed = subprocess.run(
            [
                need("curl", "curl"),
                "--silent",
                "--show-error",
                "--http2",
                "--cacert",
                str(root),
                "--resolve",
                f"mta-sts.example.com:{port}:{CADDY_ADDRESS}",
                "--header",
                "Host: mta-\u017fts.\u200d",
                "--write-out",
                " %{http_version} %{http_code}",
                f"https://mta-sts.example.com:{port}{path}",
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    assert completed.stdout == (
        "Not found: no MTA-STS policy is served for this host and path. 2 404"
    )


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("mta-sts.example.com:443", id="port"),
        pytest.param("mta-sts.example.com:0443", id="port-zero"),
        pytest.param("mta-sts.example.com:", id="port-empty"),
        # Caddy got mta-sts.xn--exmple-qx68a.com and mta-sts.xn--examplecom-th3i for these.
        pytest.param("mta-sts.ex\uff41mple.com", id="fullwidth"),
        pytest.param("mta-sts.example\u3002com", id="ideographic-dot"),
    ],
)
def test_caddy_gets_no_certificate_for_a_name_that_only_normalises_to_a_policy_host(
    write_config: WriteConfig, tmp_path: Path, name: str
) -> None:
    # A client may send such a name in its SNI, and Caddy asks /tls-allowed about it as it
    # came: a 200 had Caddy get a certificate for that name as written, one for each of the
    # endless ways to write it, each an order to the ACME CA and a file kept. openssl sends
    # the name as it is, where Python's ssl would map it to mta-sts.example.com first.
    openssl = need("openssl", "openssl")
    with caddy_in_front(write_config(), tmp_path) as (port, _, server):
        handshake = subprocess.run(
            [openssl, "s_client", "-connect", f"{CADDY_ADDRESS}:{port}", "-servername", name],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
            check=False,
        )
        asked = f'query="domain={urllib.parse.quote_plus(name)}" status=404'
        wait_until(lambda: logged(server, asked))
    assert handshake.returncode == 1, handshake.stdout
    issued = [path.name for path in (tmp_path / "caddy" / "storage").glob("certificates/*/*")]
    assert issued == ["mta-sts.example.com"]


# -- nginx's cache ---------------------------------------------------------------------------


Fetch = Callable[..., tuple[bytes, bytes]]
"""GET the policy (or ``path=``) of a policy host through nginx, with any more header lines:
the status line and the body."""


class Cached(NamedTuple):
    """mtasts-host behind the shipped nginx, its cache included."""

    config: Path
    upstream: int
    """The app's port."""
    fetch: Fetch
    app: Process


@pytest.fixture
def cached(write_config: WriteConfig, tmp_path: Path) -> Iterator[Cached]:
    """
    mtasts-host serving CONFIG_D behind the shipped nginx config, its cache included, with
    certificates for mta-sts.example.com and mta-sts.example.net.
    """
    config = write_config(CONFIG_D)
    certs = tmp_path / "certs"
    certs.mkdir()
    ca = trustme.CA()
    for name in ("mta-sts.example.com", "mta-sts.example.net"):
        cert = ca.issue_cert(name)
        cert.private_key_pem.write_to_path(str(certs / f"{name}.key"))
        (certs / f"{name}.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
    context = ssl.create_default_context()
    ca.configure_trust(context)
    upstream, port = free_port(), free_port(CACHE_ADDRESS)

    def fetch(name: str, *headers: str, path: str = POLICY_PATH) -> tuple[bytes, bytes]:
        lines = "".join(f"{header}\r\n" for header in headers)
        with (
            socket.create_connection((CACHE_ADDRESS, port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=name) as tls,
        ):
            request = f"GET {path} HTTP/1.1\r\nHost: {name}\r\n{lines}Connection: close\r\n\r\n"
            tls.sendall(request.encode())
            head, _, body = read_until_closed(tls).partition(b"\r\n\r\n")
            return head.split(b"\r\n")[0], body

    with (
        running(serve_argv(config, upstream), tmp_path / "serve.log", "127.0.0.1", upstream) as app,
        nginx_running(tmp_path / "nginx", certs, ("127.0.0.1", upstream), CACHE_ADDRESS, port),
    ):
        yield Cached(config, upstream, fetch, app)


def test_a_reload_reaches_senders_through_nginx_within_the_cache_lifetime(
    cached: Cached,
) -> None:
    """
    The shipped cache keeps a policy for the app's max-age=60 (RFC 8461 section 8.2); then
    a changed policy is served, and a removed domain's 404, which nginx may not keep.
    """
    config, upstream, fetch, _ = cached
    name, gone = "mta-sts.example.com", "mta-sts.example.net"
    removed = b"version: STSv1\r\nmode: testing\r\nmx: mx.example.net\r\nmax_age: 604800\r\n"
    config.write_text(CONFIG_D + "  example.net: {mode: testing, mx: [mx.example.net]}\n")
    wait_until(partial(serves, upstream, removed, gone))
    assert fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)  # now cached
    assert fetch(gone) == (b"HTTP/1.1 200 OK", removed)
    new = BODY_D.replace(b"enforce", b"testing")
    config.write_text(CONFIG_D.replace("enforce", "testing"))
    wait_until(partial(serves, upstream, new))  # the app serves the new policy at once...
    seen = fetch(name), fetch(gone)  # ...while nginx still answers from its cache
    wait_until(  # within the minute, requests coming all along
        lambda: (
            fetch(name) == (b"HTTP/1.1 200 OK", new) and fetch(gone)[0].endswith(b" 404 Not Found")
        ),
        timeout=75,
    )
    assert seen == ((b"HTTP/1.1 200 OK", BODY_D), (b"HTTP/1.1 200 OK", removed))


def test_nginx_keeps_no_answer_the_app_marks_no_store(cached: Cached) -> None:
    """
    A host without a policy gets the app's 404, marked no-store: nginx keeps none of it, so
    a domain added to the config is served through nginx as soon as the app serves it.
    """
    config, upstream, fetch, _ = cached
    name = "mta-sts.example.net"
    status, body = fetch(name)
    assert status == b"HTTP/1.1 404 Not Found", body
    assert fetch(name)[0] == b"HTTP/1.1 404 Not Found"  # asked twice: a cache would keep it
    config.write_text(CONFIG_D + "  example.net: {mode: testing, mx: [mx.example.net]}\n")
    added = b"version: STSv1\r\nmode: testing\r\nmx: mx.example.net\r\nmax_age: 604800\r\n"
    wait_until(partial(serves, upstream, added, name))
    assert fetch(name) == (b"HTTP/1.1 200 OK", added)


@contextlib.contextmanager
def overloaded(port: int) -> Iterator[list[int]]:
    """On ``port``, what an app over ``--limit-concurrency`` answers to every request: a 503.
    Yields the count of requests it answered."""
    answered = [0]
    with socket.create_server(("127.0.0.1", port)) as listener:
        listener.settimeout(0.1)
        stop = threading.Event()

        def answer() -> None:
            while not stop.is_set():
                try:
                    connection, _ = listener.accept()
                except TimeoutError:
                    continue
                with connection:
                    connection.settimeout(5)
                    with contextlib.suppress(OSError):
                        connection.recv(65536)
                        connection.sendall(
                            b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n"
                        )
                        answered[0] += 1

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        try:
            yield answered
        finally:
            stop.set()
            thread.join(5)


def test_nginx_serves_the_last_policy_while_the_app_is_down(cached: Cached) -> None:
    """
    Past its minute, a cached policy is asked of the app again; while the app cannot be
    reached (restarting, down) or is overloaded (a 503), senders get that policy rather
    than a 502 or a 503.
    """
    name = "mta-sts.example.com"
    assert cached.fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)  # now cached
    cached.app.stop()
    assert cached.fetch("mta-sts.example.net")[0] == b"HTTP/1.1 502 Bad Gateway"  # not cached
    time.sleep(61)  # the cached answer's max-age=60 runs out
    assert cached.fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)
    with overloaded(cached.upstream) as answered:
        assert cached.fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)
        assert cached.fetch("mta-sts.example.net")[0] == b"HTTP/1.1 503 Service Unavailable"
    assert answered[0] >= 2  # asked for both: the stale policy stood in for its 503


def read_until_closed(tls: ssl.SSLSocket) -> bytes:
    """Everything the server sends until it closes the connection (a 304 has no length)."""
    data = b""
    with contextlib.suppress(ssl.SSLEOFError, ConnectionResetError):
        while chunk := tls.recv(65536):
            data += chunk
    return data


@pytest.mark.parametrize(
    "header",
    [
        "If-None-Match: *",
        'If-Match: "b72bbb081b3c130d"',
        "If-Unmodified-Since: Thu, 01 Jan 1970 00:00:01 GMT",
        "If-Modified-Since: Tue, 01 Jan 2036 00:00:00 GMT",
    ],
)
def test_nginx_answers_conditional_requests_with_the_whole_policy(
    cached: Cached, header: str
) -> None:
    """
    Senders accept only a 200 (RFC 8461 section 3.3), so conditional headers change nothing
    (RFC 8461 notes, test 17): nginx must not answer them itself from a cacheable response,
    with a 304 or a 412, whether the policy is in its cache yet or not.
    """
    fetch = cached.fetch
    name = "mta-sts.example.com"
    assert fetch(name, header) == (b"HTTP/1.1 200 OK", BODY_D)  # not cached yet
    assert fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)  # now cached
    assert fetch(name, header) == (b"HTTP/1.1 200 OK", BODY_D)


@pytest.mark.parametrize(
    "path",
    [
        # nginx's $uri merges slashes and resolves dot segments, but passes the path on as
        # sent, and the app answers that path: a 404, as in test_app
        "/.well-known//mta-sts.txt",
        "//.well-known/mta-sts.txt",
        "/.well-known/./mta-sts.txt",
        "/x/../.well-known/mta-sts.txt",
    ],
)
def test_nginx_answers_another_form_of_the_path_as_the_app_does(cached: Cached, path: str) -> None:
    """
    A path that is the policy's only once normalised gets the app's 404, whether nginx has
    the policy in its cache or not: never the policy some of the time.
    """
    fetch = cached.fetch
    name = "mta-sts.example.com"
    assert fetch(name, path=path)[0] == b"HTTP/1.1 404 Not Found"  # the policy not cached yet
    assert fetch(name) == (b"HTTP/1.1 200 OK", BODY_D)  # now cached
    assert fetch(name, path=path)[0] == b"HTTP/1.1 404 Not Found"
    assert fetch(name, path=POLICY_PATH + "?x=1") == (b"HTTP/1.1 200 OK", BODY_D)


def test_nginx_names_no_version_of_its_own(cached: Cached) -> None:
    """nginx's own answers (here to a header too large for its buffers) give no version."""
    status, body = cached.fetch("mta-sts.example.com", "X-Big: " + "b" * 20_000)
    assert status.startswith(b"HTTP/1.1 400 "), body
    assert b"<center>nginx</center>" in body
    assert b"nginx/" not in body
