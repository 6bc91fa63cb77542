from __future__ import annotations

import contextlib
import gc
import logging
import ssl
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import trustme

from mtasts_host.config import load_config
from mtasts_host.doctor import DoctorOptions
from mtasts_host.store import Snapshot, build_snapshot
from mtasts_host.tls import sender_context

from ..knot import knot
from ..processes import free_port, running
from .servers import chained, days, issue, nginx, server_context, silent, smtp
from .world import (
    ALTER,
    DNS1,
    DNS2,
    DOMAINS,
    MX_EXPIRED,
    MX_GOOD,
    MX_PLAIN,
    MX_SOON,
    MX_WRONG_NAME,
    NGINX,
    REDIRECT,
    REFUSING,
    SILENT,
    config_text,
    slow_config_text,
    zones,
)


@dataclass(frozen=True)
class World:
    snapshot: Snapshot
    """The world's domains, each good or broken in one way."""
    slow: Snapshot
    """Fifty domains whose hosts accept connections and never answer."""
    options: DoctorOptions
    """How to reach the world: its DNS server, its CA, its ports."""


# Server blocks in front of the policy host: one redirects, one changes the body.
_FRONTS = """
server {{
    listen {redirect}:{port} ssl;
    ssl_certificate {certs}/$ssl_server_name.crt;
    ssl_certificate_key {certs}/$ssl_server_name.key;
    location / {{ return 301 https://www.redirect.test/.well-known/mta-sts.txt; }}
}}
server {{
    listen {alter}:{port} ssl;
    ssl_certificate {certs}/$ssl_server_name.crt;
    ssl_certificate_key {certs}/$ssl_server_name.key;
    location / {{
        proxy_pass http://mtasts_host;
        proxy_set_header Host $host;
        proxy_set_header Accept-Encoding "";
        sub_filter_types text/plain;
        sub_filter "mode: enforce" "mode: testing";
    }}
}}
"""


def _policy_host_certificates(ca: trustme.CA, certs: Path, roots: Path) -> None:
    """Each policy host's certificate pair in ``certs``; roots other than ``ca``'s are added
    to ``roots``."""
    certs.mkdir()
    for domain in DOMAINS:
        name = f"mta-sts.{domain.name}"
        if domain.certificate == "intermediate-soon":
            chain = certs / f"{name}.chain"
            chain.mkdir()
            chained(chain, name, intermediate=5)
            (chain / "chain.pem").rename(certs / f"{name}.crt")
            (chain / "key.pem").rename(certs / f"{name}.key")
            with roots.open("ab") as file:
                file.write((chain / "ca.pem").read_bytes())
        elif domain.certificate == "expired":
            issue(ca, certs / name, name, not_before=days(-30), not_after=days(-1))
        elif domain.certificate == "wrong-name":
            issue(ca, certs / name, "mta-sts.other.test")
        elif domain.certificate == "soon":
            issue(ca, certs / name, name, not_after=days(5))
        else:
            issue(ca, certs / name, name)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    """
    The whole world, on loopback: two knot servers, mtasts-host serve behind the shipped
    nginx config (and two fronts), five SMTP servers and one that never speaks.
    """
    tmp = tmp_path_factory.mktemp("doctor-world")
    path = tmp / "config.yaml"
    path.write_text(config_text(DOMAINS))
    snapshot = build_snapshot(load_config(path))
    (tmp / "slow.yaml").write_text(slow_config_text())
    slow = build_snapshot(load_config(tmp / "slow.yaml"))
    first, second = zones(snapshot, slow)
    dns_port, https_port, smtp_port = free_port(DNS1), free_port(NGINX), free_port(MX_GOOD)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp / "ca.pem"))
    certs = tmp / "certs"
    _policy_host_certificates(ca, certs, tmp / "ca.pem")
    good = sorted({host.lower() for d in DOMAINS for host, at in d.mx_hosts if at == MX_GOOD})
    mx_certificates = {
        MX_GOOD: issue(ca, tmp / "mx-good", *good),
        MX_EXPIRED: issue(
            ca,
            tmp / "mx-expired",
            "mx.mxexpired.test",
            "mx.mxtesting.test",
            not_before=days(-30),
            not_after=days(-1),
        ),
        MX_WRONG_NAME: issue(ca, tmp / "mx-wrong-name", "mx.other.test"),
        MX_SOON: issue(ca, tmp / "mx-soon", "mx.mxsoon.test", not_after=days(5)),
    }
    upstream = free_port()
    serve = [sys.executable, "-m", "mtasts_host", "serve", "--config", str(path)]
    fronts = _FRONTS.format(redirect=REDIRECT, alter=ALTER, port=https_port, certs=certs)
    # aiosmtpd logs every handshake the doctor refuses with a traceback: expected here.
    mail_log = logging.getLogger("mail.log")
    level = mail_log.level
    mail_log.setLevel(logging.CRITICAL)
    with contextlib.ExitStack() as stack:
        stack.callback(mail_log.setLevel, level)
        stack.enter_context(knot(tmp / "dns1", DNS1, dns_port, first))
        stack.enter_context(knot(tmp / "dns2", DNS2, dns_port, second))
        serve += ["--port", str(upstream), "--no-access-log"]
        stack.enter_context(running(serve, tmp / "serve.log", "127.0.0.1", upstream))
        stack.enter_context(nginx(tmp / "nginx", certs, upstream, NGINX, https_port, fronts))
        for address, cert in mx_certificates.items():
            stack.enter_context(smtp(address, smtp_port, server_context(cert)))
        stack.enter_context(smtp(MX_PLAIN, smtp_port, None))
        stack.enter_context(silent(SILENT, [https_port, smtp_port]))
        options = DoctorOptions(
            resolver=(DNS1, dns_port),
            ca_file=str(tmp / "ca.pem"),
            https_port=https_port,
            smtp_port=smtp_port,
            timeout=3.0,
        )
        yield World(snapshot, slow, options)


def cyclic_garbage(action: Callable[[], object]) -> int:
    """
    How many objects ``action`` leaves in reference cycles: what only the cyclic collector
    frees, in full collections that stall ``serve`` when a run leaves many. The collector is
    off meanwhile, so that none of them is freed before it is counted.
    """
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        action()
        return gc.collect()
    finally:
        if enabled:
            gc.enable()


@pytest.fixture(scope="session")
def refusing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    """A name server without zones, which answers REFUSED to every query: a resolver given
    with --resolver that offers this machine no recursion."""
    port = free_port(REFUSING)
    with knot(tmp_path_factory.mktemp("refusing") / "knot", REFUSING, port, {}):
        yield REFUSING, port


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    """A CA of the test module's own, for the servers the probes are tried against."""
    return trustme.CA()


@pytest.fixture(scope="module")
def trusting(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """The probes' context, trusting ``ca`` as well."""
    path = tmp_path_factory.mktemp("ca") / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return sender_context(str(path))
