"""
Instructions a policy request costs in user space, counted by callgrind: mtasts-host next to
the floor, under the same wrk load. Unlike throughput, the count does not drift with the
machine: the same code and load give the same figure to within a few tenths of a percent, so
a change to the hot path shows even where it is far inside the noise of the throughput runs.
It leaves out the kernel's share of a request (the same socket calls for both servers) and
what cache misses and mispredicted branches cost.

- served: each server under uvicorn, as `bench.run` runs it (10,000 domains, requests over
  1,000 of them, keep-alive, 16 connections), counted only while wrk runs, after a warm-up.
- the app alone: the ASGI callable driven directly with the same requests, no server, no
  event loop: what the app itself adds, reusing its messages as under `serve`, and sending
  new ones for each answer as an app embedded in another does.

Needs valgrind (Debian package valgrind). Usage, from the project root:
python -m bench.instructions [--duration SECONDS]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

from bench.run import (
    PYTHON,
    ROOT,
    SPREAD,
    floor_argv,
    mtasts_argv,
    pinned,
    row,
    write_config,
    write_hosts,
    wrk,
)
from tests.processes import free_port, wait_for_answer

CALLS = 20_000
"""Calls of the app driven directly."""
ENV = {**os.environ, "PYTHONHASHSEED": "0"}
"""One hash seed for every run: dictionaries laid out alike, so that runs count alike."""
_DRIVE = """
import sys
from bench.run import PATH
target = sys.argv[1]
if target == "floor":
    from bench.floor import app
else:
    from mtasts_host.app import create_app
    policies = create_app(target, watch=False, access_log=False)
    policies.reuse_messages = sys.argv[4] == "reuse"
    app = policies.__call__
hosts = [line.encode() for line in open(sys.argv[2]).read().split()]
scopes = [
    {"type": "http", "method": "GET", "path": PATH, "root_path": "", "headers": [(b"host", h)]}
    for h in hosts
]
async def send(message): pass
async def receive(): return {}
def drive(calls):
    for i in range(calls):
        try:
            app(scopes[i % len(scopes)], receive, send).send(None)
        except StopIteration:
            pass
drive(len(scopes))  # the memo filled, as in a served process after its warm-up
print("ready", flush=True)
sys.stdin.readline()
drive(int(sys.argv[3]))
print("done", flush=True)
sys.stdin.readline()
"""


def callgrind(argv: Sequence[str], out: Path) -> list[str]:
    return [
        "valgrind",
        "--tool=callgrind",
        "--instr-atstart=no",
        f"--callgrind-out-file={out}",
        *argv,
    ]


def control(pid: int, *args: str) -> None:
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True)


def counted(out: Path) -> int:
    """The instructions in every dump of one callgrind run."""
    return sum(
        int(line.split()[1])
        for dump in out.parent.glob(out.name + "*")
        for line in dump.read_text().splitlines()
        if line.startswith("totals:")
    )


@contextlib.contextmanager
def counting(process: subprocess.Popen[str]) -> Iterator[None]:
    """Count the instructions of ``process`` while the block runs, then dump them."""
    control(process.pid, "-i", "on")
    try:
        yield
    finally:
        control(process.pid, "-i", "off")
        control(process.pid, "-d")


def served(argv: Sequence[str], port: int, hosts: Path, work: Path, duration: int) -> float:
    """Instructions a request costs the server that ``argv`` starts on ``port``."""
    out = work / "callgrind.served"
    for old in work.glob(out.name + "*"):
        old.unlink()
    process = subprocess.Popen(
        pinned(callgrind(argv, out), 0),
        cwd=ROOT,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        wait_for_answer("127.0.0.1", port, process, timeout=600)  # type: ignore[arg-type]
        wrk(port, hosts, work, connections=16, duration=3)
        with counting(process):
            load = wrk(port, hosts, work, connections=16, duration=duration)
    finally:
        process.terminate()
        process.wait(120)
    if load.errors:
        raise RuntimeError(f"{load.errors} answers were not 200")
    return counted(out) / load.requests


def alone(target: str, hosts: Path, work: Path, messages: str = "new") -> float:
    """Instructions a call of the app costs, driven directly (``target``: floor or a config;
    ``messages``: reuse or new)."""
    out = work / "callgrind.alone"
    for old in work.glob(out.name + "*"):
        old.unlink()
    argv = [PYTHON, "-c", _DRIVE, target, str(hosts), str(CALLS), messages]
    with subprocess.Popen(
        callgrind(argv, out),
        cwd=ROOT,
        env=ENV,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    ) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        if process.stdout.readline() != "ready\n":
            raise RuntimeError("the driver failed to start")
        with counting(process):
            process.stdin.write("\n")
            process.stdin.flush()
            if process.stdout.readline() != "done\n":
                raise RuntimeError("the driver failed")
        process.stdin.write("\n")
        process.stdin.flush()
    return counted(out) / CALLS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--duration", type=int, default=10, help="seconds of counted load")
    args = parser.parse_args()
    for tool in ("valgrind", "callgrind_control", "wrk"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (Debian packages valgrind, wrk)")
    print("\n== Instructions a request costs in user space (callgrind) ==")
    row("", "floor", "mtasts-host", "ratio")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        config = write_config(work / "d.yaml", 10_000)
        hosts = write_hosts(work / "hosts.txt", SPREAD)
        ports = free_port(), free_port()
        figures = {
            "served by uvicorn, keep-alive, 16 connections": (
                served(floor_argv(ports[0]), ports[0], hosts, work, args.duration),
                served(mtasts_argv(config, ports[1]), ports[1], hosts, work, args.duration),
            ),
            "the app alone, driven directly, as under serve": (
                floor := alone("floor", hosts, work),
                alone(str(config), hosts, work, "reuse"),
            ),
            "the same, new messages for each answer (embedded)": (
                floor,
                alone(str(config), hosts, work, "new"),
            ),
        }
    for name, (floor, ours) in figures.items():
        row(name, f"{floor:,.0f}", f"{ours:,.0f}", f"{ours / floor:.3f}")


if __name__ == "__main__":
    main()
