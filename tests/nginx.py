"""nginx running the shipped deploy/nginx/mtasts-host.conf, for every test that needs it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from .processes import need, running

SITE = Path(__file__).parent.parent / "deploy" / "nginx" / "mtasts-host.conf"


def shipped_site(
    tmp: Path, certs: Path, upstream: tuple[str, int] | Path, address: str, port: int
) -> str:
    """
    The shipped server blocks, with only paths, addresses and ports made the test's; the
    upstream is an address and port, or the Unix socket of ``serve --uds``.
    """
    site = SITE.read_text()
    server = f"unix:{upstream}" if isinstance(upstream, Path) else f"{upstream[0]}:{upstream[1]}"
    for old, new in [
        ("/etc/ssl/mta-sts/", f"{certs}/"),
        ("/var/lib/nginx/mtasts-host ", f"{tmp}/cache "),
        ("server 127.0.0.1:8080;", f"server {server};"),
        ("listen 443 ssl;", f"listen {address}:{port} ssl;"),
        ("listen 443 ssl default_server;", f"listen {address}:{port} ssl default_server;"),
        ("listen [::]:443 ssl;", ""),
        ("listen [::]:443 ssl default_server;", ""),
    ]:
        assert old in site, old
        site = site.replace(old, new)
    return site


def nginx_argv(tmp: Path, http: str, connections: int = 512, access_log: bool = True) -> list[str]:
    """Write an nginx.conf under ``tmp`` around ``http`` (the http block's servers); its argv."""
    user = "user root;" if os.geteuid() == 0 else ""  # else workers could not read the keys
    log = f"{tmp}/access.log" if access_log else "off"
    (tmp / "nginx.conf").write_text(
        f"""
        {user}
        worker_processes 1;
        pid {tmp}/nginx.pid;
        error_log {tmp}/error.log;
        events {{ worker_connections {connections}; }}
        http {{
            access_log {log};
            client_body_temp_path {tmp}/client; proxy_temp_path {tmp}/proxy;
            fastcgi_temp_path {tmp}/fastcgi; uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
            {http}
        }}
        """
    )
    return [
        need("nginx", "nginx"),
        "-p",
        str(tmp),
        "-c",
        str(tmp / "nginx.conf"),
        "-g",
        "daemon off;",
    ]


@contextlib.contextmanager
def nginx(
    tmp: Path,
    certs: Path,
    upstream: tuple[str, int] | Path,
    address: str,
    port: int,
    extra: str = "",
    connections: int = 512,
) -> Iterator[Path]:
    """
    nginx with the shipped site (and the test's own ``extra`` server blocks) on
    ``address:port``, logging under ``tmp``; yields ``tmp``.
    """
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "site.conf").write_text(shipped_site(tmp, certs, upstream, address, port))
    argv = nginx_argv(tmp, f"include {tmp}/site.conf;\n{extra}", connections)
    with running(argv, tmp / "nginx.log", address, port):
        yield tmp
