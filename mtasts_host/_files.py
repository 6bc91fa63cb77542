"""Reading a file an operator names: a regular file, never a FIFO left waiting for a writer."""

from __future__ import annotations

import os
import stat


class NotAFile(ValueError):
    """The path names a directory, a FIFO, a device or a socket; the message says which."""


def read_file(path: str | os.PathLike[str], limit: int) -> tuple[bytes, os.stat_result]:
    """
    At most ``limit + 1`` bytes of the regular file at ``path`` (one more than allowed shows
    it is too large), and its status as it was opened.

    Raises:
        OSError: the file cannot be opened or read.
        NotAFile: ``path`` names anything but a regular file.
    """
    fd, status = _open(path)
    with os.fdopen(fd, "rb") as file:
        return file.read(limit + 1), status


def check_file(path: str | os.PathLike[str]) -> None:
    """
    Check that ``path`` is a regular file that can be opened, before a library that would
    wait on a FIFO there (OpenSSL) reads it.

    Raises:
        OSError: the file cannot be opened.
        NotAFile: ``path`` names anything but a regular file.
    """
    fd, _ = _open(path)
    os.close(fd)


def _open(path: str | os.PathLike[str]) -> tuple[int, os.stat_result]:
    # O_NONBLOCK: a FIFO in place of the file must give an error, not a hang.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode):
            raise NotAFile("a directory" if stat.S_ISDIR(status.st_mode) else "not a regular file")
    except BaseException:
        # Closed here: wrapping the descriptor of a directory fails without closing it.
        os.close(fd)
        raise
    return fd, status
