"""Loading and validating the YAML file: every value against RFC 8461, plus hostile files."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from mtasts_host import ConfigError, Mode, Policy, load_config
from mtasts_host.blocks import PublishSettings, ReportsSettings
from mtasts_host.blocks.publish import MAX_COMMAND
from mtasts_host.config import DomainConfig, parse_config

from .conftest import CONFIG_D, WriteConfig

HUGE = "9" * 5000
"""More digits than Python converts to an integer (4,300)."""


def parse(text: str) -> dict[str, DomainConfig]:
    return dict(parse_config(textwrap.dedent(text).encode(), "config.yaml").domains)


def errors(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(textwrap.dedent(text).encode(), "config.yaml")
    return str(info.value).splitlines()


def warnings(text: str) -> list[str]:
    return [str(w) for w in parse_config(textwrap.dedent(text).encode(), "config.yaml").warnings]


def one_domain(fields: str) -> str:
    return f"domains:\n  example.com: {{{fields}}}\n"


def test_the_issue_example() -> None:
    domains = parse(
        """\
        defaults:
          mode: testing
          max_age: 604800
          mx: [mail.example.net]
        domains:
          example.com:
            mode: enforce
            mx:
              - mail.example.com
              - "*.mx.example.net"
            max_age: 1209600
          example.org: {}
          example.net:
            mode: none
        """
    )
    assert domains == {
        "example.com": DomainConfig(
            Policy(Mode.ENFORCE, ("mail.example.com", "*.mx.example.net"), 1209600)
        ),
        "example.org": DomainConfig(Policy(Mode.TESTING, ("mail.example.net",), 604800)),
        "example.net": DomainConfig(Policy(Mode.NONE, ("mail.example.net",), 604800)),
    }


def test_the_example_file_is_valid() -> None:
    config = load_config(Path(__file__).parent.parent / "config.example.yaml")
    assert set(config.domains) == {"example.com", "example.org", "example.net"}
    assert config.warnings == ()


def test_max_age_defaults_to_one_week() -> None:
    assert parse(one_domain("mode: testing, mx: a.example"))["example.com"].policy.max_age == 604800


def test_null_domain_takes_defaults() -> None:
    domains = parse("defaults: {mode: none}\ndomains:\n  example.com:\n")
    assert domains["example.com"].policy == Policy(Mode.NONE, ())


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        # the values are case-sensitive, and there are three (RFC 8461 section 3.2, %s)
        (
            "mode: Enforce, mx: a.example",
            "mode: expected one of enforce, testing, none, got 'Enforce'",
        ),
        (
            "mode: report, mx: a.example",
            "mode: expected one of enforce, testing, none, got 'report'",
        ),
        (
            "mode: [enforce], mx: a.example",
            "mode: expected one of enforce, testing, none, got a list",
        ),
        # enforce and testing need an mx (RFC 8461 section 3.2)
        ("mode: enforce, mx: []", "mx: mode enforce needs at least one mx pattern"),
        ("mode: testing", "mx: mode testing needs at least one mx pattern"),
        # 0..31557600, plain decimal (RFC 8461 section 3.2); a YAML bool is no integer
        ("mode: none, max_age: -1", "max_age: expected an integer 0..31557600, got '-1'"),
        (
            "mode: none, max_age: 31557601",
            "max_age: expected an integer 0..31557600, got '31557601'",
        ),
        ("mode: none, max_age: 1.5", "max_age: expected an integer 0..31557600, got '1.5'"),
        ("mode: none, max_age: abc", "max_age: expected an integer 0..31557600, got 'abc'"),
        ("mode: none, max_age: yes", "max_age: expected an integer 0..31557600, got 'yes'"),
        ("mode: none, max_age: true", "max_age: expected an integer 0..31557600, got 'true'"),
        ("mode: none, max_age: 1d", "max_age: expected an integer 0..31557600, got '1d'"),
        (  # "got '86400'" read as a number
            "mode: none, max_age: '86400'",
            "max_age: expected an integer 0..31557600, got the string '86400' (remove the quotes)",
        ),
        (
            'mode: none, dns_ttl: "60"',
            "dns_ttl: expected an integer 0..2147483647, got the string '60' (remove the quotes)",
        ),
        ("mode: none, max_age: '1d'", "max_age: expected an integer 0..31557600, got '1d'"),
        ("mode: none, max_age: 0x10", "max_age: expected an integer 0..31557600, got '0x10'"),
        ("mode: none, max_age: 010", "max_age: expected an integer 0..31557600, got '010'"),
        ("mode: none, max_age: 1_000", "max_age: expected an integer 0..31557600, got '1_000'"),
        # more digits than Python converts (4,300): refused before conversion
        (
            f"mode: none, max_age: {HUGE}",
            f"max_age: expected an integer 0..31557600, got '{HUGE}'",
        ),
        ("mode: none, max_age: ", "max_age: expected an integer 0..31557600, got nothing"),
        # STSv1 is the only version (RFC 8461 section 3.2)
        (
            "mode: none, version: STSv2",
            "version: expected 'STSv1' (the only version RFC 8461 defines), got 'STSv2'",
        ),
        (  # case-sensitive, as every value (RFC 8461 section 3.2, %s)
            "mode: none, version: stsv1",
            "version: expected 'STSv1' (the only version RFC 8461 defines), got 'stsv1'",
        ),
        (
            "mode: none, version: 'STSv1 '",
            "version: expected 'STSv1' (the only version RFC 8461 defines), got 'STSv1 '",
        ),
        # optional keys
        (
            "mode: none, cname: 'a b'",
            "cname: expected a fully qualified host name like 'mail.example.com', got 'a b'",
        ),
        ("mode: none, cname: mta-sts.example.com", "cname: the CNAME would point to itself"),
        ("mode: none, dns_ttl: -5", "dns_ttl: expected an integer 0..2147483647, got '-5'"),
        (
            "mode: none, txt_cname: _mta-sts.example.com",
            "txt_cname: the CNAME would point to itself",
        ),
        (
            "mode: none, txt_cname: 'a b.example'",
            "txt_cname: label 'a b' is not a DNS label "
            "(letters, digits, '-' and '_'), got 'a b.example'",
        ),
        (
            "mode: none, tlsrpt_rua: [ftp://x]",
            "tlsrpt_rua[0]: expected a 'mailto:' address or an 'https://' URL, got 'ftp://x'",
        ),
        (
            "mode: none, tlsrpt_rua: ['mailto:a@x.example,b@x.example']",
            "tlsrpt_rua[0]: commas, '!', "
            "';', quotes and spaces must be percent-encoded, got 'mailto:a@x.example,b@x.example'",
        ),
        (  # the domain of an IDN: not normalised as mx is, and no comma to blame
            "mode: none, tlsrpt_rua: ['mailto:tls@bücher.example']",
            "tlsrpt_rua[0]: expected ASCII: international domains in A-labels ('xn--...'), "
            "other characters percent-encoded, got 'mailto:tls@bücher.example'",
        ),
        (
            "mode: none, tlsrpt_rua: mailto:nobody",
            "tlsrpt_rua[0]: expected a 'mailto:' address or an 'https://' URL, got 'mailto:nobody'",
        ),
    ],
)
def test_invalid_field(fields: str, message: str) -> None:
    assert errors(one_domain(fields)) == [f"config.yaml:2: domains.example.com.{message}"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        (".example.net", "the leading-dot form is not RFC 8461; use '*.example.net'"),
        ("'*'", "a wildcard must be the whole leftmost label, as in '*.example.net'"),
        ("'*.'", "expected a fully qualified host name like 'mail.example.com'"),
        ("'*.*.example.net'", "a wildcard must be the whole leftmost label, as in '*.example.net'"),
        (
            "'mail*.example.com'",
            "a wildcard must be the whole leftmost label, as in '*.example.net'",
        ),
        ("'*example.com'", "a wildcard must be the whole leftmost label, as in '*.example.net'"),
        (
            "mail_1.example.com",
            "label 'mail_1' is not a host name label (letters, digits and "
            "inner hyphens, at most 63)",
        ),
        (
            "-mail.example.com",
            "label '-mail' is not a host name label (letters, digits and "
            "inner hyphens, at most 63)",
        ),
        (
            "mail-.example.com",
            "label 'mail-' is not a host name label (letters, digits and "
            "inner hyphens, at most 63)",
        ),
        ("mail..example.com", "expected a fully qualified host name like 'mail.example.com'"),
        (
            "a" * 64 + ".example.com",
            f"label '{'a' * 64}' is not a host name label (letters, "
            "digits and inner hyphens, at most 63)",
        ),
        (".".join(["a" * 63] * 4), "name is 255 characters long, at most 253 allowed"),
        ("192.0.2.1", "expected a host name, not an IP address"),
        ("'::ffff:192.0.2.1'", "expected a host name, not an IP address"),
        ("'mail.example.com:25'", "expected a host name alone, without a port or a URL scheme"),
        (
            "'https://mail.example.com'",
            "expected a host name alone, without a port or a URL scheme",
        ),
        ("'2001:db8::1'", "expected a fully qualified host name like 'mail.example.com'"),
        ("''", "expected a fully qualified host name like 'mail.example.com'"),
        ("localhost", "expected a fully qualified host name like 'mail.example.com'"),
        ("xn--zz.example.com", "label 'xn--zz' is not a valid A-label"),
        ("XN--ZZ.example.com", "label 'xn--zz' is not a valid A-label"),
        ("[a.example]", None),
    ],
)
def test_invalid_mx_pattern(pattern: str, message: str | None) -> None:
    # each pattern that is not ["*."] Domain (RFC 8461 section 3.2) is named
    shown = {"[a.example]": "a list"}.get(pattern)
    got = shown or repr(pattern.strip("'"))
    expected = message or "expected an mx pattern"
    line = f"config.yaml:4: domains.example.com.mx[0]: {expected}, got {got}"
    assert errors(f"domains:\n  example.com:\n    mode: enforce\n    mx:\n    - {pattern}\n") == [
        line.replace(":4:", ":5:")
    ]


@pytest.mark.parametrize(
    ("pattern", "normalised"),
    [
        ("mäil.example.com", "xn--mil-qla.example.com"),  # A-labels only (RFC 8461 section 3.2)
        ("MAIL.Example.com.", "mail.example.com"),  # no trailing dot (RFC 5321 4.1.2)
        ("'*.MX.example.NET'", "*.mx.example.net"),
        ("xn--mil-qla.example.com", "xn--mil-qla.example.com"),
    ],
)
def test_mx_normalised(pattern: str, normalised: str) -> None:
    domains = parse(one_domain(f"mode: enforce, mx: [{pattern}]"))
    assert domains["example.com"].policy.mx == (normalised,)
    assert domains["example.com"].policy.render().isascii()


def test_duplicate_mx_removed_with_warning() -> None:
    # one mx line per pattern
    text = one_domain("mode: enforce, mx: [a.example.com, A.example.com., b.example.com]")
    assert parse(text)["example.com"].policy.mx == ("a.example.com", "b.example.com")
    assert warnings(text) == [
        "config.yaml:2: warning: domains.example.com.mx[1]: duplicate of 'a.example.com', removed"
    ]


def test_none_without_mx_warns_about_stalwart() -> None:
    # Stalwart refuses a policy without mx, even in mode none
    assert warnings(one_domain("mode: none")) == [
        "config.yaml:2: warning: domains.example.com: mode none without mx: Stalwart rejects "
        "such a policy; keep the old mx patterns while withdrawing it"
    ]


def test_short_max_age_in_enforce_warns() -> None:
    # RFC 8461 section 3.2 expects max_age "in the range of weeks or greater"
    assert warnings(one_domain("mode: enforce, mx: a.example, max_age: 3600")) == [
        "config.yaml:2: warning: domains.example.com.max_age: 3600 is under a week; RFC 8461 "
        "expects weeks or greater in enforce"
    ]
    assert warnings(one_domain("mode: none, mx: a.example, max_age: 86400")) == []


@pytest.mark.parametrize("mode", ["testing", "none"])
def test_max_age_under_an_hour_warns_about_stalwart(mode: str) -> None:
    assert warnings(one_domain(f"mode: {mode}, mx: a.example, max_age: 600")) == [
        "config.yaml:2: warning: domains.example.com.max_age: 600 is under an hour; Stalwart "
        "caches such a policy for a day instead"
    ]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        # keys are policy domains, exact names (RFC 8461 section 3.4: no wildcards)
        (
            "mta-sts.example.com",
            "expected the policy domain, not its policy host; use "
            "'example.com', got 'mta-sts.example.com'",
        ),
        ("'*.example.com'", "expected a plain domain name like 'example.com', got '*.example.com'"),
        (
            "http://example.com",
            "expected a plain domain name like 'example.com', got 'http://example.com'",
        ),
        ("192.0.2.1", "expected a host name, not an IP address, got '192.0.2.1'"),
        ("example", "expected a fully qualified host name like 'mail.example.com', got 'example'"),
    ],
)
def test_invalid_domain_key(key: str, message: str) -> None:
    shown = key.strip("'")
    assert errors(f"domains:\n  {key}: {{mode: none}}\n") == [
        f"config.yaml:2: domains.{shown}: {message}"
    ]


def test_domain_keys_normalised() -> None:
    # DNS names are case-insensitive (RFC 4343); U-labels become A-labels
    domains = parse("domains:\n  Example.COM: {mode: none}\n  bücher.example.: {mode: none}\n")
    assert list(domains) == ["example.com", "xn--bcher-kva.example"]


def test_same_domain_twice_after_normalisation() -> None:
    # two keys for one domain would serve two policies
    assert errors("domains:\n  example.com: {mode: none}\n  EXAMPLE.com.: {mode: none}\n") == [
        "config.yaml:3: domains.EXAMPLE.com.: same domain as 'example.com' on line 2"
    ]


def test_duplicate_yaml_key() -> None:
    assert errors(one_domain("mode: none, mode: enforce")) == [
        "config.yaml:2: domains.example.com.mode: duplicate key (first on line 2)"
    ]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        # typos are errors, with the nearest valid key
        ("maxage", "; did you mean 'max_age'?"),
        ("mx_hosts", "; did you mean 'mx'?"),
        ("modes", "; did you mean 'mode'?"),
        ("max-age", "; did you mean 'max_age'?"),
        ("foo", ""),
    ],
)
def test_unknown_domain_key(key: str, hint: str) -> None:
    assert errors(one_domain(f"mode: none, {key}: 1")) == [
        f"config.yaml:2: domains.example.com.{key}: unknown key {key!r}{hint} (expected one "
        "of: version, mode, mx, max_age, cname, txt_cname, tlsrpt_rua, dns_ttl)"
    ]


def test_an_empty_key_gets_no_hint() -> None:
    # Every key starts with "": the first in the list was suggested.
    assert errors(one_domain("mode: none, '': 1")) == [
        "config.yaml:2: domains.example.com.: unknown key '' (expected one of: version, mode, "
        "mx, max_age, cname, txt_cname, tlsrpt_rua, dns_ttl)"
    ]


def test_unknown_top_level_key() -> None:
    assert errors("domain:\n  example.com: {mode: none}\n") == [
        "config.yaml:1: domain: unknown key 'domain'; did you mean 'domains'? (expected one of: "
        "defaults, domains, reports, publish)",
        "config.yaml:1: domains: missing; expected a mapping of domain names",
    ]


def test_mode_is_never_guessed() -> None:
    assert errors("defaults: {mx: a.example}\ndomains:\n  example.com: {}\n") == [
        "config.yaml:3: domains.example.com.mode: missing; expected one of enforce, testing, "
        "none (set it here or in 'defaults')"
    ]


def test_errors_in_defaults_are_reported_once() -> None:
    text = "defaults: {mode: enforced}\ndomains:\n  a.example: {}\n  b.example: {}\n"
    assert errors(text) == [
        "config.yaml:1: defaults.mode: expected one of enforce, testing, none, got 'enforced'"
    ]


def test_every_error_is_reported() -> None:
    text = """\
    domains:
      a.example: {mode: enforced}
      b.example: {mode: enforce, mx: [mail_1.example]}
      c.example: {mode: none, max_age: 1y}
    """
    assert len(errors(text)) == 3


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "config.yaml:1: the file is empty; expected a mapping with a 'domains' key"),
        (
            "# nothing\n",
            "config.yaml:1: the file is empty; expected a mapping with a 'domains' key",
        ),
        ("- a\n", "config.yaml:1: expected a mapping with a 'domains' key, got a list"),
        ("domains: {}\n", "config.yaml:1: domains: expected at least one domain, got none"),
        ("domains: [a]\n", "config.yaml:1: domains: expected a mapping, got a list"),
        (
            "domains:\n  a.example: enforce\n",
            "config.yaml:2: domains.a.example: expected a mapping, got 'enforce'",
        ),
        ("domains:\n  ? [a]\n  : 1\n", "config.yaml:2: mapping keys must be plain names"),
        (
            "domains: {a.example: {mode: none}}\n---\nb: 2\n",
            "config.yaml:2: expected a single YAML document",
        ),
        (  # located at the brace left open, not at the end of the file
            "domains: {a.example: {mode: none}\n",
            "config.yaml:1:10: while parsing a flow mapping did not find expected ',' or '}'",
        ),
        (
            "domains:\n\ta: 1\n",
            "config.yaml:2:1: while scanning for the next token found character '\\t' that "
            "cannot start any token; indent with spaces, not tabs",
        ),
        (
            "domains:\n  a.example: {mode: @none}\n",
            "config.yaml:2:21: while scanning for the next token found character '@' that "
            "cannot start any token",
        ),
        (
            "domains: !!python/object:os.system 1\n",
            "config.yaml:1: YAML tags like "
            "'tag:yaml.org,2002:python/object:os.system' are not supported",
        ),
        (  # a tag on the mapping that is read entry by entry
            "domains: !!map {a.example: {mode: none}}\n",
            "config.yaml:1: YAML tags like 'tag:yaml.org,2002:map' are not supported",
        ),
        (  # and on a node read whole
            "domains:\n  a.example: {mode: enforce, mx: !!seq [mx.example]}\n",
            "config.yaml:2: YAML tags like 'tag:yaml.org,2002:seq' are not supported",
        ),
        (
            "domains:\n  a.example: &x {mode: none}\n  b.example: *x\n",
            "config.yaml:3: YAML aliases are not supported; use 'defaults' to share values",
        ),
    ],
)
def test_file_level_errors(text: str, message: str) -> None:
    assert errors(text) == [message]


def test_binary_garbage(write_config: WriteConfig) -> None:
    path = write_config("domains:\n")
    path.write_bytes(b"domains:\n  a.example: {mode: none}\n\xff\xfe\x00\x01garbage")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}:3: not UTF-8 text (byte 0xff)"


@pytest.mark.parametrize(
    "encoding", ["utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-32-le", "utf-32-be"]
)
def test_utf_16_or_32_is_named(encoding: str) -> None:
    # It was "not UTF-8 text (byte 0xff)", and without a byte order mark "unacceptable
    # character #x0000: control characters are not allowed".
    with pytest.raises(ConfigError) as info:
        parse_config(one_domain("mode: none").encode(encoding), "config.yaml")
    assert str(info.value) == (
        f"config.yaml:1: UTF-{encoding[4:6]} text; expected UTF-8 (save the file as UTF-8)"
    )


def test_control_characters(write_config: WriteConfig) -> None:
    path = write_config("domains:\n")
    path.write_bytes(b"domains:\n  a.example: {mode: none}\x00\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == (
        f"{path}:2: unacceptable character #x0000: control characters are not allowed"
    )


def test_a_control_character_after_non_ascii_text_is_on_its_line(
    write_config: WriteConfig,
) -> None:
    path = write_config("domains:\n")
    path.write_bytes("# é è ü ø å ß\ndomains: \x01\n".encode() + b"\n" * 10)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value).startswith(f"{path}:2: unacceptable character #x0001")


def test_a_line_break_in_a_key_stays_escaped_on_the_error_line() -> None:
    # A key naming another file and line must not read as a second error.
    text = one_domain("mode: none") + '  "x.com\\n/tmp/fake.yaml:1: injected": {mode: none}\n'
    assert errors(text) == [
        "config.yaml:3: domains.x.com\\n/tmp/fake.yaml:1: injected: expected a plain domain "
        "name like 'example.com', got 'x.com\\n/tmp/fake.yaml:1: injected'"
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # the next line was read as the rest of the key: not "domains: expected a mapping"
            "domains:\n  example.com\n    mode: enforce\n",
            "config.yaml:3:9: mapping values are not allowed in this context",
        ),
        (  # ...nor "domains.a.example: expected a mapping, got 'mode:enforce mx'"
            "domains:\n  a.example:\n    mode:enforce\n    mx: [a.example]\n",
            "config.yaml:4:7: mapping values are not allowed in this context",
        ),
    ],
    ids=["key-without-colon", "value-without-space"],
)
def test_a_syntax_error_is_reported_alone(text: str, message: str) -> None:
    # What was read before it may be its artefact; a reload logs the first error only.
    assert errors(text) == [message]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (  # libyaml marks the line after the key
            "domains:\n  a.example: {mode: none}\n  b.example\n  c.example: {mode: none}\n",
            "config.yaml:3:3: while scanning a simple key could not find expected ':'",
        ),
        (  # libyaml marks the end of the file
            'domains:\n  a.example: {mode: "none}\n  b.example: {mode: none}\n',
            "config.yaml:2:21: while scanning a quoted scalar found unexpected end of stream",
        ),
        (
            "domains:\n  a.example: {mode: none, mx: [a.example\n\n# end\n",
            "config.yaml:2:31: while parsing a flow sequence did not find expected ',' or ']'",
        ),
        (  # after a byte order mark, which libyaml leaves out of its count
            '\ufeffdomains:\n  a.example: {mode: "none}',
            "config.yaml:2:21: while scanning a quoted scalar found unexpected end of stream",
        ),
        (  # a line of blanks is not the end of the file
            "domains:\n  a.example:\n    mode: none\n    mx: a.example\n\t\n",
            "config.yaml:5:1: while scanning a plain scalar found a tab character that violates "
            "indentation",
        ),
    ],
    ids=["key-without-colon", "quote-left-open", "bracket-left-open", "bom", "blanks-after"],
)
def test_a_syntax_error_is_located_where_it_starts(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text.encode(), "config.yaml")  # not dedented: that drops a line of blanks
    assert str(info.value) == message


def test_alias_bomb_is_refused_at_once(write_config: WriteConfig) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join(["*" + chr(97 + i)] * 9) + "]"
        for i in range(8)
    ]
    with pytest.raises(ConfigError, match="aliases are not supported"):
        load_config(write_config("\n".join(lines) + "\n"))


@pytest.mark.parametrize(
    ("depth", "message"),
    [
        (100, "config.yaml:1: nested deeper than 64 levels"),
        (100_000, "config.yaml:1:1009: while increasing flow level exceeded maximum nesting depth"),
    ],
)
def test_deep_nesting_is_refused(depth: int, message: str) -> None:
    assert errors("domains: " + "[" * depth + "]" * depth + "\n") == [message]


@pytest.mark.parametrize(
    ("text", "messages"),
    [
        (
            one_domain("mode: none, mx: [" + "a," * 100_001 + "]"),
            ["config.yaml:2: more than 100000 items in one value"],
        ),
        (
            one_domain("mode: none") + "x:\n" + "  - []\n" * 100_001,
            [
                "config.yaml:3: x: unknown key 'x' (expected one of: defaults, domains, reports, "
                "publish)",
                "config.yaml:4: more than 100000 items in one value",
            ],
        ),
    ],
    ids=["flow", "block"],
)
def test_millions_of_items_are_refused_at_once(text: str, messages: list[str]) -> None:
    # 32 MiB of "a," would be 16 million nodes: gigabytes and a minute, at every reload.
    assert errors(text) == messages


@pytest.mark.parametrize(
    ("key", "name"),
    [
        ("mx", "a." * 100_000 + "com!"),
        ("cname", "a." * 100_000 + "com!"),
        ("txt_cname", "ü." * 100_000 + "com"),
    ],
    ids=["mx", "cname", "txt_cname"],
)
def test_a_name_far_too_long_is_refused_by_its_length(key: str, name: str) -> None:
    # It was read label by label: 20 MB took 2 GB and 10 s through a regular expression, or
    # 50 s through IDNA, at every reload.
    found = errors(one_domain(f"mode: none, {key}: '{name}'"))
    index = "[0]" if key == "mx" else ""
    assert [line.partition(", got ")[0] for line in found] == [
        f"config.yaml:2: domains.example.com.{key}{index}: name is {len(name)} characters long, "
        "at most 253 allowed"
    ]


@pytest.mark.parametrize(
    "keys",
    [
        2000,
        1000,  # and then the alias: one error too many, found outside the reader
    ],
)
def test_errors_stop_at_a_thousand(keys: int) -> None:
    # Each bad item is one error: 32 MiB of them would take minutes and gigabytes to list.
    text = one_domain("mode: none") + "".join(f"k{i}: 1\n" for i in range(keys - 1))
    text += f"k{keys - 1}: *a\n"
    found = errors(text)
    assert len(found) == 1001
    assert found[-2] == (
        "config.yaml:1002: k999: unknown key 'k999' (expected one of: defaults, domains, "
        "reports, publish)"
    )
    assert found[-1] == "config.yaml: more than 1000 errors; stopped looking for more"


def test_warnings_stop_at_a_thousand() -> None:
    found = warnings(one_domain("mode: none, mx: [" + "a.example," * 2000 + "]"))
    assert len(found) == 1001
    assert found[-2] == (
        "config.yaml:2: warning: domains.example.com.mx[1000]: duplicate of 'a.example', removed"
    )
    assert found[-1] == "config.yaml:2: warning: more than 1000 warnings; the rest are not shown"


def test_a_huge_value_is_cut_short_in_its_error() -> None:
    # The line is logged, and shown by /readyz, at every failed reload: not megabytes of it.
    message = "expected one of enforce, testing, none, got '" + "a" * 100_000 + "'"
    assert errors(one_domain("mode: " + "a" * 100_000)) == [
        f"config.yaml:2: domains.example.com.mode: {message[:10_000]}... (90046 more characters)"
    ]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such file"


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: a directory; expected a YAML file"


def test_fifo_does_not_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "fifo")
    assert str(info.value) == f"{tmp_path / 'fifo'}: not a regular file; expected a YAML file"


def test_huge_file_refused_before_parsing(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as file:
        file.truncate(33 * 2**20)  # sparse: instant, and all NULs, which would never parse
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(info.value) == f"{path}: larger than 32 MiB; refusing to parse it"


def test_policy_too_large_for_senders() -> None:
    # senders may refuse more than 64 KiB (RFC 8461 section 3.3); this is about 82 KB
    label = "m" * 60
    patterns = [f"{label}.{label}.{label}.m{i}.example" for i in range(400)]
    text = one_domain(f"mode: enforce, mx: [{', '.join(patterns)}]")
    assert errors(text)[0].startswith("config.yaml:2: domains.example.com: the policy is ")
    assert errors(text)[0].endswith(" bytes; senders accept at most 65536")


def patterns_for(size: int) -> list[str]:
    """mx patterns that make example.com's enforce policy exactly ``size`` bytes long."""
    one = Policy(Mode.ENFORCE, ("a.example",)).render()
    room = size - len(one) + len(b"mx: a.example\r\n")  # for the mx lines, 'mx: ' and CRLF
    full = (room - 20) // 50  # lines of 50 bytes, then one of 20 to 69
    last = room - 50 * full - len("mx: \r\n")
    return [
        f"{i:05d}{'m' * (length - 13)}.example" for i, length in enumerate([44] * full + [last])
    ]


