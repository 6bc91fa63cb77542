"""
End to end, the way a sender sees it: a TLS connection to the proxy, one request, the answer.
nginx serving the policies as static files against nginx in front of mtasts-host as shipped
(deploy/nginx, its cache included), and Caddy as shipped (deploy/caddy) in front of
mtasts-host, with keep-alive and with a new TLS connection per request.

Two static baselines: the shipped server block serving files as a user would write it, and
the same with the shipped config's `open_file_cache` (equal tuning). Each round runs every
server once, in alternating order; a ratio is taken within a round and the median of the
rounds is printed, because this machine's throughput drifts by more than the differences
measured.

The proxy and mtasts-host share core 0, as on a small server; wrk runs on core 1, in a mount
namespace of its own whose /etc/hosts points the policy host at loopback (root needed).

Usage, from the project root: python -m bench.proxy [--duration SECONDS] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import trustme

from bench.run import (
    PATH,
    ROOT,
    SPREAD,
    WRK_SCRIPT,
    Load,
    median_load,
    mtasts_argv,
    paired,
    parse_wrk,
    pinned,
    row,
    server,
    write_config,
)
from mtasts_host.config import load_config
from mtasts_host.store import build_snapshot
from tests.caddy import shipped_caddy
from tests.nginx import nginx_argv, shipped_site
from tests.processes import free_port, wait_for_port

ADDRESS = "127.0.0.1"
NAME = "mta-sts.d0.example.com"  # the SNI of every connection; Host headers vary
DOMAINS = 10_000


def _nginx(work: Path, site: str) -> list[str]:
    work.mkdir()
    return nginx_argv(work, site, connections=1024, access_log=False)


def static_site(shipped: str, root: Path, *, tuned: bool) -> str:
    """
    The shipped site with the same TLS, but files from ``root/<host>`` for the proxy; with
    the shipped config's ``open_file_cache`` if ``tuned``.
    """
    location = re.compile(r"    location / \{.*?\n    \}\n", re.DOTALL)
    assert location.search(shipped)
    file_cache = "open_file_cache max=10000 inactive=60s;" if tuned else ""
    static = f"""    location = {PATH} {{
        root {root}/$host;
        default_type "text/plain; charset=utf-8";
        add_header Cache-Control "max-age=60";
        add_header X-Content-Type-Options nosniff;
        etag off;
        {file_cache}
    }}
