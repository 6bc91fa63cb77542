"""The cyclic collector paused around large loads and renderings."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

import pytest

from mtasts_host._gc import collector_paused


@pytest.fixture
def collecting() -> Iterator[None]:
    assert gc.isenabled()
    yield
    gc.enable()  # whatever a failing test left


def test_pauses_that_overlap_restart_the_collector_when_the_last_ends(collecting: None) -> None:
    # A scrape (or a page) in a worker thread during a reload: the first to end must not
    # turn the collector on under the other, whose load it would stall again.
    first, second = contextlib.ExitStack(), contextlib.ExitStack()
    first.enter_context(collector_paused())
    second.enter_context(collector_paused())
    first.close()
    assert not gc.isenabled()
    second.close()
    assert gc.isenabled()


def test_a_pause_leaves_a_collector_turned_off_off(collecting: None) -> None:
    gc.disable()
    with collector_paused(), collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_a_pause_ends_on_an_error(collecting: None) -> None:
    with pytest.raises(ValueError, match="failed"), collector_paused():
        raise ValueError("failed")
    assert gc.isenabled()