@pytest.mark.parametrize("size", [65536, 65537])
def test_the_size_limit_is_exactly_what_senders_accept(size: int) -> None:
    # Snawoot, mox and postfix-tlspol refuse more than 65,536 bytes (notes, test 41).
    text = one_domain(f"mode: enforce, mx: [{', '.join(patterns_for(size))}]")
    if size <= 65536:
        assert len(parse(text)["example.com"].policy.render()) == size
    else:
        assert errors(text) == [
            "config.yaml:2: domains.example.com: the policy is 65537 bytes; senders accept at "
            "most 65536"
        ]


def test_error_carries_its_problems() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(one_domain("mode: bad").encode(), "c.yaml")
    (problem,) = info.value.problems
    assert (problem.path, problem.line, problem.key) == ("c.yaml", 2, "domains.example.com.mode")
    assert info.value.path == "c.yaml"


def test_defaults_may_follow_domains() -> None:
    before = parse("defaults: {mode: testing, mx: a.example}\ndomains:\n  example.com: {}\n")
    after = parse("domains:\n  example.com: {}\ndefaults: {mode: testing, mx: a.example}\n")
    assert before == after == {"example.com": DomainConfig(Policy(Mode.TESTING, ("a.example",)))}


def test_errors_are_the_same_in_either_key_order() -> None:
    domains = "domains:\n  a.example: {mode: enforced}\n  b.example: {max_age: 1y}\n"
    defaults = "defaults: {mx: mail_1.example}\n"
    first = [line.split(":", 2)[2] for line in errors(defaults + domains)]
    last = [line.split(":", 2)[2] for line in errors(domains + defaults)]
    assert (
        sorted(first)
        == sorted(last)
        == [
            " defaults.mx[0]: label 'mail_1' is not a host name label (letters, digits and inner "
            "hyphens, at most 63), got 'mail_1.example'",
            " domains.a.example.mode: expected one of enforce, testing, none, got 'enforced'",
            " domains.b.example.max_age: expected an integer 0..31557600, got '1y'",
        ]
    )


