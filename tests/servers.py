"""Real processes for the tests: the server itself, a DNS server, and real MTA-STS clients."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from dnslib import QTYPE, RCODE, DNSRecord
from dnslib.server import DNSLogger, DNSServer
from dnslib.zoneresolver import ZoneResolver

from mtasts_host import dns
from mtasts_host.config import load_config
from mtasts_host.policy import policy_id

PYTHON = sys.executable
STARTUP_TIMEOUT = 20.0

# Real senders look up _mta-sts.<domain> and fetch https://mta-sts.<domain>/ on port 443. The
# tests give them a DNS server and TLS endpoints on loopback addresses of their own.
NAMESERVER = "127.53.0.1"
UVICORN_TLS_ADDRESS = "127.44.3.1"
NGINX_ADDRESS = "127.44.3.2"
CADDY_ADDRESS = "127.44.3.3"


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


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
        while not path.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nothing listens on {path}")
            time.sleep(0.05)
        yield server
    finally:
        server.stop()


def serve_argv(config: Path, port: int, *extra: str) -> list[str]:
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


def raw_request(port: int, request: bytes, host: str = "127.0.0.1", timeout: float = 5) -> bytes:
    """Send bytes as they are and read until the server closes the connection."""
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    return b"".join(chunks)


class _Zone(ZoneResolver):  # type: ignore[misc]
    """
    dnslib's zone resolver, answering as a recursive resolver would: a CNAME is followed
    within the zone (``_mta-sts`` delegation, RFC 8461 section 8.2), and a name that exists
    without the asked type is NODATA, not NXDOMAIN (glibc may drop the A answer when the AAAA
    query says the name does not exist).
    """

    def resolve(self, request: DNSRecord, handler: object) -> DNSRecord:
        reply = super().resolve(request, handler)
        qtype = QTYPE[request.q.qtype]
        for answer in list(reply.rr):
            if QTYPE[answer.rtype] == "CNAME" and qtype != "CNAME":
                target = answer.rdata.label
                reply.rr.extend(
                    rr for name, rtype, rr in self.zone if name == target and rtype == qtype
                )
        if reply.header.rcode == RCODE.NXDOMAIN and any(
            request.q.qname == name for name, _, _ in self.zone
        ):
            reply.header.rcode = RCODE.NOERROR
        return reply


def read_response(sock: socket.socket) -> bytes:
    """Read one whole HTTP/1.1 response with a Content-Length from a connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@contextlib.contextmanager
def dns_server(zone: str, address: str) -> Iterator[None]:
    """An authoritative DNS server on address:53 (UDP and TCP) answering from zone text."""
    resolver = _Zone(zone)
    logger = DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    servers = [
        DNSServer(resolver, address=address, port=53, tcp=tcp, logger=logger)
        for tcp in (False, True)
    ]
    for server in servers:
        server.start_thread()
    try:
        yield
    finally:
        for server in servers:
            server.stop()
            server.server.server_close()


# Runs inside the client's own mount namespace, where /etc/resolv.conf names our DNS server.
_CLIENT = r"""
import asyncio, json, sys
which, domains = sys.argv[1], sys.argv[2:]
results = {}
if which == "postfix-mta-sts-resolver":
    from postfix_mta_sts_resolver.resolver import STSResolver
    async def main():
        resolver = STSResolver(loop=asyncio.get_running_loop(), timeout=10)
        for domain in domains:
            status, policy = await resolver.resolve(domain)
            results[domain] = [status.name, policy and [*policy, []]]
    asyncio.run(main())
else:
    from checkdmarc.mta_sts import check_mta_sts
    for domain in domains:
        result = check_mta_sts(domain, timeout=10)
        detail = [result.get("id"), result.get("policy"), result["warnings"]]
        results[domain] = ["VALID" if result["valid"] else "INVALID",
                           detail if result["valid"] else result]
print(json.dumps(results, default=str))
"""


def fetch_with_client(
    client: str, domains: Sequence[str], nameserver: str, ca_file: Path, workdir: Path
) -> dict[str, list[object]]:
    """
    Run a real MTA-STS client library for each domain, as a sender would: DNS lookups go to
    ``nameserver``, and only ``ca_file`` is trusted. A private mount namespace gives the client
    its own /etc/resolv.conf without touching the machine's.
    """
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:2\n")
    script = workdir / "client.py"
    script.write_text(_CLIENT)
    command = f'mount --bind {resolv} /etc/resolv.conf && exec "{PYTHON}" {script} "$@"'
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(ca_file),
        "REQUESTS_CA_BUNDLE": str(ca_file),
        "PYTHONWARNINGS": "ignore",
    }
    completed = subprocess.run(
        ["unshare", "--mount", "sh", "-c", command, "client", client, *domains],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{client} failed:\n{completed.stderr[-3000:]}")
    results: dict[str, list[object]] = json.loads(completed.stdout.splitlines()[-1])
    # What the client logged (its reasons for refusing a policy), for failure messages.
    results["_log"] = [completed.stderr[-3000:]]
    return results


def zone_for(config_path: Path, address: str, extra_domains: tuple[str, ...] = ()) -> str:
    """What the operator publishes (``mtasts-host dns``), plus A records for the policy hosts;
    ``extra_domains`` get a TXT record and an address but no configured policy."""
    config = load_config(config_path)
    lines = [dns.to_zone(config)]
    for domain in (*config.domains, *extra_domains):
        lines.append(f"mta-sts.{domain}. 60 IN A {address}")
    for domain in extra_domains:
        lines.append(f'_mta-sts.{domain}. 60 IN TXT "v=STSv1; id=unknown1"')
    return "\n".join(lines) + "\n"


def assert_accepted(results: dict[str, list[object]], config_path: Path) -> None:
    """Every configured domain's policy was fetched and accepted as served; others were not."""
    served = load_config(config_path).domains
    for domain, settings in served.items():
        policy = settings.policy
        status, detail = results[domain]
        assert status == "VALID", (domain, detail, results["_log"])
        assert isinstance(detail, list)
        ident, parsed, warnings = detail
        assert ident == policy_id(policy.render())
        assert warnings == []
        assert isinstance(parsed, dict)
        assert parsed["mode"] == policy.mode.value
        assert parsed["mx"] == list(policy.mx)
        assert int(parsed["max_age"]) == policy.max_age
    for domain in results.keys() - served.keys() - {"_log"}:
        assert results[domain][0] in ("FETCH_ERROR", "INVALID"), (domain, results[domain])
