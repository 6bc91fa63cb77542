"""The syntax of the TXT records senders read (RFC 8461 section 3.1, RFC 8460 section 3)."""

from __future__ import annotations

import logging
import re

import pytest
from tlsrpt_reporter.mapping import DestinationMap, InvalidDestinationScheme
from tlsrpt_reporter.utility import MalformedTlsrptRecordException, parse_tlsrpt_record

from mtasts_host.dns import STS_VERSION, TLSRPT_VERSION
from mtasts_host.doctor.records import (
    reporter_drops,
    resembling,
    selected,
    sts_id,
    tlsrpt_rua,
)


def test_only_records_that_begin_with_the_version_count() -> None:
    found = ["google-site-verification=x", "v=STSv1; id=1", "V=STSv1; id=2", " v=STSv1; id=3"]
    assert selected(found, STS_VERSION) == ["v=STSv1; id=1"]
    assert selected(["v=TLSRPTv1; rua=mailto:a@b.example"], TLSRPT_VERSION) != []


def test_records_that_only_resemble_the_version_are_told_apart() -> None:
    found = ["v=STSv1; id=1", "V=STSV1; id=2", "\ufeffv=STSv1; id=3", "\t v=STSv1; id=4", "v=STS"]
    assert resembling(found, STS_VERSION) == found[1:4]
    assert resembling(["v=spf1 -all", "v=TLSRPTv1; rua=x"], TLSRPT_VERSION) == []


def test_records_in_quotes_of_their_own_resemble_the_version() -> None:
    # A DNS panel keeps the quotes typed into it as part of the value: senders ignore it.
    quoted = ['"v=STSv1; id=1"', "'v=STSv1; id=2'"]
    assert selected(quoted, STS_VERSION) == []
    assert resembling(quoted, STS_VERSION) == quoted
    tlsrpt = ['"v=TLSRPTv1; rua=mailto:a@b.example"']
    assert resembling(tlsrpt, TLSRPT_VERSION) == tlsrpt


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param("v=STSv1; id=20160831085700Z", "20160831085700Z", id="rfc-example"),
        pytest.param("v=STSv1;id=abc", "abc", id="no-space"),
        pytest.param("v=STSv1 ;\tid=abc ;", "abc", id="whitespace-and-trailing-delimiter"),
        pytest.param("v=STSv1; ext=1; id=abc", "abc", id="extension-first"),
        pytest.param("v=STSv1; id=abc; my.ext_1-a=x:y", "abc", id="extension-after"),
        pytest.param("v=STSv1; id=" + "a" * 32, "a" * 32, id="32-characters"),
        # RFC 8461 section 3.2: of a duplicated field, all entries but the first are ignored.
        pytest.param("v=STSv1; id=a; id=b", "a", id="two-ids-the-first-counts"),
        pytest.param("v=STSv1; id=a; id=b-c", "a", id="two-ids-the-second-an-extension"),
    ],
)
def test_valid_sts_records(record: str, expected: str) -> None:
    assert sts_id(record) == expected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param("v=STSv1", "it has no id field", id="no-id"),
        pytest.param("v=STSv1;", "it has no id field", id="only-delimiter"),
        pytest.param(
            "v=STSv1; id=a; id=b c",
            "the value of 'id' holds a space, '=', ';' or is empty",
            id="two-ids-second-not-a-field-value",
        ),
        pytest.param(
            "v=STSv1; id=a-b", "its id 'a-b' is not 1 to 32 letters and digits", id="dash"
        ),
        pytest.param(
            "v=STSv1; id=" + "a" * 33,
            f"its id {'a' * 33!r} is not 1 to 32 letters and digits",
            id="33-characters",
        ),
        pytest.param("v=STSv1; id=", "its id '' is not 1 to 32 letters and digits", id="empty-id"),
        pytest.param("v=STSv1 id=abc", "it must begin with 'v=STSv1' and a ';'", id="no-delimiter"),
        pytest.param("v=STSv1; id=abc;; x=1", "'' is not a field (name=value)", id="empty-field"),
        pytest.param("v=STSv1; id=abc; x", "'x' is not a field (name=value)", id="no-equals"),
        pytest.param(
            "v=STSv1; id=abc; x=",
            "the value of 'x' holds a space, '=', ';' or is empty",
            id="empty-extension",
        ),
        pytest.param(
            "v=STSv1; id=abc; x=a=b",
            "the value of 'x' holds a space, '=', ';' or is empty",
            id="equals-in-extension",
        ),
    ],
)
def test_invalid_sts_records(record: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        sts_id(record)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param(
            "v=TLSRPTv1;rua=mailto:reports@example.com",
            ("mailto:reports@example.com",),
            id="rfc-example-mailto",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=https://reporting.example.com/v1/tlsrpt",
            ("https://reporting.example.com/v1/tlsrpt",),
            id="rfc-example-https",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=mailto:a@example.com , https://r.example/x%2Cy; ext=1",
            ("mailto:a@example.com", "https://r.example/x%2Cy"),
            id="two-uris-and-an-extension",
        ),
    ],
)
def test_valid_tlsrpt_records(record: str, expected: tuple[str, ...]) -> None:
    assert tlsrpt_rua(record) == expected