def test_a_domain_overrides_a_broken_default() -> None:
    # The domain's own mode replaces the broken one, so its mx error is still reported.
    text = "defaults: {mode: enforced}\ndomains:\n  a.example: {mode: enforce, mx: []}\n"
    assert errors(text) == [
        "config.yaml:1: defaults.mode: expected one of enforce, testing, none, got 'enforced'",
        "config.yaml:3: domains.a.example.mx: mode enforce needs at least one mx pattern",
    ]


def test_every_bad_report_uri_is_named() -> None:
    assert errors(
        one_domain("mode: none, tlsrpt_rua: [ftp://x, 'https://ok.example', gopher:y]")
    ) == [
        "config.yaml:2: domains.example.com.tlsrpt_rua[0]: expected a 'mailto:' address or an "
        "'https://' URL, got 'ftp://x'",
        "config.yaml:2: domains.example.com.tlsrpt_rua[2]: expected a 'mailto:' address or an "
        "'https://' URL, got 'gopher:y'",
    ]


def test_report_uris_on_a_policy_host_are_warned_of_wherever_they_are() -> None:
    # Any form of a policy host's name, as a Host header would give it, of any domain; a
    # mailto: address there is mail, not the policy host's HTTPS, and stays allowed.
    text = """\
        domains:
          example.com:
            mode: none
            tlsrpt_rua:
              - mailto:tlsrpt@mta-sts.example.com
              - https://tlsrpt.example.com/tlsrpt
              - https://reports@MTA-STS.Example.ORG.:443/v1/tls?x=1
        """
    assert [w for w in warnings(text) if "tlsrpt_rua" in w] == [
        "config.yaml:7: warning: domains.example.com.tlsrpt_rua[2]: reports sent to the policy "
        "host mta-sts.example.org get 404: it serves the policy alone; give them a host name "
        "of their own, like 'https://tlsrpt.example.org/tlsrpt'"
    ]
    rua = ("mailto:tlsrpt@mta-sts.example.com", "https://tlsrpt.example.com/tlsrpt")
    accepted = one_domain(f"mode: none, tlsrpt_rua: [{rua[0]}, '{rua[1]}']")
    assert parse(accepted)["example.com"].tlsrpt_rua == rua
    assert [w for w in warnings(accepted) if "tlsrpt_rua" in w] == []


