"""
The ``command`` backend, for any DNS provider: a program run once per changed record, with
the record in its environment.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping, Sequence

from .backend import Applied, Result
from .plan import Change

TIMEOUT = 300
"""Seconds a command may take: a provider's API may be slow, but never forever."""


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
            done = subprocess.run(
                self.argv,
                env=environ,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return Applied(Result.FAILED, f"command {command} did not end within {TIMEOUT} s")
        except OSError as exc:
            return Applied(Result.FAILED, f"command {command}: {(exc.strerror or '').lower()}")
        if done.returncode != 0:
            output = (done.stderr or done.stdout).decode("utf-8", "replace").strip()
            last = output.splitlines()[-1] if output else "no output"
            return Applied(
                Result.FAILED, f"command {command} exited with {done.returncode}: {last}"
            )
        return Applied(Result.DONE)
