"""The parsers of option values, shared by the command line and the environment."""

from __future__ import annotations

import pytest

from mtasts_host.options import duration, seconds


@pytest.mark.parametrize(
    ("text", "value"), [("2", 2.0), ("2.5", 2.5), ("0.01", 0.01), ("31536000", 31536000.0)]
)
def test_seconds(text: str, value: float) -> None:
    assert seconds(text) == value


@pytest.mark.parametrize(
    "text",
    [
        *("", "0", "-1", " 2", "1_0", "1e3", "inf", "nan", "١٢", "2."),
        # Longer crashed the doctor: Thread.join(9223372037) raises OverflowError.
        *("31536000.5", "9223372037", "9" * 400),
    ],
)
def test_seconds_are_ascii_decimal_up_to_a_year(text: str) -> None:
    message = r"^expected a positive number of seconds, at most 31536000$"
    with pytest.raises(ValueError, match=message):
        seconds(text)


@pytest.mark.parametrize(("text", "value"), [("1", 1.0), ("15m", 900.0), ("365d", 31536000.0)])
def test_duration(text: str, value: float) -> None:
    assert duration(text) == value


@pytest.mark.parametrize("text", ["0.5", "366d", "9999999999999999d", "١٢"])
def test_duration_is_one_second_to_a_year(text: str) -> None:
    # A longer one crashed the doctor's thread: Event.wait(8.64e20) raises OverflowError.
    with pytest.raises(ValueError, match=r"^expected a duration from 1 s to 365 d"):
        duration(text)