def test_reports_block() -> None:
    text = CONFIG_D + "reports: {store: 'sqlite:////var/lib/r.db', retention_days: 30}\n"
    config = parse_config(text.encode(), "config.yaml")
    assert config.reports == ReportsSettings("sqlite:////var/lib/r.db", "/tlsrpt", 30)
    assert parse_config(CONFIG_D.encode()).reports is None


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{}", "config.yaml:6: reports.store: missing; expected a store URL"),
        (
            "{store: 'mysql://x'}",
            "config.yaml:6: reports.store: expected a sqlite:/// or postgresql:// URL, "
            "got 'mysql://x'",
        ),
        (
            "{store: 'sqlite:///'}",
            "config.yaml:6: reports.store: expected sqlite:///relative.db or "
            "sqlite:////absolute.db, got 'sqlite:///'",
        ),
        (
            "{store: 'sqlite:///:memory:'}",
            "config.yaml:6: reports.store: an in-memory SQLite store would lose every report; "
            "give a file, got 'sqlite:///:memory:'",
        ),
        (
            "{store: 'sqlite:///r.db', path: tlsrpt}",
            "config.yaml:6: reports.path: expected a URL path like '/tlsrpt', got 'tlsrpt'",
        ),
        (
            "{store: 'sqlite:///r.db', path: /metrics}",
            "config.yaml:6: reports.path: '/metrics' is taken; choose another path, like '/tlsrpt'",
        ),
        (
            "{store: 'sqlite:///r.db', retention_days: 0}",
            "config.yaml:6: reports.retention_days: expected an integer 1..36500, got '0'",
        ),
        (
            "{store: 'sqlite:///r.db', retention: 5}",
            "config.yaml:6: reports.retention: unknown key 'retention'; did you mean "
            "'retention_days'? (expected one of: store, path, retention_days)",
        ),
        ("[a]", "config.yaml:6: reports: expected a mapping, got a list"),
    ],
)
def test_invalid_reports_block(block: str, message: str) -> None:
    assert errors(CONFIG_D + f"reports: {block}\n") == [message]


