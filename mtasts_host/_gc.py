"""Memory management around large loads: the cyclic collector, and freed memory."""

from __future__ import annotations

import contextlib
import ctypes
import gc
import threading
from collections.abc import Callable, Iterator

_pause = threading.Lock()
_paused = 0
"""Threads inside ``collector_paused`` now: the collector runs again when the last one leaves."""
_restart = False
"""The collector was running when the first of them came in."""


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """
    Pause the cyclic collector while a configuration is loaded and rendered, and while a
    worker thread renders a large answer (the metrics, the reports page).

    A large file allocates millions of objects, which makes the collector run full
    collections over the whole heap several times while holding the GIL: a hundred
    milliseconds each in which the server answers nothing. Loading makes no cycles, and
    reference counting frees everything else as usual meanwhile. The pause is counted, so
    that threads pausing at once (a scrape during a reload) leave it running only once the
    last is done, and never turn it on if it was off.
    """
    global _paused, _restart
    with _pause:
        if _paused == 0:
            _restart = gc.isenabled()
            gc.disable()
        _paused += 1
    try:
        yield
    finally:
        with _pause:
            _paused -= 1
            if _paused == 0 and _restart:
                gc.enable()


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        trim: Callable[[int], int] = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return None
    return trim


_TRIM = _malloc_trim()


def release_free_memory() -> None:
    """
    Give memory freed by a replaced configuration back to the system, where the C library
    allows it (glibc): otherwise a reload of a large file leaves the process tens of MiB
    larger than a fresh start.
    """
    if _TRIM is not None:
        _TRIM(0)
