"""
A report as it arrives: gzip or JSON by its first bytes, whatever its Content-Type says, and
never larger than the limits, however well it compresses.
"""

from __future__ import annotations

import zlib

from .report import BadReport

MAX_WIRE_SIZE = 1 << 20
"""1 MiB as sent: a day's report of a large sender compresses to a few KiB."""
MAX_REPORT_SIZE = 20 << 20
"""20 MiB decompressed: twice the ten megabytes RFC 8460 section 5.2 calls a common limit."""
MAX_REPORT_VALUES = 500_000
"""JSON values in a report: as many as ten megabytes of real failure details hold (some 150
bytes and six values each), while 20 MiB of ``{},`` would be seven million objects, 570 MB
once parsed. A report at the limit takes some 80 MiB to parse and store, its text included."""
GZIP_MAGIC = b"\x1f\x8b"
"""The first two bytes of gzip data (RFC 8460 section 6.5, RFC 1952)."""


class TooLarge(Exception):
    """A report over a size limit; the message is one line saying which."""


def is_gzip(data: bytes) -> bool:
    return data[:2] == GZIP_MAGIC


def report_text(
    data: bytes, limit: int = MAX_REPORT_SIZE, values: int = MAX_REPORT_VALUES
) -> bytes:
    """
    The JSON text of a report body: decompressed if it starts with the gzip magic bytes
    (twice if what comes out starts with them too), as it is otherwise.

    Raises:
        TooLarge: the text is, or would decompress to, more than ``limit`` bytes, or holds
            more than ``values`` JSON values. A gzip bomb is stopped at ``limit`` bytes of
            output, never inflated whole.
        BadReport: the gzip data is corrupt or truncated.
    """
    text = _inflated(data, limit) if is_gzip(data) else data
    if is_gzip(text):
        # An application/tlsrpt+gzip body sent with Content-Encoding: gzip on top, as an HTTP
        # client compressing its requests sends it: once more, and no further.
        text = _inflated(text, limit)
    if len(text) > limit:
        raise TooLarge(f"the report is larger than {_mib(limit)}")
    # Every array element and object member follows one of these bytes: an upper bound on
    # the objects json.loads would build, counted at C speed without building one.
    if text.count(b",") + text.count(b"{") + text.count(b"[") > values:
        raise TooLarge(
            f"the report has more than {values:,} JSON values (commas, braces, brackets)"
        )
    return text


def _inflated(data: bytes, limit: int) -> bytes:
    out = bytearray()
    pending = data
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        while True:
            # One byte more than allowed tells "exactly at the limit" from "beyond it".
            out += inflater.decompress(pending, limit + 1 - len(out))
            if len(out) > limit:
                raise TooLarge(f"the report decompresses to more than {_mib(limit)}")
            if inflater.unconsumed_tail:
                pending = inflater.unconsumed_tail
                continue
            if not inflater.eof:
                raise BadReport("corrupt gzip: the data ends before the end of the stream")
            rest = inflater.unused_data
            if is_gzip(rest):  # RFC 1952 allows several members, one after the other
                pending, inflater = rest, zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                continue
            if rest.strip(b"\x00"):
                raise BadReport("corrupt gzip: data after the end of the stream")
            return bytes(out)
    except zlib.error as exc:
        raise BadReport(f"corrupt gzip: {exc}") from exc


def _mib(size: int) -> str:
    return f"{size / (1 << 20):g} MiB"