KEY = "key:\n  - id: mtasts\n    algorithm: hmac-sha256\n    secret: c2VjcmV0c2VjcmV0c2VjcmV0\n"


def test_publish_block(tmp_path: Path) -> None:
    key = tmp_path / "mtasts.key"
    key.write_text(KEY)
    text = CONFIG_D + f"publish: {{server: '127.0.0.1:5353', tsig_key_file: '{key}', auto: yes}}\n"
    config = parse_config(text.encode(), "config.yaml")
    assert config.publish == PublishSettings(("127.0.0.1", 5353), str(key), auto=True)
    by_command = parse_config((CONFIG_D + "publish: {command: 'true --flag'}\n").encode())
    assert by_command.publish == PublishSettings(command=("true", "--flag"))
    assert by_command.publish.verify_url == "https://mta-sts.{domain}/.well-known/mta-sts.txt"
    assert (by_command.publish.cache_wait, by_command.publish.verify_timeout) == (60, 120)


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("{}", "tsig_key_file: missing; expected tsig_key_file (with server) or command"),
        (
            "{tsig_key_file: KEY, command: 'true'}",
            "tsig_key_file: expected either tsig_key_file (with server) or command, not both",
        ),
        ("{tsig_key_file: KEY}", "server: missing; RFC 2136 updates need a server"),
        (
            "{server: 'ns1.example.net:99999', command: 'true'}",
            "server: expected a host and a port, like ns1.example.net:53, "
            "got 'ns1.example.net:99999'",
        ),
        (
            "{server: ns1.example.net, tsig_key_file: /nonexistent.key}",
            "tsig_key_file: cannot read the key file: no such file, got '/nonexistent.key'",
        ),
        (
            "{server: ns1.example.net, tsig_key_file: BADKEY}",
            "tsig_key_file: not a TSIG key file: expected the output of tsig-keygen (BIND) or "
            "keymgr -t (knot), got 'BADKEY'",
        ),
        ("{command: 'no-such-hook-here'}", "command: no such executable, got 'no-such-hook-here'"),
        (
            "{command: 'true', verify_url: 'https://mta-sts.example.com/x'}",
            "verify_url: expected an http:// or https:// URL with {domain} in it, like "
            "'https://mta-sts.{domain}/.well-known/mta-sts.txt', got "
            "'https://mta-sts.example.com/x'",
        ),
        (
            "{command: 'true', verify_url: 'http://mta-sts.{domain}:80000/.well-known/mta-sts.txt'}",
            "verify_url: expected a port 1..65535 after the host, got "
            "'http://mta-sts.{domain}:80000/.well-known/mta-sts.txt'",
        ),
        (
            "{command: 'true', verify_url: 'http://[{domain}/.well-known/mta-sts.txt'}",
            "verify_url: expected an http:// or https:// URL with {domain} in it, like "
            "'https://mta-sts.{domain}/.well-known/mta-sts.txt', got "
            "'http://[{domain}/.well-known/mta-sts.txt'",
        ),
        (
            "{command: 'true', verify_url: 'http://mta-sts.{domain}/mta-sts.txt?r=\u00e9'}",
            "verify_url: expected a URL of printable ASCII (percent-encode the rest), got "
            "'http://mta-sts.{domain}/mta-sts.txt?r=\u00e9'",
        ),
        (
            "{command: 'true', verify_url: 'http://mta-sts.{domain}/mta-sts.txt?r=a b'}",
            "verify_url: expected a URL of printable ASCII (percent-encode the rest), got "
            "'http://mta-sts.{domain}/mta-sts.txt?r=a b'",
        ),
        (
            f"{{server: 'ns1.example.net:{HUGE}', command: 'true'}}",
            f"server: expected a host and a port, like ns1.example.net:53, got "
            f"'ns1.example.net:{HUGE}'",
        ),
        (
            "{command: 'true', cache_wait: -1}",
            "cache_wait: expected an integer 0..86400, got '-1'",
        ),
        (
            "{command: 'true', verify_timeout: 0}",
            "verify_timeout: expected an integer 1..86400, got '0'",
        ),
        (
            # shlex reads a command in time quadratic in its length: 1 MiB took four minutes.
            f"{{command: 'true {'x' * (MAX_COMMAND - 4)}'}}",
            "command: expected a command line of at most 131,072 characters, got 131,073",
        ),
        ("{command: 'true', auto: maybe}", "auto: expected true or false, got 'maybe'"),
        (
            "{command: 'true', auto: 'true'}",
            "auto: expected true or false, got the string 'true' (remove the quotes)",
        ),
        ("{command: 'true', auto: 'maybe'}", "auto: expected true or false, got 'maybe'"),
        (
            "{command: 'true', ca_file: /nonexistent.pem}",
            "ca_file: no readable file there, got '/nonexistent.pem'",
        ),
        (
            '{command: "true", ca_file: "/etc/ssl\\0x"}',
            "ca_file: no readable file there, got '/etc/ssl\\x00x'",
        ),
    ],
)
def test_invalid_publish_block(tmp_path: Path, block: str, message: str) -> None:
    key, bad = tmp_path / "k.key", tmp_path / "bad.key"
    key.write_text(KEY)
    bad.write_text("secret: nothing like a key\n")
    block = block.replace("BADKEY", str(bad)).replace("KEY", str(key))
    message = message.replace("BADKEY", str(bad))
    assert errors(CONFIG_D + f"publish: {block}\n") == [f"config.yaml:6: publish.{message}"]


