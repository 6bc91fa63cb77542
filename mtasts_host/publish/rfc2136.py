"""
RFC 2136 dynamic updates signed with TSIG (RFC 8945), sent to the primary server. Each one
carries a prerequisite on the value read before (compare-and-swap), so a record changed by
someone else meanwhile is never overwritten.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import dns.exception
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import dns.tsig
import dns.update

from .. import tsigkey
from ..wire import txt_strings
from . import query
from .backend import Applied, Result
from .plan import Change
from .query import Server

_PREREQUISITE = (dns.rcode.YXDOMAIN, dns.rcode.YXRRSET, dns.rcode.NXDOMAIN, dns.rcode.NXRRSET)
# Values no zone holds, so that deleting them changes nothing (RFC 2136 section 3.4.2.4).
_NOWHERE = {
    "TXT": "mtasts-host: may this key update this name?",
    "CNAME": "mtasts-host-may-this-key-update-this-name.invalid",  # RFC 2606: never resolves
}

_CHECKED_AT_ONCE = 50
"""Changes named in one such update: a DNS message holds 65,535 octets (RFC 1035 section
4.2.2), and a change to a thousand domains of one zone (new defaults) named in one did not
fit, failing every run with "the dns message is too big". 50 changes of the longest names
(255 octets, two types each) take half of it."""


_TSIG_ERRORS: dict[type[dns.tsig.PeerError], str] = {
    # knot answers so to a key it knows but whose ACL does not grant the records, and both
    # knot and BIND to a key of another algorithm (RFC 8945 section 5.2.1).
    dns.tsig.PeerBadKey: "it does not know the key by this name and algorithm, or its ACL "
    "does not grant these records",
    dns.tsig.PeerBadSignature: "the signature does not verify (BADSIG): the key's secret is "
    "not the server's",
    # RFC 8945 section 5.2.3: signed more than the fudge (dnspython's 300 s) from its time;
    # a clock off, here or there.
    dns.tsig.PeerBadTime: "its clock and this machine's differ by more than 300 s (BADTIME)",
}
"""What each TSIG error a server answers means, in place of dnspython's words for it."""

_WIRE_NAMES = {"hmac-md5": dns.tsig.HMAC_MD5}
"""Algorithms whose name in a key file is not their name in a TSIG record (RFC 8945 section
6): dnspython knows HMAC-MD5 only as HMAC-MD5.SIG-ALG.REG.INT."""


class Rfc2136:
    """
    Updates to ``server``, signed with the key in ``key_file``, which is read again for
    every message: a rotated key is used at once, and the secret is kept no longer than
    needed.
    """

    atomic = True
    keeps_ttl = True

    def __init__(self, server: Server, key_file: str) -> None:
        self.server = server
        self.key_file = key_file

    def check(self, pending: Mapping[str, Sequence[Change]]) -> str | None:
        """
        Send each zone an update that changes nothing but names every record its changes
        will write: it deletes, at each name and type, a record no zone holds. The server
        authorises it as it will the real ones, per zone (knot's ACLs, BIND's
        ``allow-update``) or per name and type (BIND's ``update-policy``, knot's
        ``update-owner``): a refused key shows at once.
        """
        for zone, changes in pending.items():
            origin = dns.name.from_text(zone)
            for start in range(0, max(1, len(changes)), _CHECKED_AT_ONCE):
                try:
                    update = dns.update.UpdateMessage(origin, keyring=self._key())
                except (ValueError, dns.exception.DNSException) as exc:
                    return f"TSIG key file {self.key_file}: {exc}"
                update.present(origin, "SOA")
                for change in changes[start : start + _CHECKED_AT_ONCE]:
                    name = dns.name.from_text(change.record.name)
                    for type in _types_written(change):
                        update.delete(name, rdata(type, _NOWHERE[type]))
                applied = self._send(update, zone)
                if applied.result is not Result.DONE:
                    return applied.message
        return None

    def apply(self, change: Change, zone: str) -> Applied:
        try:
            update = dns.update.UpdateMessage(dns.name.from_text(zone), keyring=self._key())
        except (ValueError, dns.exception.DNSException) as exc:
            return Applied(Result.FAILED, f"TSIG key file {self.key_file}: {exc}")
        record, current = change.record, change.current
        name = dns.name.from_text(record.name)
        if current is None:
            if record.type == "CNAME":
                update.absent(name)  # a CNAME may not sit beside any other record
            else:
                update.absent(name, record.type)
                update.absent(name, "CNAME")
        else:
            update.present(name, dns.rdataset.from_text_list("IN", current.type, 0, current.texts))
            if current.type != record.type:
                update.delete(name, current.type)
        # TXT records of other kinds at the name are kept, exactly as read (the prerequisite
        # says they are still there), under the record's TTL: one RRset has one TTL.
        others = current.others(record) if current is not None else ()
        kept = [dns.rdata.from_text("IN", "TXT", text) for text in others]
        update.replace(name, record.ttl, rdata(record.type, record.value), *kept)
        return self._send(update, zone)

    def _key(self) -> dns.tsig.Key:
        key = tsigkey.read_key_file(self.key_file)
        algorithm = _WIRE_NAMES.get(key.algorithm, key.algorithm)
        return dns.tsig.Key(key.name, key.secret, algorithm)

    def _send(self, update: dns.update.UpdateMessage, zone: str) -> Applied:
        server = self.server
        refused = f"TSIG key refused by {server} for zone {zone}"
        try:
            response = dns.query.tcp(
                update, server.address, port=server.port, timeout=query.TIMEOUT
            )
        except dns.tsig.PeerError as exc:
            why = _TSIG_ERRORS.get(type(exc), str(exc).lower())
            return Applied(Result.REFUSED, f"{refused}: {why}")
        except dns.exception.FormError as exc:
            if "TSIG" in str(exc):
                return Applied(Result.REFUSED, f"{refused}: its answer is not signed")
            return Applied(Result.FAILED, f"server {server} sent a broken answer: {exc}")
        except dns.exception.Timeout:
            why = f"no answer within {query.TIMEOUT:g} s"
            return Applied(Result.FAILED, f"server {server} unreachable: {why}")
        except (OSError, dns.exception.DNSException) as exc:
            why = query.reason(exc).lower()
            return Applied(Result.FAILED, f"server {server} unreachable: {why}")
        rcode = response.rcode()
        text = dns.rcode.to_text(rcode)
        if rcode == dns.rcode.NOERROR:
            return Applied(Result.DONE)
        if rcode in _PREREQUISITE:
            return Applied(Result.PREREQUISITE, f"the server answers {text}")
        if rcode in (dns.rcode.NOTAUTH, dns.rcode.REFUSED):
            return Applied(Result.REFUSED, f"{refused} ({text}): it may not update the zone")
        return Applied(Result.FAILED, f"server {server} answers {text} to the update")


def _types_written(change: Change) -> list[str]:
    """The types at the change's name that ``apply`` writes: its own, and one it replaces."""
    current = change.current
    if current is None or current.type == change.record.type:
        return [change.record.type]
    return [change.record.type, current.type]


def rdata(type: str, value: str) -> dns.rdata.Rdata:
    """One record's data: a TXT value split in strings of 255 octets, or a CNAME target."""
    if type == "TXT":
        strings = [string.encode("ascii") for string in txt_strings(value)]
        return dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, strings)
    return dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(type), value + ".")