@pytest.mark.parametrize(
    ("record", "message"),
    [
        pytest.param("v=TLSRPTv1", "it has no rua field", id="no-rua"),
        pytest.param(
            "v=TLSRPTv1; rua=ftp://example.com",
            "rua 'ftp://example.com' is not a 'mailto:' address or an 'https://' URL",
            id="scheme",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=mailto:reports",
            "rua 'mailto:reports' is not a 'mailto:' address or an 'https://' URL",
            id="no-at",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=https://example.com/!x",
            "rua 'https://example.com/!x' must percent-encode commas, '!', ';' and spaces",
            id="bang",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=mailto:tls@bücher.example",
            "rua 'mailto:tls@bücher.example' is not ASCII: write international domains in A-labels",
            id="idn",
        ),
        pytest.param(
            "v=TLSRPTv1; rua=mailto:a@b.example; rua=mailto:c@d.example",
            "it has 2 rua fields",
            id="two-rua",
        ),
    ],
)
def test_invalid_tlsrpt_records(record: str, message: str) -> None:
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        tlsrpt_rua(record)


def _reporter_sends(record: str) -> bool:
    """Whether tlsrpt-reporter, Postfix's reporter, finds somewhere to send a report."""
    try:
        uris = parse_tlsrpt_record(record)
        return bool(DestinationMap().map_destination("example.com", uris, logging.getLogger()))
    except (MalformedTlsrptRecordException, InvalidDestinationScheme):
        return False


@pytest.mark.parametrize(
    ("record", "why"),
    [
        ("v=TLSRPTv1; rua=mailto:a@example.com,https://r.example.com/v1", None),
        ("v=TLSRPTv1;rua=mailto:a@example.com;", None),
        ("v=TLSRPTv1; rua=mailto:a@example.com; ext=1", None),
        ("v=TLSRPTv1; rua=mailto:a@example.com ,mailto:b@example.com", None),
        ("v=TLSRPTv1; rua=mailto:a@example.com, mailto:b@example.com", "no space after"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,\tmailto:b@example.com", "no space after"),
        ("v=TLSRPTv1; ext=1; rua=mailto:a@example.com", "the rua field first"),
        ("v=TLSRPTv1 ; rua=mailto:a@example.com", "nothing between v=TLSRPTv1 and"),
        ("v=TLSRPTv1; rua=MAILTO:a@example.com", "scheme in lower case"),
        ("v=TLSRPTv1; rua=mailto:a@example.com,HTTPS://r.example.com/v1", "scheme in lower"),
    ],
)
def test_what_postfixs_reporter_drops_of_valid_records(record: str, why: str | None) -> None:
    tlsrpt_rua(record)  # valid by RFC 8460
    drops = reporter_drops(record)
    assert (drops is None) == _reporter_sends(record)  # as the real reporter does
    if why is None:
        assert drops is None
    else:
        assert drops is not None
        assert why in drops
