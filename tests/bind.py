"""named, BIND 9's authoritative DNS server, for the publisher's tests."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from .processes import STARTUP_TIMEOUT, Process, logged, need, running


def tsig_keygen(directory: Path, name: str) -> Path:
    """A new TSIG key, written by BIND's tsig-keygen as ``directory/name.key``."""
    path = directory / f"{name}.key"
    program = need("tsig-keygen", "bind9-utils")
    made = subprocess.run([program, "-a", "hmac-sha256", name], capture_output=True, check=True)
    path.write_bytes(made.stdout)
    return path


def _loaded(process: Process) -> None:
    """
    Wait for the zones: named listens before it has loaded them, and answers SERVFAIL
    meanwhile.
    """
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not logged(process, "all zones loaded"):
        if process.process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"named did not load its zones:\n{process.output()}")
        time.sleep(0.05)


@contextlib.contextmanager
def named(
    tmp: Path,
    address: str,
    port: int,
    zones: Mapping[str, str],
    *,
    keys: Sequence[Path] = (),
    updater: str | None = None,
    per_record: bool = False,
    rrset_order: str = "random",
) -> Iterator[Process]:
    """
    named in the foreground serving ``zones`` (origin to zone text) on address:port, which
    must be an interface's address, such as 127.0.0.1 (named listens on interfaces only);
    knows every key of ``keys`` (tsig-keygen files), and lets the key named ``updater``
    (only) update the zones, if any: by ``allow-update``, which BIND checks for every
    update, or with ``per_record`` by ``update-policy``, which it checks for each record
    an update adds or deletes; answers with the records of an RRset in ``rrset_order``
    (BIND's default, random, or cyclic: turned by one at each query). Every file named
    writes stays under ``tmp``, so it runs as root or not.
    """
    program = need("named", "bind9")
    tmp.mkdir()
    (tmp / "zones").mkdir()
    lines = [f'include "{path}";' for path in keys]
    lines += [
        "options {",
        f'    directory "{tmp}";',
        "    pid-file none;",
        "    session-keyfile none;",
        f"    listen-on port {port} {{ {address}; }};",
        "    listen-on-v6 { none; };",
        "    recursion no;",
        "    dnssec-validation no;",
        "    notify no;",
        f"    rrset-order {{ order {rrset_order}; }};",
        "};",
        "controls { };",  # no rndc channel: nothing listens on port 953
    ]
    if updater is None:
        grant = ""
    elif per_record:
        grant = f"    update-policy {{ grant {updater} zonesub ANY; }};"
    else:
        grant = f"    allow-update {{ key {updater}; }};"
    for origin, text in zones.items():
        path = tmp / "zones" / f"{origin}.zone"
        path.write_text(text)
        lines += [f'zone "{origin}" {{', "    type primary;", f'    file "{path}";']
        lines += [grant, "};"] if grant else ["};"]
    (tmp / "named.conf").write_text("\n".join(lines) + "\n")
    # -g: the foreground, logging to stderr; -n 1: one worker thread on a shared machine.
    argv = [program, "-g", "-4", "-n", "1", "-c", str(tmp / "named.conf")]
    with running(argv, tmp / "named.log", address, port) as process:
        _loaded(process)
        yield process
