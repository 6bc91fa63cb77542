"""SIGTERM as an exception: what runs unwinds, and what it started stops first."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator


class Terminated(BaseException):
    """SIGTERM came: unwind, so that what runs beside (a command writing a record) stops
    first, then end as SIGTERM ends a process (``end``)."""


def raise_terminated(signum: int, frame: object) -> None:
    raise Terminated


@contextlib.contextmanager
def unwinding() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` within; the handler before is put back after."""
    before = signal.signal(signal.SIGTERM, raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


def end() -> None:
    """End as SIGTERM ends a process, unless the caller's own handler takes it, or it is
    ignored (as by PID 1)."""
    signal.raise_signal(signal.SIGTERM)
