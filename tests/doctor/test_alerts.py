"""The shipped alerting rules: valid for Prometheus, right in promtool's unit tests, and about
metrics mtasts-host exports."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import yaml

from mtasts_host import create_app
from mtasts_host.doctor import families

from ..conftest import CONFIG_D, WriteConfig

RULES = Path(__file__).parent.parent.parent / "deploy" / "prometheus"


def promtool(*args: str) -> str:
    result = subprocess.run(
        ["promtool", *args], cwd=RULES, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_promtool_checks_the_rules() -> None:
    assert "SUCCESS: 4 rules found" in promtool("check", "rules", "mtasts-host.rules.yaml")


def test_promtool_unit_tests_pass() -> None:
    assert "SUCCESS" in promtool("test", "rules", "mtasts-host.rules.test.yaml")


def test_rules_use_only_metrics_mtasts_host_exports(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    groups = yaml.safe_load((RULES / "mtasts-host.rules.yaml").read_text())["groups"]
    used = {
        name
        for group in groups
        for rule in group["rules"]
        for name in re.findall(r"mtasts_[a-z_]+", rule["expr"])
    }
    assert used == {
        "mtasts_doctor_check_failed_runs",
        "mtasts_certificate_expiry_timestamp_seconds",
        "mtasts_doctor_last_run_timestamp_seconds",
        "mtasts_last_reload_failed",
        "mtasts_tlsrpt_store_up",
    }
    store = tmp_path / "reports.db"
    app = create_app(write_config(f"{CONFIG_D}reports:\n  store: sqlite:///{store}\n"), watch=False)
    assert app.registry is not None
    exported = {family.name for family in app.registry.collect()}
    assert used <= exported | {family.name for family in families(None)}
