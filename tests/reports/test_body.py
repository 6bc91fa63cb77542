"""Gzip or JSON by the first bytes, and limits that a gzip bomb cannot get past."""

from __future__ import annotations

import gzip
import tracemalloc

import pytest

from mtasts_host.reports.body import MAX_REPORT_SIZE, MAX_WIRE_SIZE, TooLarge, report_text
from mtasts_host.reports.report import BadReport

from .conftest import bomb

TEXT = b'{"organization-name": "x"}'


def test_json_is_taken_as_it_is() -> None:
    assert report_text(TEXT) == TEXT


def test_gzip_is_recognised_by_its_magic_bytes() -> None:
    assert report_text(gzip.compress(TEXT)) == TEXT


def test_several_gzip_members_are_one_text() -> None:
    assert report_text(gzip.compress(TEXT[:10]) + gzip.compress(TEXT[10:])) == TEXT


def test_trailing_zero_padding_is_ignored() -> None:
    assert report_text(gzip.compress(TEXT) + bytes(8)) == TEXT


def test_exactly_at_the_limit_passes() -> None:
    assert report_text(gzip.compress(bytes(1000)), limit=1000) == bytes(1000)
    with pytest.raises(TooLarge, match="decompresses to more than"):
        report_text(gzip.compress(bytes(1001)), limit=1000)


def test_values_are_counted_before_parsing() -> None:
    # Six values: the two arrays, the object and the three numbers.
    assert report_text(b"[0,[1,2],{}]", values=6) == b"[0,[1,2],{}]"
    with pytest.raises(TooLarge, match=r"^the report has more than 5 JSON values \(commas,"):
        report_text(b"[0,[1,2],{}]", values=5)
    # An upper bound: a comma in a string counts too.
    with pytest.raises(TooLarge, match="more than 0 JSON values"):
        report_text(gzip.compress(b'"a,b"'), values=0)


def test_plain_text_over_the_limit() -> None:
    with pytest.raises(TooLarge, match=r"^the report is larger than 0\.000953674 MiB$"):
        report_text(bytes(1001), limit=1000)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (gzip.compress(TEXT)[:-5], "corrupt gzip: the data ends before the end of the stream"),
        (b"\x1f\x8b" + b"garbage" * 10, "corrupt gzip: Error -3 while decompressing data"),
        (gzip.compress(TEXT) + b"trailing", "corrupt gzip: data after the end of the stream"),
        (gzip.compress(TEXT)[:-8] + b"\0\0\0\0\0\0\0\0", "corrupt gzip: Error -3"),
    ],
    ids=["truncated", "garbage", "trailing-data", "bad-crc"],
)
def test_corrupt_gzip_is_a_bad_report(data: bytes, message: str) -> None:
    with pytest.raises(BadReport) as caught:
        report_text(data)
    assert str(caught.value).startswith(message)


def test_a_gzip_bomb_costs_no_memory() -> None:
    data = bomb()
    assert len(data) < MAX_WIRE_SIZE
    tracemalloc.start()
    try:
        with pytest.raises(TooLarge, match="decompresses to more than 20 MiB"):
            report_text(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # The output up to the limit, and a little: never the gigabyte.
    assert peak < 3 * MAX_REPORT_SIZE


def test_gzip_in_gzip_is_inflated_twice_and_no_more() -> None:
    assert report_text(gzip.compress(gzip.compress(TEXT))) == TEXT
    assert report_text(gzip.compress(gzip.compress(gzip.compress(TEXT)))).startswith(b"\x1f\x8b")
    with pytest.raises(TooLarge, match="decompresses to more than 20 MiB"):
        report_text(gzip.compress(bomb()))
