"""
The benchmark: throughput, latency, memory, load and reload time of mtasts-host, each next to
a baseline measured in the same run.

- floor: a bare ASGI callable on the same uvicorn (httptools, uvloop, no access log) that
  returns a constant policy; what mtasts-host could reach at best in Python.
- ceiling: nginx serving the same policies as static files, chosen by Host.

Servers are pinned to core 0 and wrk to core 1 where the machine has two; the ratios to the
floor are also measured side by side, both servers on core 0 at once. Every load run is
bounded by --duration; the whole run takes about twelve minutes.

Usage, from the project root: python -m bench.run [--duration SECONDS] [--rounds N]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench import reload
from mtasts_host.config import load_config
from mtasts_host.store import build_snapshot
from tests.nginx import nginx_argv
from tests.processes import free_port, granian_argv, serve_argv, wait_for_answer

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
PATH = "/.well-known/mta-sts.txt"
SPREAD = 1_000
"""Policy hosts the requests to the 10,000-domain servers go to, in turn."""
MODES = {
    "keep-alive, 16 connections": (16, False),
    "Connection: close, 16 connections": (16, True),
    "keep-alive, 64 connections": (64, False),
}
"""wrk's modes: connections, and whether each request comes on a new connection."""
PIN = os.cpu_count() is not None and os.cpu_count() >= 2  # type: ignore[operator]

WRK_SCRIPT = """
local hosts = {}
for line in io.lines(os.getenv("HOSTS_FILE")) do hosts[#hosts + 1] = line end
local i = 0
local close = os.getenv("CONN_CLOSE") == "1"
request = function()
  i = i + 1
  local headers = { Host = hosts[(i % #hosts) + 1] }
  if close then headers["Connection"] = "close" end
  return wrk.format("GET", "/.well-known/mta-sts.txt", headers)
end
"""


@dataclass
class Load:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int


def pinned(argv: Sequence[str], core: int) -> list[str]:
    return ["taskset", "-c", str(core), *argv] if PIN and shutil.which("taskset") else list(argv)


@contextlib.contextmanager
def server(
    argv: Sequence[str], port: int, cwd: Path | None = None, env: dict[str, str] | None = None
) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(
        pinned(argv, 0),
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_answer("127.0.0.1", port, process)
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _ms(value: str, unit: str) -> float:
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def wrk(
    port: int, hosts: Path, work: Path, *, connections: int, duration: int, close: bool = False
) -> Load:
    script = work / "hosts.lua"
    script.write_text(WRK_SCRIPT)
    argv = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{duration}s",
        "--latency",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}{PATH}",
    ]
    env = {**os.environ, "HOSTS_FILE": str(hosts), "CONN_CLOSE": "1" if close else "0"}
    out = subprocess.run(
        pinned(argv, 1), env=env, capture_output=True, text=True, check=True, timeout=duration + 60
    ).stdout
    return parse_wrk(out)


def parse_wrk(out: str) -> Load:
    """What wrk printed with ``--latency``."""
    percentiles = re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M)
    latency = {p: _ms(value, unit) for p, value, unit in percentiles}
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Load(
        requests=int(re.search(r"(\d+) requests in", out).group(1)),  # type: ignore[union-attr]
        rps=float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        p50_ms=latency["50"],
        p99_ms=latency["99"],
        errors=int(non2xx.group(1)) if non2xx else 0,
    )


def write_config(
    path: Path, domains: int, max_age: int = 604800, *, defaults_last: bool = False
) -> Path:
    defaults = f"defaults: {{mode: enforce, max_age: {max_age}}}\n"
    with path.open("w") as out:
        out.write("" if defaults_last else defaults)
        out.write("domains:\n")
        for i in range(domains):
            out.write(f"  d{i}.example.com: {{mx: [mail.d{i}.example.com, '*.mx.example.net']}}\n")
        out.write(defaults if defaults_last else "")
    return path


def write_hosts(path: Path, domains: int) -> Path:
    path.write_text("".join(f"mta-sts.d{i}.example.com\n" for i in range(domains)))
    return path


def mtasts_argv(config: Path, port: int) -> list[str]:
    return serve_argv(config, port, "--no-access-log")


