"""
The ``command`` backend, for any DNS provider: a program run once per changed record, with
the record in its environment.
"""

from __future__ import annotations

import contextlib
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
GRACE = 5.0
"""Seconds an interrupted run (Ctrl-C, or SIGTERM to ``publish``) gives its command to finish
the record in hand, as ``serve`` gives the publisher on SIGTERM."""
_running: dict[subprocess.Popen[bytes], threading.Thread] = {}
"""The commands running now, each with the thread that runs it, for ``end_started_by``."""
_running_lock = threading.Lock()


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
    keeps_ttl = False
    """Providers clamp TTLs to their own limits: GoDaddy keeps 600 s at least, Gandi 300 s,
    Cloudflare 60 s (or 300 for "auto")."""

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
        # One value a line, in an environment that ends each at a NUL byte: a record with
        # either (someone else's, or hostile) cannot be told to the command as it is.
        unfit = next((v for v in (*old, *kept) if "\0" in v or "\n" in v), None)
        if unfit is not None:
            return Applied(
                Result.FAILED,
                f"command {command} not run: the name holds {unfit!r}, whose NUL byte or line "
                "break its environment cannot pass on; change that record by hand",
            )
        try:
            process = subprocess.Popen(
                self.argv,
                env=environ,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                # Ctrl-C, or a supervisor signalling mtasts-host's process group, would cut
                # it off between its delete and its add: mtasts-host decides when it ends.
                start_new_session=True,
            )
        except OSError as exc:
            return Applied(Result.FAILED, f"command {command}: {(exc.strerror or '').lower()}")
        outputs: list[_Tail] = []
        try:
            # Inside the try: an interruption while the readers start gives the command its
            # time and ends it too.
            with _running_lock:
                _running[process] = threading.current_thread()
            assert process.stdout is not None
            assert process.stderr is not None
            outputs += [_Tail(process.stdout), _Tail(process.stderr)]
            returncode = process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            _kill(process)
            return Applied(Result.FAILED, f"command {command} did not end within {TIMEOUT} s")
        except BaseException:
            # Interrupted (Ctrl-C, SIGTERM): the record in hand is finished, for a while.
            try:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(GRACE)
            finally:  # a second Ctrl-C included
                _kill(process)
            raise
        finally:
            with _running_lock:
                _running.pop(process, None)
            for output in outputs:
                # What it wrote before it ended is there to read at once; a process it left
                # behind may keep the pipe open for as long as it likes.
                output.join(_DRAIN)
        if returncode != 0:
            last = outputs[1].last_line() or outputs[0].last_line() or "no output"
            return Applied(Result.FAILED, f"command {command} {_ended(returncode)}: {last}")
        return Applied(Result.DONE)


def end_started_by(thread: threading.Thread) -> None:
    """
    End every command that ``thread`` runs, and what each started: its publisher stops, and
    they have had their time. In a session of their own, they would outlive it. Another
    publisher's in the process (another app's) may be between its delete and its add.
    """
    with _running_lock:
        running = [process for process, runner in _running.items() if runner is thread]
    for process in running:
        _kill(process)


def _kill(process: subprocess.Popen[bytes]) -> None:
    """End a command still running, and what it started: its session's process group."""
    if process.poll() is None:
        # Not reaped, so its process ID, the group's, is still its own; reaped this instant
        # by the thread that runs it, with nothing it started left, there is no group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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
