"""The DNS records to publish."""

from __future__ import annotations

import json
import textwrap

from mtasts_host import dns
from mtasts_host.config import parse_config
from mtasts_host.policy import policy_id

CONFIG = textwrap.dedent(
    """\
    defaults: {mode: testing, mx: mx.example.net}
    domains:
      a.example: {}
      b.example:
        cname: mta-sts.provider.example
        tlsrpt_rua: ["mailto:tls@b.example", "https://r.example/tlsrpt"]
        dns_ttl: 300
    """
).encode()


def test_zone() -> None:
    config = parse_config(CONFIG)
    ident = policy_id(config.domains["a.example"].policy.render())
    assert dns.to_zone(config).splitlines() == [
        f'_mta-sts.a.example.\t3600\tIN\tTXT\t"v=STSv1; id={ident}"',
        f'_mta-sts.b.example.\t300\tIN\tTXT\t"v=STSv1; id={ident}"',
        "mta-sts.b.example.\t300\tIN\tCNAME\tmta-sts.provider.example.",
        '_smtp._tls.b.example.\t300\tIN\tTXT\t"v=TLSRPTv1; '
        'rua=mailto:tls@b.example,https://r.example/tlsrpt"',
    ]


def test_json() -> None:
    config = parse_config(CONFIG)
    records = json.loads(dns.to_json(config))
    assert records[0] == {
        "name": "_mta-sts.a.example",
        "type": "TXT",
        "ttl": 3600,
        "value": f"v=STSv1; id={policy_id(config.domains['a.example'].policy.render())}",
    }
    assert [r["type"] for r in records] == ["TXT", "TXT", "CNAME", "TXT"]


def test_long_txt_values_are_split_into_strings() -> None:
    uris = ", ".join(f'"mailto:tls{i}@{"r" * 50}.example"' for i in range(6))
    config = parse_config(f"domains:\n  a.example: {{mode: none, tlsrpt_rua: [{uris}]}}\n".encode())
    line = dns.to_zone(config).splitlines()[1]
    strings = line.split("\t")[-1]
    assert strings.count('" "') == 1  # two strings
    assert all(len(s) <= 255 for s in strings.strip('"').split('" "'))
    rua = next(record for record in dns.records(config) if record.name.startswith("_smtp"))
    assert "".join(strings.strip('"').split('" "')) == rua.value