def floor_argv(port: int) -> list[str]:
    return [
        PYTHON,
        "-m",
        "uvicorn",
        "bench.floor:app",
        "--port",
        str(port),
        "--http",
        "httptools",
        "--loop",
        "uvloop",
        "--no-access-log",
        "--no-server-header",  # as mtasts-host serve: the same header lines for both
        "--log-level",
        "warning",
    ]


def nginx_site(work: Path, config: Path, port: int) -> list[str]:
    """Static copies of the policies mtasts-host serves, one directory per policy host."""
    root = work / "static"
    for domain, served in build_snapshot(load_config(config)).served.items():
        directory = root / f"mta-sts.{domain}" / ".well-known"
        directory.mkdir(parents=True)
        (directory / "mta-sts.txt").write_bytes(served.body)
    http = f"""
        server {{
            listen 127.0.0.1:{port};
            root {root}/$host;
            location = {PATH} {{
                default_type "text/plain; charset=utf-8";
                add_header Cache-Control "max-age=60";
                add_header X-Content-Type-Options nosniff;
                etag off;
            }}
        }}
    """
    return nginx_argv(work, http, connections=1024, access_log=False)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def get(port: int, host: str) -> bytes:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", PATH, headers={"Host": host})
        return connection.getresponse().read()
    finally:
        connection.close()


def row(name: str, *cells: object) -> None:
    print(f"  {name:<62}" + "".join(f"{c:>12}" for c in cells))


def throughput(work: Path, duration: int, rounds: int) -> None:
    print(
        f"\n== Throughput and latency (wrk, 1 thread; with 10,000 domains requests spread over "
        f"{SPREAD:,} of them, else over every domain; median of {rounds} rounds of {duration} s, "
        "each in the reverse order of the one before; a ratio is the median of the rounds' "
        "ratios [lowest, highest]) =="
    )
    configs = {n: write_config(work / f"d{n}.yaml", n) for n in (10, 10_000, 100_000)}
    hosts = {n: write_hosts(work / f"hosts{n}.txt", n) for n in configs}
    hosts[10_000] = write_hosts(work / "spread.txt", SPREAD)
    nginx_work = work / "nginx"
    nginx_work.mkdir()
    servers: dict[str, Callable[[int], list[str]]] = {
        "floor": floor_argv,
        "mtasts-host": lambda p: mtasts_argv(configs[10_000], p),
        "nginx": lambda p: nginx_site(nginx_work, configs[10_000], p),
        "mtasts-host under granian": granian_argv,
        "mtasts-host, 10 domains": lambda p: mtasts_argv(configs[10], p),
        "mtasts-host, 100,000 domains": lambda p: mtasts_argv(configs[100_000], p),
    }
    granian_env = {"MTASTS_HOST_CONFIG": str(configs[10_000]), "MTASTS_HOST_ACCESS_LOG": "0"}
    # The runs compared follow one another, so that a ratio is taken within a round.
    plan = [(name, mode) for mode in MODES for name in ("floor", "mtasts-host", "nginx")]
    plan += [("mtasts-host under granian", mode) for mode in list(MODES)[:2]]
    plan += [(name, "keep-alive, 16 connections") for name in list(servers)[4:]]
    runs: dict[tuple[str, str], list[Load]] = {key: [] for key in plan}
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, argv in servers.items():
            ports[name] = free_port()
            env = granian_env if "granian" in name else None
            stack.enter_context(server(argv(ports[name]), ports[name], cwd=ROOT, env=env))
        for number in range(rounds):
            for name, mode in plan if number % 2 == 0 else reversed(plan):
                connections, close = MODES[mode]
                domains = 10 if "10 domains" in name else 100_000 if "100,000" in name else 10_000
                runs[name, mode].append(
                    wrk(
                        ports[name],
                        hosts[domains],
                        work,
                        connections=connections,
                        duration=duration,
                        close=close,
                    )
                )
    results = {key: median_load(loads) for key, loads in runs.items()}
    row("", "requests/s", "p50 ms", "p99 ms", "non-2xx")
    for (name, mode), load in results.items():
        label = f"{name} (10,000 domains)" if name in ("mtasts-host", "nginx") else name
        label = f"{name} (10,000 domains)" if "granian" in name else label
        row(
            f"{label}, {mode}",
            f"{load.rps:,.0f}",
            f"{load.p50_ms:.2f}",
            f"{load.p99_ms:.2f}",
            load.errors,
        )
    print("\n  ratios")
    for mode in MODES:
        floor, ours, nginx = (runs[name, mode] for name in ("floor", "mtasts-host", "nginx"))
        row(f"{mode}: mtasts-host / floor, throughput", paired(ours, floor))
        row(f"{mode}: mtasts-host / floor, p99", paired(ours, floor, "p99_ms"))
        row(f"{mode}: nginx / mtasts-host, throughput", paired(nginx, ours))
    for mode in list(MODES)[:2]:
        ours, granian = (runs[name, mode] for name in ("mtasts-host", "mtasts-host under granian"))
        row(f"{mode}: granian / uvicorn, throughput", paired(granian, ours))
    few = runs["mtasts-host, 10 domains", "keep-alive, 16 connections"]
    many = runs["mtasts-host, 100,000 domains", "keep-alive, 16 connections"]
    row("100,000 domains / 10 domains, throughput", paired(many, few))