def test_select_domains_as_options_name_them() -> None:
    config = parse_config(
        b"domains:\n  b.example: {mode: none}\n  a.example: {mode: none}\n"
        b"  xn--bcher-kva.example: {mode: none}\n",
        "config.yaml",
    )
    assert config.select([]) == ["b.example", "a.example", "xn--bcher-kva.example"]
    assert config.select(["A.EXAMPLE.", "bücher.example"]) == ["a.example", "xn--bcher-kva.example"]
    with pytest.raises(ValueError, match=r"^--domain 'c.example': not configured in config.yaml$"):
        config.select(["c.example"])


def test_a_default_cname_naming_a_domains_own_record_makes_it_the_target() -> None:
    # The provider of RFC 8461 section 8.2 puts the shared record in 'defaults' and serves
    # a policy of its own: the CNAMEs point at its records, so they are not its own CNAMEs.
    domains = parse(
        """\
        defaults:
          mode: enforce
          mx: mx.provider.example
          cname: mta-sts.provider.example
          txt_cname: _mta-sts.provider.example
        domains:
          provider.example: {}
          customer.example: {}
        """
    )
    provider, customer = domains["provider.example"], domains["customer.example"]
    assert (provider.cname, provider.txt_cname) == (None, None)
    assert customer.cname == "mta-sts.provider.example"
    assert customer.txt_cname == "_mta-sts.provider.example"
    # Set on the domain itself, it still points to itself.
    assert errors(one_domain("mode: none, cname: mta-sts.example.com")) == [
        "config.yaml:2: domains.example.com.cname: the CNAME would point to itself"
    ]


