"""
The commands' standard streams: filled where they are closed, and what their output failing
(its reader gone, a full disk) ends a command with.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sys

EX_BROKEN_PIPE = 141
"""A command whose reader went away (``| head``): 128 + 13, as a shell reports a command
that SIGPIPE ended, which Python ignores."""
EX_IOERR = 74
"""A command whose output could not be written (a full disk): sysexits.h's EX_IOERR."""
# What writing to a file or a device fails with, as opposed to a connection's errors: the
# commands write no file but their output.
_WRITE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def fill() -> None:
    """
    Put /dev/null where standard input, output or error is closed (``2>&-``): else the next
    socket or file opened takes its number, and what is meant for standard error goes there,
    or is refused (libuv, under uvicorn's uvloop, aborts closing a socket numbered 2).
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            os.set_inheritable(os.open(os.devnull, os.O_RDWR), True)  # the lowest free: fd
    # Closed as Python started, sys.stdout or sys.stderr is None: the reports summary's write
    # raised AttributeError, and print(file=sys.stderr) wrote on standard output. Each is
    # the /dev/null put there, for the whole run.
    if sys.stdout is None:
        sys.stdout = open(1, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)  # noqa: SIM115


def reader_gone() -> int:
    """End a command whose output's reader went away: quietly, as SIGPIPE ends others."""
    _discard_output()
    return EX_BROKEN_PIPE


def write_failed(exc: OSError) -> int | None:
    """
    End a command whose output could not be written (``exc``): one line, ``EX_IOERR``; None
    if ``exc`` is no such failure.
    """
    if exc.errno not in _WRITE_ERRORS:
        return None
    _discard_output()  # what is left in the buffer would fail again at exit
    with contextlib.suppress(OSError):  # standard error may be the full one
        print(f"mtasts-host: error: cannot write the output: {exc.strerror}", file=sys.stderr)
    return EX_IOERR


def _discard_output() -> None:
    # What is still buffered would raise again as Python flushes it at exit, with an
    # "Exception ignored" message (see "Note on SIGPIPE" in the docs of the signal module).
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # a stream of no file: an in-process caller's own
        pass
