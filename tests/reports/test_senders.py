"""
A real sender: tlsrpt-reporter (sys4's, which Postfix uses) turns its own collected data into
reports and delivers them to ``https://tlsrpt.example.com/tlsrpt``, the reports host of its
own, through the shipped nginx config and the shipped Caddyfile, and by mail to
``reports ingest``.
"""

from __future__ import annotations

import json
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import trustme

from mtasts_host.policy import Mode, Policy
from mtasts_host.reports import open_store, read_summaries
from mtasts_host.reports.sessions import Sessions

from ..caddy import shipped_caddy
from ..conftest import wait_until
from ..nginx import nginx as shipped_nginx
from ..processes import Process, free_port, need, running, wait_for_port
from .conftest import REPORTS_HOST, serving
from .test_live import serving_reports

ROOT = Path(__file__).parent.parent.parent
BIN = Path(sys.executable).parent
UPSTREAM_ADDRESS = "127.70.1.1"
NGINX_ADDRESS = "127.70.1.2"
CADDY_ADDRESS = "127.70.1.3"
HTTPS_RECORD = f"v=TLSRPTv1; rua=https://{REPORTS_HOST}/tlsrpt"
MAIL_RECORD = "v=TLSRPTv1; rua=mailto:tlsrpt@example.net"
# What Postfix's libtlsrpt sends to tlsrpt-collectd for each session: "f" failed, "t" the
# number of failure details, "c" a result type code (202: certificate-host-mismatch).
STS = 2


def datagram(domain: str, record: str, *, failed: bool = False) -> bytes:
    policy: dict[str, Any] = {
        "policy-type": STS,
        "policy-string": ["version: STSv1", "mode: testing", f"mx: mail.{domain}"],
        "policy-domain": domain,
        "mx-host": [f"mail.{domain}"],
        "f": int(failed),
        "t": int(failed),
    }
    if failed:
        policy["failure-details"] = [
            {"c": 202, "s": "192.0.2.25", "r": "198.51.100.7", "n": f"mail.{domain}"}
        ]
    return json.dumps({"dpv": "1", "d": domain, "pr": record, "policies": [policy]}).encode()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Process, str]]:
    """``mtasts-host serve`` with a ``reports:`` block, and its store's URL."""
    with serving_reports(tmp_path, UPSTREAM_ADDRESS) as served:
        yield served


class Proxy(NamedTuple):
    """A shipped proxy config running in front of the upstream: where, and the CA to trust."""

    address: str
    port: int
    ca: Path


def nginx(upstream: tuple[Process, str], base: Path) -> Iterator[Proxy]:
    """nginx running deploy/nginx/mtasts-host.conf, with test certificates."""
    need("nginx", "nginx")
    process, _ = upstream
    certs = base / "certs"
    certs.mkdir(parents=True)
    ca = trustme.CA()
    for name in ("mta-sts.example.com", REPORTS_HOST):
        cert = ca.issue_cert(name)
        cert.private_key_pem.write_to_path(str(certs / f"{name}.key"))
        chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
        (certs / f"{name}.crt").write_bytes(chain)
    ca.cert_pem.write_to_path(str(base / "ca.pem"))
    port = free_port(NGINX_ADDRESS)
    upstream_address = (UPSTREAM_ADDRESS, process.port)
    with shipped_nginx(base, certs, upstream_address, NGINX_ADDRESS, port, connections=64):
        yield Proxy(NGINX_ADDRESS, port, base / "ca.pem")


def verifies(proxy: Proxy, name: str) -> bool:
    context = ssl.create_default_context(cafile=str(proxy.ca))
    try:
        with (
            socket.create_connection((proxy.address, proxy.port), timeout=10) as sock,
            context.wrap_socket(sock, server_hostname=name),
        ):
            return True
    except (OSError, ssl.SSLError):
        return False


def caddy(upstream: tuple[Process, str], base: Path) -> Iterator[Proxy]:
    """Caddy running deploy/caddy/Caddyfile, with certificates from its internal CA."""
    need("caddy", "caddy")
    process, _ = upstream
    port = free_port(CADDY_ADDRESS)
    argv, env = shipped_caddy(base, process.port, CADDY_ADDRESS, https_port=port)
    env["MTASTS_HOST_UPSTREAM"] = f"{UPSTREAM_ADDRESS}:{process.port}"
    with running(argv, base / "caddy.log", CADDY_ADDRESS, port, env=env) as server:
        proxy = Proxy(CADDY_ADDRESS, port, base / "storage/pki/authorities/local/root.crt")
        wait_until(proxy.ca.exists, timeout=20)
        # Issued at start-up, valid from the current second: wait until it verifies.
        wait_until(lambda: verifies(proxy, REPORTS_HOST), timeout=20)
        yield proxy
    assert "panic" not in server.output()


