"""
The real servers of the doctor's test world, each on loopback addresses of 127.60.0.0/16:
knot (authoritative DNS), nginx running deploy/nginx (HTTPS), aiosmtpd (SMTP with or without
STARTTLS), and a listener that accepts and never speaks.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import selectors
import socket
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path

import trustme
from aiosmtpd.controller import Controller
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..nginx import nginx as shipped_nginx

ROOT = Path(__file__).parent.parent.parent


def days(count: float) -> datetime.datetime:
    """``count`` days from now (negative: ago), for certificate validity."""
    return datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=count)


def issue(
    ca: trustme.CA,
    path: Path,
    *names: str,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> trustme.LeafCert:
    """A certificate for ``names``, written as ``path``.crt (full chain) and ``path``.key."""
    cert = ca.issue_cert(*names, not_before=not_before, not_after=not_after)
    cert.private_key_pem.write_to_path(f"{path}.key")
    Path(f"{path}.crt").write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    return cert


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


_USAGES = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)


def _certificate(
    name: str,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    host: str | None,
    end: float,
    strict: bool = True,
) -> tuple[x509.Name, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A certificate named ``name`` (CN), signed by ``issuer`` (None: by itself), valid until
    ``end`` days from now: for ``host`` (a DNS name), or a CA's without one; not ``strict``:
    without the extensions that only VERIFY_X509_STRICT requires."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, issuer_key = issuer or (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(days(-400))
        .not_valid_after(days(end))
        .add_extension(x509.BasicConstraints(ca=host is None, path_length=None), critical=True)
    )
    if strict:
        # What VERIFY_X509_STRICT (Python 3.13's default, not senders') requires as well.
        builder = builder.add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False
        ).add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), False
        )
    if host is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(host)]), critical=False
        ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
    elif strict:
        usage = dict.fromkeys(_USAGES, False) | {"key_cert_sign": True, "crl_sign": True}
        builder = builder.add_extension(x509.KeyUsage(**usage), critical=True)
    return subject, key, builder.sign(issuer_key, hashes.SHA256())


def chained(
    tmp: Path,
    host: str,
    intermediate: float,
    leaf: float = 60,
    root_days: float = 1000,
    send_root: bool = False,
    strict: bool = True,
) -> ssl.SSLContext:
    """
    A root ("root", in ``tmp``/ca.pem) valid for ``root_days`` more days, an intermediate
    ("middle") valid for ``intermediate`` more days (negative: expired), and a certificate
    for ``host`` valid for ``leaf`` more days; returns a server context that sends the
    certificate and the intermediate, and the root too if ``send_root``. Not ``strict``: the
    certificates lack what only VERIFY_X509_STRICT requires (key identifiers, key usage).
    """
    root_name, root_key, root = _certificate("root", None, None, root_days, strict)
    middle_name, middle_key, middle = _certificate(
        "middle", (root_name, root_key), None, intermediate, strict
    )
    _, leaf_key, cert = _certificate(host, (middle_name, middle_key), host, leaf, strict)
    pem = serialization.Encoding.PEM
    (tmp / "ca.pem").write_bytes(root.public_bytes(pem))
    sent = [cert, middle, root] if send_root else [cert, middle]
    (tmp / "chain.pem").write_bytes(b"".join(each.public_bytes(pem) for each in sent))
    (tmp / "key.pem").write_bytes(
        leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp / "chain.pem", tmp / "key.pem")
    return context


def zone(origin: str, servers: Sequence[str], records: Sequence[str]) -> str:
    """Zone text: an SOA, NS records for ``servers``, then ``records``."""
    head = [
        f"$ORIGIN {origin}.",
        "$TTL 60",
        f"@ SOA {servers[0]}. hostmaster.{origin}. 1 3600 600 86400 60",
        *(f"@ NS {server}." for server in servers),
    ]
    return "\n".join([*head, *records]) + "\n"


@contextlib.contextmanager
def nginx(
    tmp: Path, certs: Path, upstream: int, address: str, port: int, extra: str
) -> Iterator[None]:
    """nginx running deploy/nginx/mtasts-host.conf as shipped, but for paths and addresses,
    beside the test's own ``extra`` server blocks."""
    with shipped_nginx(tmp, certs, ("127.0.0.1", upstream), address, port, extra):
        yield


@contextlib.contextmanager
def smtp(address: str, port: int, context: ssl.SSLContext | None) -> Iterator[None]:
    """An aiosmtpd server that offers STARTTLS with ``context``, or no STARTTLS."""
    controller = Controller(
        object(),
        hostname=address,
        port=port,
        server_hostname="mx.test",
        tls_context=context,
    )
    controller.start()
    try:
        yield
    finally:
        controller.stop()


@contextlib.contextmanager
def silent(address: str, ports: Sequence[int]) -> Iterator[None]:
    """A listener that accepts every connection on ``ports`` and never says a word."""
    listeners = [socket.create_server((address, port), backlog=512) for port in ports]
    selector = selectors.DefaultSelector()
    for listener in listeners:
        selector.register(listener, selectors.EVENT_READ)
    wake, waker = socket.socketpair()
    selector.register(wake, selectors.EVENT_READ)
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            for key, _ in selector.select():
                if key.fileobj is wake:
                    return
                assert isinstance(key.fileobj, socket.socket)
                accepted.append(key.fileobj.accept()[0])

    thread = threading.Thread(target=accept, name="silent-listener", daemon=True)
    thread.start()
    try:
        yield
    finally:
        waker.send(b"x")
        thread.join(5)
        for sock in (*accepted, *listeners, wake, waker):
            sock.close()
        selector.close()


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
"""A test's own server: what it does with one connection."""


@contextlib.asynccontextmanager
async def serving_on(
    address: str, handler: Handler, context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """``handler`` serving on ``address``, on the event loop of the test; yields the port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await handler(reader, writer)
        except (OSError, EOFError):
            pass  # the probe hung up, as it does when it has seen enough
        finally:
            writer.transport.abort()

    server = await asyncio.start_server(handle, address, 0, ssl=context)
    async with server:
        yield server.sockets[0].getsockname()[1]


def smtp_dialogue(
    *replies: bytes, close: bool = False, heard: asyncio.Future[bytes] | None = None
) -> Handler:
    """A greeting, then the next reply to each line the client sends; ``close``: hang up
    after the last instead of waiting for the client to. ``heard`` gets all the client sent,
    once the dialogue is over."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        got = b""
        try:
            writer.write(replies[0])
            for reply in replies[1:]:
                got += await reader.readline()
                writer.write(reply)
            await writer.drain()
            if close:
                writer.close()
                return
            got += await reader.read()
        finally:
            if heard is not None and not heard.done():
                heard.set_result(got)

    return handler