def side_by_side(work: Path, duration: int, rounds: int) -> None:
    """
    mtasts-host and the floor at the same time, both pinned to core 0, each under its own
    wrk on core 1: the scheduler gives each half of the core, so the ratio of their
    throughputs is the ratio of their costs a request, measured while the machine runs at
    one speed for both. A second floor next to the first shows the error of the method.
    """
    print(
        f"\n== Side by side: each server under its own wrk at once on the same core, 10,000 "
        f"domains, requests spread over {SPREAD:,}; median of {rounds} rounds of {duration} s "
        "[lowest, highest] =="
    )
    config = write_config(work / "side.yaml", 10_000)
    hosts = write_hosts(work / "side-hosts.txt", SPREAD)
    servers: dict[str, Callable[[int], list[str]]] = {
        "floor": floor_argv,
        "second floor": floor_argv,
        "mtasts-host": lambda p: mtasts_argv(config, p),
    }
    ratios: dict[tuple[str, str], list[float]] = {}
    with contextlib.ExitStack() as stack:
        ports = {}
        for name, argv in servers.items():
            ports[name] = free_port()
            stack.enter_context(server(argv(ports[name]), ports[name], cwd=ROOT))
        for number in range(rounds):
            for mode, (connections, close) in MODES.items():
                for name in ("mtasts-host", "second floor"):
                    pair = ("floor", name) if number % 2 == 0 else (name, "floor")
                    loads = at_once(
                        [(ports[side], hosts, work / side.replace(" ", "-")) for side in pair],
                        connections=connections,
                        duration=duration,
                        close=close,
                    )
                    result = dict(zip(pair, loads, strict=True))
                    ratios.setdefault((name, mode), []).append(
                        result[name].rps / result["floor"].rps
                    )
    for mode in MODES:
        for name in ("mtasts-host", "second floor"):
            label = mode.replace(" connections", "")
            row(f"{label}: {name} / floor, throughput", spread(ratios[name, mode]))