def test_a_domain_too_long_for_its_records_is_an_error() -> None:
    # 244 characters: _mta-sts.<domain> is 253, the longest DNS name.
    longest = ".".join(["a" * 63, "b" * 63, "c" * 63, "d" * 52])
    assert len(longest) == 244
    assert list(parse(f"domains:\n  {longest}: {{mode: none}}\n")) == [longest]
    too_long = longest + "e"
    assert errors(f"domains:\n  {too_long}: {{mode: none}}\n") == [
        f"config.yaml:2: domains.{too_long}: name is 245 characters long, at most 244 "
        f"allowed: _mta-sts.<domain> must fit in 253, got {too_long!r}"
    ]
    # With reports, _smtp._tls.<domain> must fit too.
    rua = "mode: none, tlsrpt_rua: 'mailto:tlsrpt@example.net'"
    assert errors(f"domains:\n  {longest}: {{{rua}}}\n") == [
        f"config.yaml:2: domains.{longest}.tlsrpt_rua: _smtp._tls.{longest} would be 255 "
        "characters long, longer than a DNS name can be (253): the domain is too long for reports"
    ]


@pytest.mark.parametrize("newline", [b"\r", b"\r\n", b"\n"], ids=["CR", "CRLF", "LF"])
@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (b"\x01", "unacceptable character #x0001: control characters are not allowed"),
        (b"\xff", "not UTF-8 text (byte 0xff)"),
    ],
    ids=["control", "not-utf8"],
)
def test_a_bad_character_is_on_its_line_whatever_ends_lines(
    newline: bytes, bad: bytes, message: str
) -> None:
    # libyaml ends lines at CR, LF or CRLF, and so names the lines of every other error.
    lines = [b"domains:", b"  example.com: {mode: none}", b"  # a comment", b"  # " + bad]
    with pytest.raises(ConfigError) as info:
        parse_config(newline.join(lines) + newline, "config.yaml")
    assert str(info.value) == f"config.yaml:4: {message}"


def test_a_file_that_fails_to_read_is_a_config_error() -> None:
    # A regular file whose read fails (EIO), as a failing disk or a stale NFS handle does.
    with pytest.raises(ConfigError) as info:
        load_config("/proc/self/mem")
    assert str(info.value) == "/proc/self/mem: input/output error"


def test_the_longest_command_is_read() -> None:
    text = CONFIG_D + f"publish: {{command: 'true {'x' * (MAX_COMMAND - 5)}'}}\n"
    publish = parse_config(text.encode()).publish
    assert publish is not None
    assert publish.command == ("true", "x" * (MAX_COMMAND - 5))
