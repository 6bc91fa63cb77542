"""Caddy running the shipped deploy/caddy/Caddyfile, for the tests and the benchmark."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .processes import free_port

CADDYFILE = Path(__file__).parent.parent / "deploy" / "caddy" / "Caddyfile"

# Test-only global options: Caddy's internal CA instead of ACME, no admin API, our address.
_GLOBALS = """
	local_certs
	skip_install_trust
	admin off
	default_bind {address}
	storage file_system {storage}
"""


def shipped_caddy(
    work: Path,
    upstream: int,
    address: str,
    https_port: int | None = None,
    http_port: int | None = None,
    edit: Callable[[str], str] | None = None,
) -> tuple[list[str], dict[str, str]]:
    """
    The command line and environment of Caddy with the shipped Caddyfile, on ``address``
    (port 443, or ``https_port``; its redirects on port 80, or ``http_port``, a free port
    if only ``https_port`` is given), with mtasts-host on 127.0.0.1:``upstream``; its files
    go under ``work``, its root certificate to ``work/storage/pki/authorities/local/root.crt``.
    ``edit`` changes the Caddyfile's text first.
    """
    work.mkdir(parents=True, exist_ok=True)
    caddyfile = CADDYFILE.read_text()
    if edit is not None:
        caddyfile = edit(caddyfile)
    globals_ = _GLOBALS.format(address=address, storage=work / "storage")
    if https_port is not None and http_port is None:
        http_port = free_port(address)  # port 80 needs root
    if http_port is not None:
        globals_ += f"\thttp_port {http_port}\n"
    if https_port is not None:
        globals_ += f"\thttps_port {https_port}\n\tlog {{\n\t\tlevel ERROR\n\t}}\n"
    assert caddyfile.count("\n{\n") == 1
    (work / "Caddyfile").write_text(caddyfile.replace("\n{\n", "\n{\n" + globals_, 1))
    env = {
        "MTASTS_HOST_UPSTREAM": f"127.0.0.1:{upstream}",
        "HOME": str(work),
        "XDG_DATA_HOME": str(work / "data"),
        "XDG_CONFIG_HOME": str(work / "config"),
    }
    argv = ["caddy", "run", "--config", str(work / "Caddyfile"), "--adapter", "caddyfile"]
    return argv, env