def at_once(
    targets: Sequence[tuple[int, Path, Path]], *, connections: int, duration: int, close: bool
) -> list[Load]:
    """One wrk per (port, hosts file, work directory), all running at the same time."""
    loads: list[Load | None] = [None] * len(targets)

    def run(index: int, port: int, hosts: Path, directory: Path) -> None:
        directory.mkdir(exist_ok=True)
        loads[index] = wrk(
            port, hosts, directory, connections=connections, duration=duration, close=close
        )

    threads = [
        threading.Thread(target=run, args=(index, *target)) for index, target in enumerate(targets)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if any(load is None for load in loads):
        raise RuntimeError("a wrk run failed")
    return [load for load in loads if load is not None]


def spread(ratios: Sequence[float]) -> str:
    """The median of ``ratios``, then the lowest and the highest."""
    return f"{statistics.median(ratios):.2f} [{min(ratios):.2f}, {max(ratios):.2f}]"


def paired(loads: list[Load], baselines: list[Load], figure: str = "rps") -> str:
    """
    The median of the rounds' ratios, then the lowest and the highest: runs of one round
    follow one another, which takes out most of this machine's drift from minute to minute.
    """
    return spread(
        [
            getattr(load, figure) / getattr(base, figure)
            for load, base in zip(loads, baselines, strict=True)
        ]
    )


def median_load(loads: list[Load]) -> Load:
    return Load(
        requests=sum(load.requests for load in loads),
        rps=statistics.median(load.rps for load in loads),
        p50_ms=statistics.median(load.p50_ms for load in loads),
        p99_ms=statistics.median(load.p99_ms for load in loads),
        errors=sum(load.errors for load in loads),
    )


_YAML_LOAD = ("import yaml", "yaml.load(open(sys.argv[1]), Loader=yaml.CSafeLoader)")
_STORE_LOAD = (
    "from mtasts_host import load_config, PolicyStore",
    "PolicyStore(load_config(sys.argv[1]))",
)


def _seconds(setup_and_statement: tuple[str, str], config: Path, times: int = 3) -> float:
    """The median time of a statement on ``config``, after its setup, in fresh processes."""
    setup, statement = setup_and_statement
    code = (
        f"import sys, time; {setup}; t = time.perf_counter(); {statement}; "
        "print(time.perf_counter() - t)"
    )
    runs = [
        float(
            subprocess.run(
                [PYTHON, "-c", code, str(config)],
                capture_output=True,
                text=True,
                check=True,
                cwd=ROOT,
            ).stdout
        )
        for _ in range(times)
    ]
    return statistics.median(runs)


def memory_and_reload(work: Path) -> None:
    print("\n== Load time and memory ==")
    row("", "load s", "start-up s", "RSS MiB", "peak MiB", "RSS / floor")
    port = free_port()
    with server(floor_argv(port), port, cwd=ROOT) as floor:
        time.sleep(0.5)
        floor_rss = rss_mib(floor.pid)
    row("floor (bare uvicorn app)", "-", "-", f"{floor_rss:.0f}", "-")
    last = write_config(work / "d100000-last.yaml", 100_000, defaults_last=True)
    for n, config in (
        (10_000, work / "d10000.yaml"),
        (100_000, last),
        (100_000, work / "d100000.yaml"),
    ):
        baseline = _seconds(_YAML_LOAD, config)
        order = ", defaults after domains" if config == last else ""
        row(f"yaml.load(CSafeLoader), {n:,} domains{order}", f"{baseline:.2f}", "-", "-", "-")
        load = _seconds(_STORE_LOAD, config)
        port = free_port()
        started = time.perf_counter()
        with server(mtasts_argv(config, port), port, cwd=ROOT) as process:
            startup = time.perf_counter() - started
            for i in range(0, n, max(1, n // 200)):
                get(port, f"mta-sts.d{i}.example.com")
            time.sleep(1)
            rss, peak = rss_mib(process.pid), rss_mib(process.pid, "VmHWM")
            row(
                f"mtasts-host, {n:,} domains{order}",
                f"{load:.2f}",
                f"{startup:.2f}",
                f"{rss:.0f}",
                f"{peak:.0f}",
                f"{rss / floor_rss:.1f}",
            )
            row(f"  load / yaml.load of the same file{order}", f"{load / baseline:.2f}")
            if n == 100_000 and config != last:
                reload_under_load(work, config, port, process)


RELOAD_RUN = 8
"""Seconds of each wrk run around the reload: a reload of 100,000 domains takes about 4."""


def reload_under_load(
    work: Path, config: Path, port: int, process: subprocess.Popen[bytes]
) -> None:
    """Rewrite the 100,000-domain file while wrk runs; report the p99 and the reload."""
    hosts, duration = work / "hosts100000.txt", RELOAD_RUN
    quiet = wrk(port, hosts, work, connections=16, duration=duration)
    Path(f"/proc/{process.pid}/clear_refs").write_text("5")  # reset the peak RSS
    result: dict[str, Load] = {}
    loader = threading.Thread(
        target=lambda: result.update(load=wrk(port, hosts, work, connections=16, duration=duration))
    )
    loader.start()
    time.sleep(duration / 4)
    landed = rewrite(work, config, port, 100_000, 1209600)
    loader.join()
    during = result["load"]
    peak = rss_mib(process.pid, "VmHWM")
    time.sleep(1)
    after = rss_mib(process.pid)
    print("\n== Reloading 100,000 domains while wrk keeps 16 connections busy ==")
    row("", "requests/s", "p99 ms", "non-2xx")
    row("without a reload", f"{quiet.rps:,.0f}", f"{quiet.p99_ms:.2f}", quiet.errors)
    row("with a reload in the middle", f"{during.rps:,.0f}", f"{during.p99_ms:.2f}", during.errors)
    row("ratio p99 during reload / without", f"{during.p99_ms / quiet.p99_ms:.2f}")
    row("write to new policy served, s", f"{landed:.2f}")
    row("peak RSS during the reload, MiB", f"{peak:.0f}")
    row("RSS after the reload, MiB", f"{after:.0f}")


def rewrite(work: Path, config: Path, port: int, domains: int, max_age: int) -> float:
    """
    Replace ``config`` by rename with one whose every policy has ``max_age``; return the
    seconds until the server on ``port`` serves the last domain's new policy.
    """
    new = work / "next.yaml"
    write_config(new, domains, max_age=max_age)
    os.replace(new, config)
    written = time.perf_counter()
    last, expected = f"mta-sts.d{domains - 1}.example.com", f"max_age: {max_age}\r\n".encode()
    while not get(port, last).endswith(expected):
        if time.perf_counter() - written > 60:
            raise TimeoutError(f"the reload of {domains:,} domains did not land within 60 s")
        time.sleep(0.01)
    return time.perf_counter() - written


CONFIGMAP_DOMAINS = 15_000
"""About as many domains as a Kubernetes ConfigMap's 1 MiB holds, one line each."""


def reload_memory(work: Path, domains: int = CONFIGMAP_DOMAINS, reloads: int = 3) -> None:
    """RSS of a server whose whole file is rewritten (every policy changes) a few times."""
    config = write_config(work / "configmap.yaml", domains)
    print(
        f"\n== Memory across reloads: {domains:,} domains, {config.stat().st_size / 2**20:.2f} "
        "MiB of YAML, every policy changed each time =="
    )
    row("", "RSS MiB", "peak MiB")
    port = free_port()
    with server(mtasts_argv(config, port), port, cwd=ROOT) as process:
        for i in range(0, domains, max(1, domains // 200)):
            get(port, f"mta-sts.d{i}.example.com")
        time.sleep(1)
        row("after start-up", f"{rss_mib(process.pid):.0f}", f"{rss_mib(process.pid, 'VmHWM'):.0f}")
        for number in range(1, reloads + 1):
            rewrite(work, config, port, domains, 1209600 + number)
            time.sleep(1)
            rss, peak = rss_mib(process.pid), rss_mib(process.pid, "VmHWM")
            row(f"after reload {number}", f"{rss:.0f}", f"{peak:.0f}")


def reload_latency(edits: int) -> None:
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as served:
        baseline = reload.summary(reload.watchfiles_latencies(Path(base), edits))
        ours = reload.summary(reload.serve_latencies(Path(served), edits))
    print(f"\n== Reload latency of a small config, {edits} edits (ms) ==")
    row("", "median", "worst")
    row("watchfiles notices the change", f"{baseline[0]:.1f}", f"{baseline[1]:.1f}")
    row("mtasts-host serves the change", f"{ours[0]:.1f}", f"{ours[1]:.1f}")
    row("ratio", f"{ours[0] / baseline[0]:.2f}", f"{ours[1] / baseline[1]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration", type=int, default=3, help="seconds per wrk run")
    parser.add_argument("--rounds", type=int, default=9, help="wrk rounds per measurement")
    parser.add_argument("--edits", type=int, default=25)
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: scripts/test installs it (Debian package {tool})")
    print(
        f"mtasts-host benchmark, {time.strftime('%Y-%m-%d %H:%M')}, {os.cpu_count()} cores, "
        f"servers pinned: {PIN}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        throughput(work, args.duration, args.rounds)
        side_by_side(work, args.duration, args.rounds)
        memory_and_reload(work)
        reload_memory(work)
    reload_latency(args.edits)


if __name__ == "__main__":
    main()
