"""Real MTA-STS client libraries, run as a sender runs them: DNS, then HTTPS on port 443."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

from mtasts_host.config import load_config
from mtasts_host.policy import policy_id

from .processes import PYTHON

# Senders fetch https://mta-sts.<domain>/ on port 443 of the address DNS gives them: each TLS
# endpoint under test listens on a loopback address of its own.
UVICORN_TLS_ADDRESS = "127.44.3.1"
NGINX_ADDRESS = "127.44.3.2"
CADDY_ADDRESS = "127.44.3.3"

# Runs inside the client's own mount namespace, where /etc/resolv.conf names our DNS server.
_CLIENT = r"""
import asyncio, json, sys
which, domains = sys.argv[1], sys.argv[2:]
results = {}
if which == "postfix-mta-sts-resolver":
    from postfix_mta_sts_resolver.resolver import STSResolver
    async def main():
        resolver = STSResolver(loop=asyncio.get_running_loop(), timeout=10)
        for domain in domains:
            status, policy = await resolver.resolve(domain)
            results[domain] = [status.name, policy and [*policy, []]]
    asyncio.run(main())
else:
    from checkdmarc.mta_sts import check_mta_sts
    for domain in domains:
        result = check_mta_sts(domain, timeout=10)
        detail = [result.get("id"), result.get("policy"), result["warnings"]]
        results[domain] = ["VALID" if result["valid"] else "INVALID",
                           detail if result["valid"] else result]
print(json.dumps(results, default=str))
"""

CLIENTS = ["postfix-mta-sts-resolver", "checkdmarc"]


def fetch_with_client(
    client: str, domains: Sequence[str], nameserver: str, ca_file: Path, workdir: Path
) -> dict[str, list[object]]:
    """
    Run a real MTA-STS client library for each domain, as a sender would: DNS lookups go to
    ``nameserver``, and only ``ca_file`` is trusted. A private mount namespace gives the client
    its own /etc/resolv.conf without touching the machine's.
    """
    resolv = workdir / "resolv.conf"
    resolv.write_text(f"nameserver {nameserver}\noptions timeout:2 attempts:2\n")
    script = workdir / "client.py"
    script.write_text(_CLIENT)
    command = f'mount --bind {resolv} /etc/resolv.conf && exec "{PYTHON}" {script} "$@"'
    env = {
        **os.environ,
        "SSL_CERT_FILE": str(ca_file),
        "REQUESTS_CA_BUNDLE": str(ca_file),
        "PYTHONWARNINGS": "ignore",
    }
    completed = subprocess.run(
        ["unshare", "--mount", "sh", "-c", command, "client", client, *domains],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{client} failed:\n{completed.stderr[-3000:]}")
    results: dict[str, list[object]] = json.loads(completed.stdout.splitlines()[-1])
    # What the client logged (its reasons for refusing a policy), for failure messages.
    results["_log"] = [completed.stderr[-3000:]]
    return results


def assert_accepted(results: dict[str, list[object]], config_path: Path) -> None:
    """Every configured domain's policy was fetched and accepted as served; others were not."""
    served = load_config(config_path).domains
    for domain, settings in served.items():
        policy = settings.policy
        status, detail = results[domain]
        assert status == "VALID", (domain, detail, results["_log"])
        assert isinstance(detail, list)
        ident, parsed, warnings = detail
        assert ident == policy_id(policy.render())
        assert warnings == []
        assert isinstance(parsed, dict)
        assert parsed["mode"] == policy.mode.value
        assert parsed["mx"] == list(policy.mx)
        assert int(parsed["max_age"]) == policy.max_age
    for domain in results.keys() - served.keys() - {"_log"}:
        assert results[domain][0] in ("FETCH_ERROR", "INVALID"), (domain, results[domain])