@pytest.fixture(params=[nginx, caddy], ids=["nginx", "caddy"])
def proxy(
    request: pytest.FixtureRequest, upstream: tuple[Process, str], tmp_path: Path
) -> Iterator[Proxy]:
    """Each shipped proxy config in front of the upstream."""
    yield from request.param(upstream, tmp_path / request.param.__name__)


def reporter_config(tmp_path: Path, mtasts_config: Path, proxy: Proxy) -> Path:
    """One config file for tlsrpt-collectd, -fetcher and -reportd."""
    base = tmp_path / "tlsrpt"
    base.mkdir()
    curl = (
        f"curl --silent --show-error --fail --cacert {proxy.ca} "
        f"--connect-to {REPORTS_HOST}:443:{proxy.address}:{proxy.port} "
        "--header 'Content-Type: application/tlsrpt+gzip' --data-binary @-"
    )
    config = base / "tlsrpt.cfg"
    config.write_text(
        f"""
[tlsrpt_collectd]
storage = sqlite://{base}/collectd.sqlite
socketname = {base}/collectd.socket
sockettimeout = 1
max_uncommited_datagrams = 1
log_level = info

[tlsrpt_fetcher]
storage = sqlite://{base}/collectd.sqlite
log_level = info

[tlsrpt_reportd]
organization_name = Sender Example Inc.
contact_info = tlsrpt@sender.example
sender_address = noreply@sender.example
dbname = {base}/reportd.sqlite
log_level = info
fetchers = {BIN}/tlsrpt-fetcher --config_file {config}
http_script = {curl}
sendmail_script = {sys.executable} -m mtasts_host reports ingest --config {mtasts_config}
spread_out_delivery = 1
interval_main_loop = 1
max_collectd_timediff = 3600
min_wait_delivery = 0
max_wait_delivery = 1
max_retries_domainlist = 2
min_wait_domainlist = 0
max_wait_domainlist = 1
max_retries_domaindetails = 2
min_wait_domaindetails = 0
max_wait_domaindetails = 1
"""
    )
    return config


def started(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=log.parent)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def wait_for(predicate: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_tlsrpt_reporter_delivers_over_https_and_by_mail(
    upstream: tuple[Process, str], proxy: Proxy, tmp_path: Path
) -> None:
    need("curl", "curl")
    _, store_url = upstream
    config = reporter_config(tmp_path, tmp_path / "config.yaml", proxy)
    base = config.parent
    collectd = started(
        [str(BIN / "tlsrpt-collectd"), "--config_file", str(config)], base / "collectd.log"
    )
    reportd: subprocess.Popen[bytes] | None = None
    try:
        wait_for((base / "collectd.socket").exists, "the collectd socket")
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sender:
            sessions = [("example.com", HTTPS_RECORD, False)] * 5
            sessions += [("example.com", HTTPS_RECORD, True)] * 2
            sessions += [("example.net", MAIL_RECORD, False)] * 3
            for domain, record, failed in sessions:
                sender.sendto(
                    datagram(domain, record, failed=failed), str(base / "collectd.socket")
                )
        # The day ends: a development signal moves today's sessions to yesterday.
        time.sleep(1.5)  # the collectd commits after its socket timeout
        collectd.send_signal(signal.SIGUSR2)
        log = base / "collectd.log"
        wait_for(lambda: "FOR DEVELOPMENT" in log.read_text(), "the day roll-over")
        wait_for(lambda: log.read_text().count("create new database") >= 2, "the new day")
        reportd = started(
            [str(BIN / "tlsrpt-reportd"), "--config_file", str(config)], base / "reportd.log"
        )
        store = open_store(store_url)
        served = serving({"example.com": Mode.TESTING, "example.net": Mode.TESTING})

        def delivered() -> bool:
            try:
                summaries = read_summaries(store, served)
            except Exception:
                return False
            return all(summary.reports for summary in summaries.values())

        wait_for(delivered, "both reports", timeout=90)
    finally:
        if reportd is not None:
            stop(reportd)
        stop(collectd)
    summaries = read_summaries(store, served)
    https, mail = summaries["example.com"], summaries["example.net"]
    assert (https.successful_sessions, https.failed_sessions) == (5, 2)
    assert https.failures_by_type == {"certificate-host-mismatch": 2}
    assert https.failures_by_mx == {"mail.example.com": 2}
    assert https.organizations == ("Sender Example Inc.",)
    assert (mail.successful_sessions, mail.failed_sessions) == (3, 0)
    # The policy-string it reports (the datagram's) is read: against the served mx, the
    # sessions are current (above); once the mx changes, they were reported against an
    # older policy.
    moved = {**served, "example.com": Policy(Mode.TESTING, ("mx2.example.com",))}
    changed = read_summaries(store, moved)["example.com"]
    assert (changed.successful_sessions, changed.older_policy) == (0, Sessions(1, 5, 2))
    reported = (base / "reportd.log").read_text()
    assert "Report delivery 1 for domain example.com succeeded" in reported
    assert "Report delivery 2 for domain example.net succeeded" in reported
    wait_for_port(proxy.address, proxy.port)  # the proxy still up
