"""TLS as sending MTAs check it, for every capability that connects like one."""

from __future__ import annotations

import ssl

from ._files import check_file


def sender_context(ca_file: str | None = None) -> ssl.SSLContext:
    """
    What senders check: the system's trust store (and ``ca_file``), TLS 1.2 or newer
    (RFC 8461 section 7.2), the host name against the certificate's DNS names only
    (section 3.3: the common name does not count), and the chain up to a root as OpenSSL's
    default verification (Postfix's, Exim's) checks it, on every Python.

    Raises:
        OSError, ssl.SSLError: ``ca_file`` cannot be read or holds no certificate.
        NotAFile: ``ca_file`` names a directory, a FIFO (which OpenSSL would wait on for a
            writer, forever), or a device.
    """
    context = ssl.create_default_context()
    # Python 3.13 adds these two: STRICT fails certificates that senders accept (without an
    # Authority Key Identifier, say), PARTIAL_CHAIN trusts a chain that ends in no root.
    context.verify_flags &= ~(ssl.VERIFY_X509_STRICT | ssl.VERIFY_X509_PARTIAL_CHAIN)
    if ca_file is not None:
        check_file(ca_file)
        context.load_verify_locations(cafile=ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.hostname_checks_common_name = False
    return context