"""
    site = location.sub(lambda _: static, shipped, count=1)  # the policy hosts' server
    return re.sub(r"proxy_cache_path[^;]*;", "", site)


def policies_as_files(config: Path, root: Path) -> None:
    for domain, served in build_snapshot(load_config(config)).served.items():
        directory = root / f"mta-sts.{domain}" / ".well-known"
        directory.mkdir(parents=True)
        (directory / "mta-sts.txt").write_bytes(served.body)


@contextlib.contextmanager
def caddy(work: Path, upstream: int, port: int) -> Iterator[None]:
    argv, env = shipped_caddy(work, upstream, ADDRESS, https_port=port)
    process = subprocess.Popen(
        pinned(argv, 0),
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(ADDRESS, port, process)
        yield
    finally:
        process.terminate()
        process.wait(20)


def wrk_tls(port: int, work: Path, *, duration: int, close: bool) -> Load:
    """wrk with 16 connections over TLS to NAME, Host headers spread over SPREAD domains."""
    script, hosts, etc_hosts = work / "hosts.lua", work / "hosts.txt", work / "etc-hosts"
    script.write_text(WRK_SCRIPT)
    hosts.write_text("".join(f"mta-sts.d{i}.example.com\n" for i in range(SPREAD)))
    etc_hosts.write_text(f"127.0.0.1 localhost\n{ADDRESS} {NAME}\n")
    wrk = ["wrk", "-t1", "-c16", f"-d{duration}s", "--latency", "-s", str(script)]
    wrk.append(f"https://{NAME}:{port}{PATH}")
    argv = [
        "unshare",
        "--mount",
        "sh",
        "-c",
        f'mount --bind {etc_hosts} /etc/hosts && exec "$@"',
        "-",
        *pinned(wrk, 1),
    ]
    env = {**os.environ, "HOSTS_FILE": str(hosts), "CONN_CLOSE": "1" if close else "0"}
    out = subprocess.run(
        argv, env=env, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    if "Requests/sec" not in out or re.search(r"Socket errors", out):
        raise RuntimeError(f"wrk failed:\n{out}")
    load = parse_wrk(out)
    if load.errors:
        raise RuntimeError(f"{load.errors} answers were not 200:\n{out}")
    return load


STATIC = "static nginx"
TUNED = "static nginx + open_file_cache"
SHIPPED = "nginx -> mtasts-host (shipped)"
CADDY = "Caddy -> mtasts-host (shipped)"
KEEP_ALIVE, CLOSE = "keep-alive", "new TLS connection"
PLAN = {KEEP_ALIVE: (STATIC, TUNED, SHIPPED), CLOSE: (STATIC, TUNED, SHIPPED, CADDY)}


def measure(ports: dict[str, int], work: Path, duration: int, rounds: int) -> None:
    """Every server of PLAN once per round, in alternating order; the medians and ratios."""
    for mode, names in PLAN.items():  # a first pass fills caches and gets Caddy's certificate
        for name in names:
            wrk_tls(ports[name], work, duration=1, close=mode == CLOSE)
    runs: dict[tuple[str, str], list[Load]] = {}
    for mode, names in PLAN.items():
        for number in range(rounds):
            for name in names if number % 2 == 0 else reversed(names):
                load = wrk_tls(ports[name], work, duration=duration, close=mode == CLOSE)
                runs.setdefault((name, mode), []).append(load)
    row("", "requests/s", "p50 ms", "p99 ms")
    for (name, mode), loads in runs.items():
        load = median_load(loads)
        row(f"{name}, {mode}", f"{load.rps:,.0f}", f"{load.p50_ms:.2f}", f"{load.p99_ms:.2f}")
    print("\n  throughput ratios: median of the rounds [lowest, highest] (target >= 0.95)")
    for mode, names in PLAN.items():
        for base in (STATIC, TUNED):
            for name in names:
                if name not in (STATIC, TUNED):
                    ratio = paired(runs[name, mode], runs[base, mode])
                    print(f"  {f'{name} / {base}, {mode}':<82}{ratio:>20}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration", type=int, default=2, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=10, help="rounds per mode")
    args = parser.parse_args()
    print(
        f"mtasts-host end to end through TLS proxies, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} cores; {DOMAINS:,} domains, requests spread over {SPREAD:,}; "
        f"16 connections; {args.rounds} rounds of {args.duration} s"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = write_config(work / "config.yaml", DOMAINS)
        certs = work / "certs"
        certs.mkdir()
        cert = trustme.CA().issue_cert(NAME)
        cert.private_key_pem.write_to_path(str(certs / f"{NAME}.key"))
        (certs / f"{NAME}.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        policies_as_files(config, work / "static")
        upstream = free_port()
        ports = {name: free_port() for name in (STATIC, TUNED, SHIPPED, CADDY)}

        def site(name: str) -> str:
            return shipped_site(work, certs, ("127.0.0.1", upstream), ADDRESS, ports[name])

        sites = {
            STATIC: static_site(site(STATIC), work / "static", tuned=False),
            TUNED: static_site(site(TUNED), work / "static", tuned=True),
            SHIPPED: site(SHIPPED),
        }
        with contextlib.ExitStack() as stack:
            stack.enter_context(server(mtasts_argv(config, upstream), upstream, cwd=ROOT))
            for number, (name, text) in enumerate(sites.items()):
                argv = _nginx(work / f"nginx-{number}", text)
                stack.enter_context(server(argv, ports[name]))
            stack.enter_context(caddy(work / "caddy", upstream, ports[CADDY]))
            measure(ports, work, args.duration, args.rounds)


if __name__ == "__main__":
    main()
