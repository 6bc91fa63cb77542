"""
Reload latency: from a completed write of the YAML file (an atomic rename, as deploy tools
do) to the new policy being served by a real ``mtasts-host serve`` process over HTTP.

The baseline, measured in the same run, is watchfiles itself: the time from the same kind of
write to its ``watch()`` yielding the change, with the same debounce settings. The ratio shows
what loading, validating, swapping and serving add on top of noticing the change.

Usage, from the project root: python -m bench.reload [--edits N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import watchfiles

from mtasts_host.reload import DEBOUNCE_MS, STEP_MS
from tests.processes import free_port

CONFIG = """\
domains:
  example.com:
    mode: enforce
    mx: [mail.example.com]
    max_age: {max_age}
"""
TIMEOUT = 5.0


def write(path: Path, max_age: int) -> float:
    tmp = path.with_name("next.yaml")
    tmp.write_text(CONFIG.format(max_age=max_age))
    os.replace(tmp, path)
    return time.perf_counter()


def serve_latencies(directory: Path, edits: int) -> list[float]:
    path = directory / "config.yaml"
    write(path, 604800)
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "mtasts_host",
        "serve",
        "--config",
        str(path),
        "--port",
        str(port),
    ]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)

    def served() -> bytes:
        connection.request(
            "GET", "/.well-known/mta-sts.txt", headers={"Host": "mta-sts.example.com"}
        )
        return connection.getresponse().read()

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                served()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                connection.close()
                time.sleep(0.05)
        latencies = []
        for i in range(edits):
            max_age = 700000 + i
            expected = f"max_age: {max_age}\r\n".encode()
            start = write(path, max_age)
            while not served().endswith(expected):
                if time.perf_counter() - start > TIMEOUT:
                    raise TimeoutError(f"edit {i} was not served within {TIMEOUT} s")
                time.sleep(0.001)
            latencies.append(time.perf_counter() - start)
            time.sleep(0.05)  # let the server settle before the next edit
        return latencies
    finally:
        connection.close()
        process.terminate()
        process.wait(10)


def watchfiles_latencies(directory: Path, edits: int) -> list[float]:
    path = directory / "config.yaml"
    write(path, 604800)
    stop = threading.Event()
    seen = threading.Event()
    ready = threading.Event()

    def watch() -> None:
        for _ in watchfiles.watch(
            directory,
            debounce=DEBOUNCE_MS,
            step=STEP_MS,
            stop_event=stop,
            recursive=False,
            yield_on_timeout=True,
            rust_timeout=100,
        ):
            ready.set()
            seen.set()

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    ready.wait(TIMEOUT)
    latencies = []
    for i in range(edits):
        seen.clear()
        start = write(path, 700000 + i)
        if not seen.wait(TIMEOUT):
            raise TimeoutError(f"watchfiles did not report edit {i} within {TIMEOUT} s")
        latencies.append(time.perf_counter() - start)
        time.sleep(0.15)  # past the next idle timeout, so the next yield is the next change
    stop.set()
    thread.join(TIMEOUT)
    return latencies


def summary(latencies: list[float]) -> tuple[float, float]:
    return statistics.median(latencies) * 1000, max(latencies) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--edits", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as base, tempfile.TemporaryDirectory() as served:
        baseline = summary(watchfiles_latencies(Path(base), args.edits))
        ours = summary(serve_latencies(Path(served), args.edits))
    print(
        f"reload latency over {args.edits} edits (ms), debounce {DEBOUNCE_MS} ms, step {STEP_MS} ms"
    )
    print(f"{'':32} {'median':>8} {'worst':>8}")
    print(f"{'watchfiles notices the change':32} {baseline[0]:8.1f} {baseline[1]:8.1f}")
    print(f"{'mtasts-host serves the change':32} {ours[0]:8.1f} {ours[1]:8.1f}")
    ratios = ours[0] / baseline[0], ours[1] / baseline[1]
    print(f"{'ratio mtasts-host / watchfiles':32} {ratios[0]:8.2f} {ratios[1]:8.2f}")


if __name__ == "__main__":
    main()
