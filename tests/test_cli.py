"""The command line, run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtasts_host.cli import main
from mtasts_host.policy import policy_id

from .conftest import BODY_D, CONFIG_D, WriteConfig

BAD = """\
domains:
  a.example: {mode: enforced}
  b.example: {mode: enforce, max_age: yes, mx: a.example}
"""


def test_check_lists_every_domain(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    assert main(["check", str(path)]) == 0
    out, err = capsys.readouterr()
    assert out == f"example.com: mode=enforce mx=2 max_age=604800 id={policy_id(BODY_D)}\n"
    assert err == ""


def test_check_reports_every_error(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(BAD)
    assert main(["check", str(path)]) == 1
    out, err = capsys.readouterr()
    assert out == ""
    assert err.splitlines() == [
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, got 'enforced'",
        f"{path}:3: domains.b.example.max_age: expected an integer 0..31557600, got 'yes'",
    ]


def test_check_prints_warnings_and_passes(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config("domains:\n  a.example: {mode: none}\n")
    assert main(["check", str(path)]) == 0
    assert capsys.readouterr().err.startswith(f"{path}:2: warning: domains.a.example: mode none")


def test_config_from_environment(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTASTS_HOST_CONFIG", str(write_config()))
    assert main(["dns", "--format", "json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["value"] == f"v=STSv1; id={policy_id(BODY_D)}"


def test_dns_zone(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["dns", str(write_config())]) == 0
    assert capsys.readouterr().out == (
        f'_mta-sts.example.com.\t3600\tIN\tTXT\t"v=STSv1; id={policy_id(BODY_D)}"\n'
    )


def test_no_config_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MTASTS_HOST_CONFIG", raising=False)
    with pytest.raises(SystemExit) as info:
        main(["check"])
    assert info.value.code == 2
    assert "no configuration file: give PATH or set MTASTS_HOST_CONFIG" in capsys.readouterr().err


def test_serve_refuses_a_bad_config_in_one_line(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(BAD)
    assert main(["serve", "--config", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, got 'enforced'",
        "... and 1 more; run 'mtasts-host check' to see them",
    ]


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "x.yaml")]) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'x.yaml'}: no such file\n"


def test_dns_hosts(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(CONFIG_D + "  bücher.example: {mode: none, mx: mx.example.net}\n")
    assert main(["dns", "--format", "hosts", str(path)]) == 0
    assert capsys.readouterr().out == "mta-sts.example.com\nmta-sts.xn--bcher-kva.example\n"
