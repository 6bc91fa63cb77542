"""One query to one server: over a path that loses datagrams, as one to a remote primary."""

from __future__ import annotations

import socket

import dns.message
import pytest

from mtasts_host.publish import query
from mtasts_host.publish.query import Server, Unreachable

from ..processes import free_port
from .conftest import Publish, Write
from .servers import RELAY, Dns, relay


def test_a_lost_answer_is_asked_again(server: Dns, monkeypatch: pytest.MonkeyPatch) -> None:
    """One datagram lost of the tens of thousands a run of thousands of domains sends fails
    no run: the query is sent again, as a resolver does."""
    monkeypatch.setattr(query, "TIMEOUT", 5.0)  # on a busy machine
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        path.lose.add("pub.test SOA")
        response = query.ask(Server(RELAY, path.port), "pub.test", "SOA")
    assert (path.lost, response.rcode(), len(response.answer)) == (["pub.test SOA"], 0, 1)


def test_a_slow_answer_counts_while_the_query_is_sent_again(
    server: Dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An answer that comes after the query was sent again, within the timeout, is taken:
    sending again gives a server no less time to answer."""
    monkeypatch.setattr(query, "TIMEOUT", 3.0)
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        path.delay = 1.5  # past the first attempt's second, and the second's
        response = query.ask(Server(RELAY, path.port), "pub.test", "SOA")
    assert (response.rcode(), len(response.answer)) == (0, 1)


def test_a_run_reads_through_a_lost_answer(
    write: Write, publish: Publish, server: Dns, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(query, "TIMEOUT", 5.0)  # on a busy machine
    with relay(RELAY, free_port(RELAY), (server.address, server.port)) as path:
        path.lose.add("_mta-sts.a.pub.test TXT")
        config = write("a.pub.test: {mx: [mx.pub.test]}", f"server: {RELAY}:{path.port}")
        ran = publish(config, "--dry-run")
    assert path.lost == ["_mta-sts.a.pub.test TXT"]
    assert (ran.code, ran.err) == (0, "")
    assert ran.lines[-1] == "would change 1 of 1 records"


def test_a_server_that_never_answers_is_asked_attempts_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each attempt within the one timeout the message names."""
    monkeypatch.setattr(query, "TIMEOUT", 0.6)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.0.1", 0))
        where = Server("127.0.0.1", silent.getsockname()[1])
        with pytest.raises(Unreachable) as raised:
            query.ask(where, "pub.test", "SOA")
        silent.settimeout(0)
        asked = []
        while True:
            try:
                asked.append(dns.message.from_wire(silent.recv(512)).question[0].to_text())
            except BlockingIOError:
                break
    assert str(raised.value) == f"server {where.at()} unreachable: no answer within 0.6 s"
    assert asked == ["pub.test. IN SOA"] * query.ATTEMPTS
