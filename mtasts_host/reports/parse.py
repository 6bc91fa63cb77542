"""
Parse the JSON text of an RFC 8460 report into a ``Report``: lenient where real senders
deviate from the RFC (time zones, ``mx-host`` as a string, packed TLSA policies), strict where
counts matter.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from .. import names
from .report import (
    _POLICY_TYPES,
    _RESULT_TYPES,
    MAX_COUNT,
    BadReport,
    FailureDetail,
    PolicyResult,
    PolicyType,
    Report,
    ResultType,
)

_LEAP_SECOND = re.compile(r"^(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:)60(?=\D|$)")
MAX_KEY_BYTES = 1000
"""UTF-8 bytes of ``organization-name`` and ``report-id``: the store indexes them, and
PostgreSQL cannot index a row of more than 2704 bytes (its error would be taken for an
unavailable store, and the report sent again and again). Real ones are a few dozen."""
MAX_HOST = names.MAX_NAME
"""Characters kept of a host's name or address in a failure detail or ``mx-host``: no DNS
name is longer (an address is at most 45)."""
MAX_TEXT = 1000
"""Characters kept of ``contact-info`` and of a ``result-type`` as written: real ones are a
few dozen."""
CUT = "\u2026"
"""Ends a value cut to its limit, so that it cannot pass for one sent so."""
MAX_INTERNATIONAL = 1000
"""Distinct international names (U-labels, or ``xn--`` A-labels to check) of one report made
A-labels, among its ``policy-domain`` values and again among its ``receiving-mx-hostname``
values: the idna package
takes half a millisecond for one, and 80,000 of them, in a report of 240 KB, took 46 s of
the GIL. Real reports name a few; any beyond are kept as written, in lower case."""


def parse_report(data: bytes) -> Report:
    """
    Parse the JSON text of a report (already decompressed).

    Raises:
        BadReport: the text is not JSON, or a required field is missing or a count is not a
            non-negative integer; the message names the field.
    """
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]  # a BOM, which json refuses and a few Windows tools write
    try:
        document = json.loads(data, parse_constant=_no_constant)
    except (ValueError, RecursionError) as exc:
        raise BadReport(f"not JSON: {_one_line(exc)}") from exc
    top = _mapping(document, "the report")
    organization, report_id = _name(top, "organization-name"), _name(top, "report-id")
    dates = _mapping(_required(top, "date-range", ""), "date-range")
    start = _datetime(
        _required(dates, "start-datetime", "date-range."), "date-range.start-datetime"
    )
    end = _datetime(_required(dates, "end-datetime", "date-range."), "date-range.end-datetime")
    if end < start:
        raise BadReport("date-range: end-datetime is before start-datetime")
    policies = _required(top, "policies", "")
    if not isinstance(policies, list):
        raise BadReport(f"policies: expected an array, got {_kind(policies)}")
    # One allowance for the policy domains, one for the hosts: a report of many hosts must
    # not leave its next policy's domain unconverted, and so uncounted.
    domains, hosts = _HostNames(), _HostNames()
    return Report(
        organization_name=organization,
        report_id=report_id,
        start=start,
        end=end,
        policies=tuple(
            _policy(entry, f"policies[{n}]", domains, hosts) for n, entry in enumerate(policies)
        ),
        contact_info=_optional_text(top.get("contact-info"), MAX_TEXT),
    )


def _policy(entry: object, where: str, domains: _HostNames, hosts: _HostNames) -> PolicyResult:
    entry = _mapping(entry, where)
    policy = _mapping(_required(entry, "policy", f"{where}."), f"{where}.policy")
    summary = _mapping(_required(entry, "summary", f"{where}."), f"{where}.summary")
    kind = _text(
        _required(policy, "policy-type", f"{where}.policy."), f"{where}.policy.policy-type"
    )
    domain = _text(
        _required(policy, "policy-domain", f"{where}.policy."), f"{where}.policy.policy-domain"
    )
    details = entry.get("failure-details")
    if details is None:
        details = []
    if not isinstance(details, list):
        raise BadReport(f"{where}.failure-details: expected an array, got {_kind(details)}")
    return PolicyResult(
        policy_type=_POLICY_TYPES.get(kind.strip().lower(), PolicyType.OTHER),
        domain=_domain(domain, f"{where}.policy.policy-domain", domains),
        successful=_count(summary, "total-successful-session-count", f"{where}.summary"),
        failed=_count(summary, "total-failure-session-count", f"{where}.summary"),
        failures=tuple(
            _failure(detail, f"{where}.failure-details[{n}]", hosts)
            for n, detail in enumerate(details)
        ),
        # Some senders pack a TLSA policy into one string; Appendix B gives mx-host as one.
        policy_strings=_strings(policy.get("policy-string")),
        mx_hosts=tuple(_cut(host, MAX_HOST) for host in _strings(policy.get("mx-host"))),
    )


def _failure(detail: object, where: str, hosts: _HostNames) -> FailureDetail:
    detail = _mapping(detail, where)
    reported = _text(_required(detail, "result-type", f"{where}."), f"{where}.result-type")
    return FailureDetail(
        result_type=_RESULT_TYPES.get(reported.strip().lower(), ResultType.OTHER),
        reported_type=_cut(reported, MAX_TEXT),
        sessions=_count(detail, "failed-session-count", where),
        sending_mta_ip=_optional_text(detail.get("sending-mta-ip"), MAX_HOST),
        receiving_mx_hostname=_optional_host(detail.get("receiving-mx-hostname"), hosts),
        receiving_mx_helo=_optional_text(detail.get("receiving-mx-helo"), MAX_HOST),
        receiving_ip=_optional_text(detail.get("receiving-ip"), MAX_HOST),
        # The RFC's example says additional-info-uri where its schema says
        # additional-information; senders use both.
        additional_information=_optional_text(
            detail.get("additional-information", detail.get("additional-info-uri"))
        ),
        failure_reason_code=_optional_text(detail.get("failure-reason-code")),
    )


def _no_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {
        str: "a string",
        int: "an integer",
        float: "a number",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _mapping(value: object, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise BadReport(f"{where}: expected an object, got {_kind(value)}")
    return value


def _required(container: Mapping[str, Any], key: str, prefix: str) -> object:
    if key not in container or container[key] is None:
        raise BadReport(f"{prefix}{key}: missing")
    return container[key]


def _clean(text: str) -> str:
    # Text goes into SQL columns: PostgreSQL refuses NUL, and a lone surrogate from a
    # "\ud800" escape is not UTF-8 at all.
    return text.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")


def _text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise BadReport(f"{where}: expected a string, got {_kind(value)}")
    return _clean(value)


def _name(top: Mapping[str, Any], key: str) -> str:
    text = _text(_required(top, key, ""), key)
    if not text.strip():
        raise BadReport(f"{key}: empty")
    return _not_too_long(text, key)


def _not_too_long(text: str, where: str) -> str:
    if len(text.encode("utf-8")) > MAX_KEY_BYTES:
        raise BadReport(f"{where}: longer than {MAX_KEY_BYTES} bytes")
    return text


def _optional_text(value: object, limit: int | None = None) -> str | None:
    # Lenient: null, "" and values of other types (a number for a reason code) all occur.
    if value is None or value == "" or isinstance(value, dict | list):
        return None
    text = _clean(value if isinstance(value, str) else json.dumps(value))
    return text if limit is None else _cut(text, limit)


# A report names a few hosts in up to some 100,000 failure details.
@functools.lru_cache(maxsize=1024)
def _host_name(name: str) -> str:
    try:
        return names.host_name(name)
    except ValueError:
        return name  # kept as written


class _HostNames:
    """
    The names of one report's hosts as A-labels, as ``names.host_name`` makes them, or as
    written where they are none: at most ``MAX_INTERNATIONAL`` international ones made so.
    """

    def __init__(self) -> None:
        self._international: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name.isascii() and "xn--" not in name:
            return _host_name(name)  # a regular expression's work, no IDNA
        converted = self._international.get(name)
        if converted is None:
            if len(self._international) >= MAX_INTERNATIONAL:
                return name
            converted = self._international[name] = _host_name(name)
        return converted


def _optional_host(value: object, hosts: _HostNames) -> str | None:
    text = _optional_text(value)
    if text is None:
        return None
    name = text.strip().lower().rstrip(".")
    if len(name) <= MAX_HOST:
        # As A-labels, like the policy's mx: "mx.bu\u0308cher.example" (decomposed) and
        # mx.bücher.example were two hosts that looked the same.
        name = hosts(name)
    return _cut(name, MAX_HOST) or None


def _cut(text: str, limit: int) -> str:
    # Cut, not refused: the failure detail's sessions still count, under a value that shows
    # what the sender wrote, while the store never holds, nor reads back, more than this.
    return text if len(text) <= limit else text[: limit - len(CUT)] + CUT


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        return (_clean(value),) if value else ()
    if isinstance(value, list):
        return tuple(_clean(item) for item in value if isinstance(item, str))
    return ()


def _domain(text: str, where: str, hosts: _HostNames) -> str:
    name = text.strip().lower().rstrip(".")
    if len(name) > names.MAX_NAME:
        # Refused, not cut: a report is for one policy domain (RFC 8460 section 5.1 names its
        # file so), and none is longer (RFC 1035 section 2.3.4): nothing in it can count.
        raise BadReport(
            f"{where}: longer than {names.MAX_NAME} characters, the most a DNS name has"
        )
    # One that is no host name is kept as written: it matches no configured domain, so is
    # never counted.
    return hosts(name)


def _count(container: Mapping[str, Any], key: str, where: str) -> int:
    value = _required(container, key, f"{where}.")
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_COUNT:
        shown = json.dumps(value)
        if len(shown) > 40:
            shown = shown[:37] + "..."
        raise BadReport(f"{where}.{key}: expected a non-negative integer, got {shown}")
    return value


def _datetime(value: object, where: str) -> datetime:
    text = _text(value, where).strip().upper()
    try:
        # A leap second (RFC 3339 section 5.7) is taken as the second before it.
        moment = datetime.fromisoformat(_LEAP_SECOND.sub(r"\g<1>59", text, count=1))
    except ValueError:
        raise BadReport(f"{where}: expected an RFC 3339 date-time, got {text[:40]!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)  # Microsoft sends them without a zone, meaning UTC
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 would be in year 0 in UTC
        raise BadReport(
            f"{where}: expected a date-time in the years 1 to 9999 in UTC, got {text[:40]!r}"
        ) from None
