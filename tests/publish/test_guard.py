"""The ordering guard, driven by a scripted fetch: no sockets, no real waiting."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

from mtasts_host.policy import policy_id
from mtasts_host.publish.fetch import FetchError
from mtasts_host.publish.guard import await_body, differs, in_turn

NEW, OLD = b"version: STSv1\r\nmode: testing\r\n", b"version: STSv1\r\nmode: enforce\r\n"
URL = "https://mta-sts.a.example/.well-known/mta-sts.txt"


def _script(*answers: bytes | str) -> Iterator[bytes | str]:
    yield from answers
    while True:
        yield answers[-1]


def _fetch(answers: Iterator[bytes | str], log: list[bytes | str]) -> Callable[[str], bytes]:
    def fetch(url: str) -> bytes:
        answer = next(answers)
        log.append(answer)
        if isinstance(answer, str):
            raise FetchError(answer)
        return answer

    return fetch


def test_three_in_a_row_and_an_old_answer_starts_again() -> None:
    log: list[bytes | str] = []
    answers = _script(OLD, NEW, NEW, OLD, "connection refused by 127.0.0.1:443", NEW, NEW, NEW)
    sighting = await_body("a.example", URL, NEW, _fetch(answers, log), timeout=5, interval=0)
    assert sighting.problem is None
    assert sighting.served_since is not None
    assert log == [OLD, NEW, NEW, OLD, "connection refused by 127.0.0.1:443", NEW, NEW, NEW]


def test_never_served() -> None:
    fetch = _fetch(_script(OLD), [])
    sighting = await_body("a.example", URL, NEW, fetch, timeout=0.05, interval=0.01)
    assert sighting.served_since is None
    assert sighting.problem == (
        f"a.example: the new policy (id {policy_id(NEW)}) is not served at {URL} after "
        f"0.05 s (it serves id {policy_id(OLD)}); that id is not published"
    )


def test_the_last_error_says_why() -> None:
    fetch = _fetch(_script("HTTP 404 Not Found"), [])
    sighting = await_body("a.example", URL, NEW, fetch, timeout=0.05, interval=0.01)
    assert sighting.problem is not None
    assert "after 0.05 s (HTTP 404 Not Found); that id is not published" in sighting.problem


def test_a_streak_cut_short_says_how_far_it_got() -> None:
    # A reload stops the run after two of the three answers: they came, so not "nothing
    # fetched".
    stop = threading.Event()
    log: list[bytes | str] = []
    fetch = _fetch(_script(NEW), log)

    def fetch_then_stop(url: str) -> bytes:
        body = fetch(url)
        if len(log) == 2:
            stop.set()
        return body

    sighting = await_body("a.example", URL, NEW, fetch_then_stop, timeout=5, stop=stop)
    assert sighting.served_since is None
    assert sighting.problem == (
        f"a.example: the new policy (id {policy_id(NEW)}) is not served at {URL} before the "
        "run was stopped (served 2 of the 3 times in a row needed); that id is not published"
    )


def test_a_deadline_of_an_earlier_wait_ends_this_one() -> None:
    # Awaited again after a streak, a domain has only what is left of its deadline, which
    # a wait for caches that began late can put past its verify_timeout: the message names
    # the time since its wait began, not verify_timeout (120 s, as it said).
    log: list[bytes | str] = []
    fetch = _fetch(_script(OLD), log)
    deadline = time.monotonic()
    sighting = await_body(
        "a.example", URL, NEW, fetch, timeout=120, deadline=deadline, began=deadline - 200
    )
    assert (sighting.served_since, log) == (None, [OLD])
    assert sighting.problem == (
        f"a.example: the new policy (id {policy_id(NEW)}) is not served at {URL} after "
        f"200 s (it serves id {policy_id(OLD)}); that id is not published"
    )


def test_differs_says_what_is_served_instead() -> None:
    assert differs(URL, NEW, lambda url: NEW) is None
    assert differs(URL, NEW, lambda url: OLD) == f"it serves id {policy_id(OLD)}"
    refused = _fetch(_script("connection refused by 127.0.0.1:443"), [])
    assert differs(URL, NEW, refused) == "connection refused by 127.0.0.1:443"
    assert differs(URL, NEW, refused, failures=False) is None


def test_in_turn_goes_round_a_few_at_a_time() -> None:
    domains = ["a", "b", "c", "d", "e"]
    assert [in_turn(domains, turn, 2) for turn in range(4)] == [
        ["a", "b"],
        ["c", "d"],
        ["e", "a"],
        ["b", "c"],
    ]
    assert sorted(in_turn(domains, 7, 8)) == domains  # never a domain twice in one round
    assert in_turn(["a"], 3, 8) == ["a"]
