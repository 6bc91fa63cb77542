"""
The real servers of the publisher's tests, on loopback addresses of 127.80.0.0/16: knot,
authoritative for the test zones and taking RFC 2136 updates signed with one key (and not
with another), and a policy host whose bodies the test changes while it runs.
"""

from __future__ import annotations

import contextlib
import http.server
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rdataset
import dns.tsig
import dns.update

from mtasts_host.tsigkey import read_key_file

from ..processes import need

DNS1 = "127.80.0.1"
DNS2 = "127.80.0.2"
"""A second name server of the zones, which never gets the updates."""
POLICY_HOST = "127.80.1.1"
RELAY = "127.80.1.4"
"""A lossy path to DNS1."""
ZONES = ("pub.test", "provider.test")


def keymgr(directory: Path, name: str, algorithm: str = "hmac-sha256") -> Path:
    """A new TSIG key, written by knot's keymgr as ``directory/name.key``."""
    path = directory / f"{name}.key"
    argv = [need("keymgr", "knot"), "-t", name, algorithm]
    made = subprocess.run(argv, capture_output=True, check=True)
    path.write_bytes(made.stdout)
    return path


def zone_text(origin: str, records: Sequence[str] = ()) -> str:
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ SOA ns1.pub.test. hostmaster.{origin}. 1 3600 600 86400 60",
        "@ NS ns1.pub.test.",
        "@ NS ns2.pub.test.",
    ]
    if origin == "pub.test":
        head += [f"ns1 A {DNS1}", f"ns2 A {DNS2}"]
    return "\n".join([*head, *records]) + "\n"


@dataclass
class Dns:
    """The test's view of a knot server: read records, change them behind the back."""

    address: str
    port: int
    key_file: Path

    def values(self, name: str, rdtype: str = "TXT") -> list[str]:
        """The data at ``name`` of ``rdtype`` (or a CNAME there), one unquoted string each."""
        query = dns.message.make_query(name, rdtype)
        response = dns.query.tcp(query, self.address, port=self.port, timeout=5)
        owner = dns.name.from_text(name)
        found = []
        for rrset in response.answer:
            if rrset.name == owner:
                for rdata in rrset:
                    strings = getattr(rdata, "strings", None)
                    text = b"".join(strings).decode() if strings else rdata.to_text()
                    found.append(text.rstrip("."))
        return found

    def ttl(self, name: str, rdtype: str = "TXT") -> int:
        query = dns.message.make_query(name, rdtype)
        response = dns.query.tcp(query, self.address, port=self.port, timeout=5)
        return int(response.answer[0].ttl)

    def serial(self, zone: str) -> int:
        query = dns.message.make_query(zone, "SOA")
        response = dns.query.tcp(query, self.address, port=self.port, timeout=5)
        return int(response.answer[0][0].serial)

    def set(self, zone: str, name: str, rdtype: str, *texts: str, ttl: int = 3600) -> None:
        """Replace the RRset (zone-file syntax for each record), or delete it with none."""
        key = read_key_file(self.key_file)
        update = dns.update.UpdateMessage(
            zone + ".", keyring=dns.tsig.Key(key.name, key.secret, key.algorithm)
        )
        owner = dns.name.from_text(name)
        if texts:
            update.replace(owner, dns.rdataset.from_text_list("IN", rdtype, ttl, texts))
        else:
            update.delete(owner, rdtype)
        response = dns.query.tcp(update, self.address, port=self.port, timeout=5)
        assert response.rcode() == 0, response


@dataclass
class PolicyHost:
    """
    Serves ``bodies[host]`` at every path, and records each answer: (time.monotonic(), host,
    body). A stand-in for the policy hosts behind ``verify_url``.
    """

    address: str
    port: int
    bodies: dict[str, bytes] = field(default_factory=dict)
    served: list[tuple[float, str, bytes]] = field(default_factory=list)
    on_serve: Callable[[str, bytes], None] | None = None
    """Called before each answer with the host and the body; an ``OSError`` it raises makes
    the answer a 503."""

    def first_served(self, host: str, body: bytes) -> float:
        """When ``body`` was first served for ``host``."""
        return min(at for at, name, sent in self.served if name == host and sent == body)


@contextlib.contextmanager
def policy_host(address: str, port: int) -> Iterator[PolicyHost]:
    host = PolicyHost(address, port)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            name = (self.headers.get("Host") or "").partition(":")[0]
            body = host.bodies.get(name)
            if body is None:
                self.send_error(404)
                return
            host.served.append((time.monotonic(), name, body))
            if host.on_serve is not None:
                try:
                    host.on_serve(name, body)
                except OSError:  # a replica in trouble
                    self.send_error(503)
                    return
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer((address, port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="policy-host", daemon=True)
    thread.start()
    try:
        yield host
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@dataclass
class Relay:
    """
    A UDP path to a DNS server that loses datagrams: the first query for each question in
    ``lose`` (``name TYPE``) is dropped, as a packet lost on the way to a remote primary.
    Counts the queries passed on and the most it held at once, waiting for an answer.
    """

    address: str
    port: int
    lose: set[str] = field(default_factory=set)
    lost: list[str] = field(default_factory=list)
    asked: list[str] = field(default_factory=list)
    """Every question passed on, as ``name TYPE``."""
    passed: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    authoritative: bool = True
    """False: the AA bit is cleared in every answer, as in a resolver's copy from its cache."""
    delay: float = 0.0
    """Seconds each answer takes on the way back."""
    hold: int = 1
    """Answers are held back until this many queries wait (or 0.2 s has passed, less than
    an attempt of the tests' queries): a reader that asks one at a time is seen to,
    however fast the server."""


@contextlib.contextmanager
def relay(address: str, port: int, to: tuple[str, int]) -> Iterator[Relay]:
    path = Relay(address, port)
    lock = threading.Condition()
    stopping = threading.Event()
    forwarders: list[threading.Thread] = []
    listener = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    listener.bind((address, port))
    listener.settimeout(0.1)

    def forward(data: bytes, client: tuple[str, int]) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as upstream:
            upstream.settimeout(10)
            upstream.sendto(data, to)
            try:
                answer = upstream.recv(65535)
            except OSError:
                answer = None
        if answer is not None and not path.authoritative:
            answer = answer[:2] + bytes([answer[2] & ~0x04]) + answer[3:]  # AA: RFC 1035 4.1.1
        time.sleep(path.delay)
        with lock:
            lock.wait_for(lambda: path.in_flight >= path.hold, timeout=0.2)
            path.in_flight -= 1
            lock.notify_all()
        if answer is not None:
            listener.sendto(answer, client)

    def serve() -> None:
        while not stopping.is_set():
            try:
                data, client = listener.recvfrom(65535)
            except TimeoutError:
                continue
            question = dns.message.from_wire(data).question[0]
            asked = f"{question.name.to_text(omit_final_dot=True)} "
            asked += dns.rdatatype.to_text(question.rdtype)
            with lock:
                if asked in path.lose:
                    path.lose.discard(asked)
                    path.lost.append(asked)
                    continue
                path.passed += 1
                path.asked.append(asked)
                path.in_flight += 1
                path.most_in_flight = max(path.most_in_flight, path.in_flight)
                lock.notify_all()
            forwarding = threading.Thread(target=forward, args=(data, client), daemon=True)
            forwarding.start()
            forwarders.append(forwarding)

    thread = threading.Thread(target=serve, name="relay", daemon=True)
    thread.start()
    try:
        yield path
    finally:
        stopping.set()
        thread.join(5)
        for forwarding in forwarders:
            forwarding.join(10)  # answers late, to a client gone: not to a closed socket
        listener.close()
