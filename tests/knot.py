"""knotd, the authoritative DNS server of the doctor's and the publisher's tests."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

from mtasts_host.tsigkey import read_key_file

from .processes import need, running


def _key_section(paths: Sequence[Path]) -> list[str]:
    lines = ["key:"]
    for path in paths:
        key = read_key_file(path)
        secret = path.read_text().split("secret:")[1].split()[0]
        lines += [f"  - id: {key.name}", f"    algorithm: {key.algorithm}", f"    secret: {secret}"]
    return lines


@contextlib.contextmanager
def knot(
    tmp: Path,
    address: str,
    port: int,
    zones: Mapping[str, str],
    *,
    keys: Sequence[Path] = (),
    updater: str | None = None,
    limits: Sequence[str] = (),
) -> Iterator[None]:
    """knotd in the foreground serving ``zones`` (origin to zone text) on address:port;
    knows every key of ``keys`` (keymgr files), and lets the key named ``updater`` (only)
    update the zones, if any, within ``limits``: more lines of its ACL rule, such as
    ``update-owner`` or ``update-type`` ones."""
    tmp.mkdir()
    (tmp / "zones").mkdir()
    lines = [
        "server:",
        f'    rundir: "{tmp}"',
        f"    listen: {address}@{port}",
        "log:",
        "  - target: stderr",
        "    any: warning",
        "database:",
        f'    storage: "{tmp}/db"',
        *(_key_section(keys) if keys else []),
    ]
    if updater is not None:
        lines += ["acl:", "  - id: update", f"    key: {updater}", "    action: update"]
        lines += [f"    {line}" for line in limits]
    lines += [
        "template:",
        "  - id: default",
        f'    storage: "{tmp}/zones"',
        "    zonefile-sync: -1",
        "    zonefile-load: whole",
        "    journal-content: none",
        *(["    acl: update"] if updater is not None else []),
        "zone:",
    ]
    for origin, text in zones.items():
        (tmp / "zones" / f"{origin}.zone").write_text(text)
        lines += [f"  - domain: {origin}", f"    file: {origin}.zone"]
    (tmp / "knot.conf").write_text("\n".join(lines) + "\n")
    argv = [need("knotd", "knot"), "-c", str(tmp / "knot.conf")]
    with running(argv, tmp / "knot.log", address, port):
        yield
