"""
The ``command`` backend, for any DNS provider: a program run once per changed record, with
the record in its environment.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from typing import IO

from .backend import Applied, Result
from .plan import Change

TIMEOUT = 300
"""Seconds a command may take: a provider's API may be slow, but never forever."""
_KEPT = 4096
"""Bytes of a command's output kept, from its end: its last line says why it failed."""
_DRAIN = 1.0
"""Seconds to read what a command wrote once it has ended."""


class Hook:
    """
    Runs ``argv`` with ``MTASTS_RECORD_NAME``, ``_TYPE``, ``_VALUE`` (the data as one
    unquoted string), ``_TTL`` and ``_ZONE`` added to the environment, and what the name
    holds, each list one value a line: ``_OLD_VALUE``, the records the new one replaces,
    and ``_OLD_TYPE``, their type (both empty when it replaces none); ``_KEPT``, the TXT
    records of other kinds beside it (a site verification), which must stay. It must exit 0.

    A per-record API deletes each old value and adds the new one; a per-RRset API sets
    ``_TYPE`` to the new value and the kept ones, and deletes ``_OLD_TYPE`` if it differs.
    When the type changes, nothing is kept: a CNAME stands alone (RFC 1034 section 3.6.2).

    A command cannot make its write depend on the old value, so the caller reads the record
    again just before running it: that narrows the window, not closes it.
    """

    atomic = False

    def __init__(self, argv: Sequence[str]) -> None:
        self.argv = tuple(argv)

    def check(self, pending: Mapping[str, Sequence[Change]]) -> str | None:
        return None

    def apply(self, change: Change, zone: str) -> Applied:
        record, current = change.record, change.current
        old = current.ours(record) if current is not None else ()
        kept = current.kept(record) if current is not None else ()
        environ = {
            **os.environ,
            "MTASTS_RECORD_NAME": record.name,
            "MTASTS_RECORD_TYPE": record.type,
            "MTASTS_RECORD_VALUE": record.value,
            "MTASTS_RECORD_TTL": str(record.ttl),
            "MTASTS_RECORD_OLD_VALUE": "\n".join(old),
            "MTASTS_RECORD_OLD_TYPE": current.type if current is not None and old else "",
            "MTASTS_RECORD_KEPT": "\n".join(kept),
            "MTASTS_RECORD_ZONE": zone,
        }
        command = self.argv[0]
        try:
            process = subprocess.Popen(
                self.argv,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            return Applied(Result.FAILED, f"command {command}: {(exc.strerror or '').lower()}")
        assert process.stdout is not None
        assert process.stderr is not None
        outputs = [_Tail(process.stdout), _Tail(process.stderr)]
        try:
            returncode = process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            return Applied(Result.FAILED, f"command {command} did not end within {TIMEOUT} s")
        finally:
            for output in outputs:
                # What it wrote before it ended is there to read at once; a process it left
                # behind may keep the pipe open for as long as it likes.
                output.join(_DRAIN)
        if returncode != 0:
            last = outputs[1].last_line() or outputs[0].last_line() or "no output"
            return Applied(Result.FAILED, f"command {command} {_ended(returncode)}: {last}")
        return Applied(Result.DONE)


class _Tail(threading.Thread):
    """
    Reads a pipe to its end in a daemon thread, keeping the last ``_KEPT`` bytes: a chatty
    command costs no memory, and one whose pipe a process it started holds open ends when
    it exits.
    """

    def __init__(self, pipe: IO[bytes]) -> None:
        super().__init__(name="mtasts-host-command-output", daemon=True)
        self.pipe = pipe
        self.kept = b""
        self.start()

    def run(self) -> None:
        with self.pipe:
            while chunk := os.read(self.pipe.fileno(), 65536):
                self.kept = (self.kept + chunk)[-_KEPT:]

    def last_line(self) -> str:
        text = self.kept.decode("utf-8", "replace").strip()
        return text.splitlines()[-1] if text else ""


def _ended(returncode: int) -> str:
    """How a command ended: subprocess gives a signal that killed it as its negative."""
    if returncode >= 0:
        return f"exited with {returncode}"
    try:
        return f"was killed by {signal.Signals(-returncode).name}"
    except ValueError:
        return f"was killed by signal {-returncode}"
