"""Reports that name many hosts and domains, as a flood or a broken sender makes them."""

from __future__ import annotations

from typing import Any

from .conftest import TODAY, report


def name(prefix: str) -> str:
    """A name of 253 characters, the most the intake keeps."""
    return f"{prefix}.{'x' * 253}"[:253]


def flood(n: int, hosts: int, last_day: int = TODAY - 1) -> dict[str, Any]:
    """
    Report ``n``, from organisation ``Org n``, for ``n`` days before ``last_day``: the STS
    sessions of example.com failed at ``hosts`` hosts, and as many policies of domains
    nobody configured each have a failure.
    """
    document = report(
        organization=f"Org {n}",
        day=last_day - n,
        failed=hosts,
        failures=[
            {
                "result-type": "certificate-expired",
                "receiving-mx-hostname": name(f"mx{n}-{i}"),
                "failed-session-count": 1,
            }
            for i in range(hosts)
        ],
    )
    document["policies"] += [
        {
            "policy": {"policy-type": "sts", "policy-domain": name(f"d{n}-{i}")},
            "summary": {"total-successful-session-count": 1, "total-failure-session-count": 1},
            "failure-details": [{"result-type": "validation-failure", "failed-session-count": 1}],
        }
        for i in range(hosts)
    ]
    return document
