"""The command line, run in-process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mtasts_host.cli import main
from mtasts_host.doctor import DoctorOptions, Report
from mtasts_host.doctor import command as doctor_command
from mtasts_host.policy import policy_id
from mtasts_host.store import Snapshot

from .conftest import BODY_D, CONFIG_D, WriteConfig
from .processes import free_port, serve_argv, wait_for_answer

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


@pytest.mark.parametrize(
    ("command", "give"),
    [(["check"], "PATH"), (["reports"], "--config PATH")],  # reports takes no PATH
    ids=["check", "reports"],
)
def test_no_config_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    give: str,
) -> None:
    monkeypatch.delenv("MTASTS_HOST_CONFIG", raising=False)
    assert main(command) == 2
    assert capsys.readouterr().err == (
        f"mtasts-host: error: no configuration file: give {give} or set MTASTS_HOST_CONFIG\n"
    )


def test_reports_commands_offer_no_path(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["reports", "ingest", "--help"])
    assert "give it as PATH" not in capsys.readouterr().out


def test_serve_refuses_a_bad_config_in_one_line(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(BAD)
    assert main(["serve", "--config", str(path)]) == 1
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, got 'enforced'",
        "... and 1 more; run 'mtasts-host check' to see them",
    ]


@pytest.mark.parametrize(("domains", "more"), [(1000, "999 more"), (1001, "over 999 more")])
def test_the_errors_not_shown_are_counted_without_the_notice_that_reading_stopped(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], domains: int, more: str
) -> None:
    # "and 1000 more" of 1,000 errors: the notice after them was counted as one.
    path = write_config(
        "domains:\n" + "".join(f"  d{i}.example: {{mode: x}}\n" for i in range(domains))
    )
    assert main(["serve", "--config", str(path)]) == 1
    assert capsys.readouterr().err.splitlines()[1:] == [
        f"... and {more}; run 'mtasts-host check' to see them"
    ]


@pytest.mark.parametrize(
    ("config", "argv", "status"),
    [
        (BAD, [], 1),
        (CONFIG_D, ["--doctor-interval", "1m", "--ca-file", "/nonexistent/ca.pem"], 2),
    ],
    ids=["bad-config", "companion-refused"],
)
def test_serve_that_serves_nothing_leaves_sighup_as_it_was(
    write_config: WriteConfig, config: str, argv: list[str], status: int
) -> None:
    # serve catches SIGHUP while it loads; returning without serving, it must not leave an
    # in-process caller with a handler that swallows every SIGHUP from then on.
    # SIGTERM, which ends it while it loads, too.
    before = signal.getsignal(signal.SIGHUP)
    before_term = signal.getsignal(signal.SIGTERM)
    try:
        port = str(free_port())
        path = str(write_config(config))
        assert main(["serve", "--config", path, "--port", port, *argv]) == status
        assert signal.getsignal(signal.SIGHUP) is before
        assert signal.getsignal(signal.SIGTERM) is before_term
    finally:
        signal.signal(signal.SIGHUP, before)
        signal.signal(signal.SIGTERM, before_term)


def test_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", str(tmp_path / "x.yaml")]) == 1
    assert capsys.readouterr().err == f"{tmp_path / 'x.yaml'}: no such file\n"


def test_dns_hosts(write_config: WriteConfig, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_config(CONFIG_D + "  bücher.example: {mode: none, mx: mx.example.net}\n")
    assert main(["dns", "--format", "hosts", str(path)]) == 0
    assert capsys.readouterr().out == "mta-sts.example.com\nmta-sts.xn--bcher-kva.example\n"


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--port", "x"], {}, "argument --port: expected a port 1..65535, got 'x'"),
        (["--port", "80000"], {}, "argument --port: expected a port 1..65535, got '80000'"),
        (["--port=-3"], {}, "argument --port: expected a port 1..65535, got '-3'"),
        (["--port", "0"], {}, "argument --port: expected a port 1..65535, got '0'"),
        ([], {"PORT": "x"}, "MTASTS_HOST_PORT: expected a port 1..65535, got 'x'"),
        ([], {"PORT": "80000"}, "MTASTS_HOST_PORT: expected a port 1..65535, got '80000'"),
        (
            [],
            {"PORT": "9" * 5000},
            f"MTASTS_HOST_PORT: expected a port 1..65535, got '{'9' * 5000}'",
        ),
        (
            ["--port", "0" * 5000 + "80000"],
            {},
            f"argument --port: expected a port 1..65535, got '{'0' * 5000}80000'",
        ),
        (
            [],
            {"LOG_FORMAT": "yaml"},
            "MTASTS_HOST_LOG_FORMAT: expected one of text, json, got 'yaml'",
        ),
        (
            ["--log-format", "yaml"],
            {},
            "argument --log-format: expected one of text, json, got 'yaml'",
        ),
        (
            [],
            {"WATCH": "maybe"},
            "MTASTS_HOST_WATCH: expected one of 1, true, yes, on, 0, false, no, off, got 'maybe'",
        ),
        (
            ["--timeout-keep-alive", "0"],
            {},
            "argument --timeout-keep-alive: expected a positive integer, got '0'",
        ),
        (
            [],
            {"LIMIT_CONCURRENCY": "-1"},
            "MTASTS_HOST_LIMIT_CONCURRENCY: expected a positive integer, got '-1'",
        ),
        (["--host", ""], {}, "argument --host: expected at least one value, got ''"),
        (
            ["--ehlo", "vm"],
            {},
            "argument --ehlo: expected a fully qualified host name like 'doctor.example.com', "
            "or an address literal like '[192.0.2.1]', got 'vm'",
        ),
        (["--nope"], {}, "unrecognized arguments: --nope"),
    ],
)
def test_a_bad_option_is_one_usage_line(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name, value in environ.items():
        monkeypatch.setenv(f"MTASTS_HOST_{name}", value)
    assert main(["serve", "--config", str(write_config()), *argv]) == 2
    assert capsys.readouterr() == ("", f"mtasts-host: error: {message}\n")


@pytest.mark.parametrize("rate", ["\u0660.\u0665", " 0.5", "5e-1"])
def test_a_failure_rate_is_ascii_decimal(
    rate: str, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["reports", "--config", str(write_config()), "--max-failure-rate", rate]) == 2
    assert capsys.readouterr().err == (
        "mtasts-host: error: argument --max-failure-rate: expected a share of sessions "
        f"from 0 to 1, like 0.001, got {rate!r}\n"
    )


@pytest.mark.parametrize("command", [["check"], ["doctor"], ["reports", "--config"]])
def test_ctrl_c_is_one_line_and_130(
    command: list[str],
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def interrupted(path: str) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("mtasts_host.cli.load_config", interrupted)
    try:
        status = main([*command, str(write_config())])
    except KeyboardInterrupt:
        status = None
    assert status == 130
    assert capsys.readouterr() == ("", "mtasts-host: interrupted\n")


def test_ctrl_c_while_serve_loads_is_one_line_and_130(
    write_config: WriteConfig,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Once started, uvicorn handles Ctrl-C; before, it was a KeyboardInterrupt traceback.
    def interrupted(args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("mtasts_host.server.build_app", interrupted)
    before = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
    try:
        status = main(["serve", str(write_config())])
    except KeyboardInterrupt:
        status = None
    assert status == 130
    assert capsys.readouterr() == ("", "mtasts-host: interrupted\n")
    assert (signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)) == before


def test_the_command_line_wins_over_the_environment(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTASTS_HOST_FORMAT", "json")
    assert main(["dns", "--format", "hosts", str(write_config())]) == 0
    assert capsys.readouterr().out == "mta-sts.example.com\n"


def test_format_from_the_environment(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MTASTS_HOST_FORMAT", "hosts")
    assert main(["dns", str(write_config())]) == 0
    assert capsys.readouterr().out == "mta-sts.example.com\n"


@pytest.mark.parametrize("command", ["check", "dns"])
def test_config_option_as_well_as_path(
    command: str, write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_config())
    assert main([command, "--config", path]) == 0
    by_option = capsys.readouterr()
    assert main([command, path]) == 0
    assert capsys.readouterr() == by_option


def test_config_given_twice_differently(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["check", "a.yaml", "--config", "b.yaml"]) == 2
    assert capsys.readouterr().err == (
        "mtasts-host: error: give the configuration once: PATH or --config\n"
    )


def test_no_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert capsys.readouterr().err == (
        "mtasts-host: error: the following arguments are required: "
        "{serve,check,dns,doctor,publish,reports}\n"
    )


def test_the_installed_command_prints_no_traceback(write_config: WriteConfig) -> None:
    environ = {**os.environ, "MTASTS_HOST_PORT": "x", "MTASTS_HOST_CONFIG": str(write_config())}
    result = subprocess.run(
        [sys.executable, "-m", "mtasts_host", "serve"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout, result.stderr) == (
        2,
        "",
        "mtasts-host: error: MTASTS_HOST_PORT: expected a port 1..65535, got 'x'\n",
    )


REPORT = Path(__file__).parent / "reports" / "fixtures" / "rfc8460-appendix-b.json"


def test_reports_need_their_block(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config()
    assert main(["reports", "--config", str(path)]) == 2
    assert main(["reports", "ingest", "--config", str(path), str(REPORT)]) == 75
    assert capsys.readouterr().err == f"mtasts-host: error: {path} has no 'reports' block\n" * 2


def test_reports_on_a_bad_config_is_2_not_a_failing_verdict(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(BAD)
    assert main(["reports", "--config", str(path)]) == 2
    assert main(["reports", "--config", str(path.parent / "missing.yaml")]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:2: domains.a.example.mode: expected one of enforce, testing, none, got 'enforced'",
        "... and 1 more; run 'mtasts-host check' to see them",
        f"{path.parent / 'missing.yaml'}: no such file",
    ]


def test_reports_ingest_then_summary(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = f"sqlite:///{tmp_path / 'reports.db'}"
    domain = json.loads(REPORT.read_text())["policies"][0]["policy"]["policy-domain"]
    # The fixture's report is years old: keep reports for as long as it takes. Its policy's
    # mx is the one served: a report against other mx would not count.
    text = (
        f"domains:\n  {domain}: {{mode: testing, mx: '*.mail.{domain}'}}\n"
        f"reports: {{store: '{store}', retention_days: 36500}}\n"
    )
    path = write_config(text)
    assert main(["reports", "ingest", "--config", str(path), str(REPORT)]) == 0
    assert main(["reports", "ingest", "--config", str(path), str(REPORT)]) == 0  # a duplicate
    capsys.readouterr()
    assert main(["reports", "--config", str(path), "--days", "36500", "--format", "json"]) == 0
    summary = json.loads(capsys.readouterr().out)["domains"][domain]
    assert summary["reports"] == 1
    assert summary["verdict"] == "not-ready"


def test_reports_ingest_takes_files_or_a_maildir(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{tmp_path / 'r.db'}'}}\n")
    argv = ["reports", "ingest", "--config", str(path), "--maildir", str(tmp_path), str(REPORT)]
    assert main(argv) == 75  # a usage error of ingest: the mail system tries again
    assert capsys.readouterr().err == "mtasts-host: error: give FILEs or --maildir, not both\n"


@pytest.mark.parametrize(
    ("redirect", "said"),
    [
        # An AttributeError traceback.
        ("<&-", "mtasts-host: error: standard input is closed: give FILEs or --maildir\n"),
        # An OSError (EBADF) traceback, and exit 1, which Postfix bounces.
        ("0>{tmp}/w", "<stdin>: cannot be read: Bad file descriptor\n"),
    ],
    ids=["closed", "write-only"],
)
def test_reports_ingest_without_a_readable_standard_input_keeps_the_message(
    write_config: WriteConfig, tmp_path: Path, redirect: str, said: str
) -> None:
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{tmp_path / 'r.db'}'}}\n")
    argv = [sys.executable, "-m", "mtasts_host", "reports", "ingest", "--config", str(path)]
    shell = f'exec "$@" {redirect.format(tmp=tmp_path)}'
    completed = subprocess.run(
        ["sh", "-c", shell, "sh", *argv], capture_output=True, text=True, check=False, timeout=60
    )
    assert (completed.returncode, completed.stderr) == (75, said)


def test_doctor_exit_statuses(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    path = str(write_config())
    # Nothing answers on this port: every lookup times out, so checks fail.
    argv = ["doctor", path, "--resolver", "127.0.0.1:9", "--timeout", "0.2", "--format", "json"]
    assert main(argv) == 1
    findings = json.loads(capsys.readouterr().out)["domains"]["example.com"]
    assert {finding["check"] for finding in findings} >= {"dns-txt", "dns-id", "https"}
    assert main([*argv, "--domain", "other.example"]) == 2
    assert main(["doctor", str(write_config(BAD))]) == 2
    assert main(["doctor", path, "--timeout", "0"]) == 2


@pytest.mark.parametrize(
    ("argv", "environ", "helo"),
    [
        pytest.param([], {}, None, id="default"),
        pytest.param(["--ehlo", "Doctor.Example.net"], {}, "doctor.example.net", id="option"),
        pytest.param([], {"MTASTS_HOST_EHLO": "[192.0.2.7]"}, "[192.0.2.7]", id="environment"),
    ],
)
def test_doctor_ehlo_name(
    argv: list[str],
    environ: dict[str, str],
    helo: str | None,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    given: list[DoctorOptions] = []

    def run(snapshot: Snapshot, options: DoctorOptions) -> Report:
        given.append(options)
        return Report({})

    monkeypatch.setattr(doctor_command, "run", run)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert main(["doctor", str(write_config()), *argv]) == 0
    assert [options.helo for options in given] == [helo]


def test_reports_given_a_path_says_to_give_config(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its one positional is the ingest subcommand: the file landed there, with no hint.
    path = write_config()
    assert main(["reports", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"mtasts-host: error: argument subcommand: invalid choice: '{path}'")
    assert err.endswith("; reports takes the configuration file as --config PATH\n")


@pytest.mark.parametrize("word", ["ingset", "summary"], ids=["typo", "no-such-subcommand"])
def test_reports_given_an_unknown_subcommand_lists_the_choices(
    word: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not the hint for a file given there: the word names none.
    monkeypatch.chdir(tmp_path)
    assert main(["reports", word]) == 2
    err = capsys.readouterr().err
    # How argparse quotes the choices depends on the Python version.
    assert err.startswith(f"mtasts-host: error: argument subcommand: invalid choice: '{word}' ")
    assert err.endswith(("(choose from 'ingest')\n", "(choose from ingest)\n"))


def test_reports_given_a_file_of_a_bare_name_says_to_give_config(
    write_config: WriteConfig, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(name="mtasts")
    monkeypatch.chdir(path.parent)
    assert main(["reports", "mtasts"]) == 2
    assert capsys.readouterr().err.endswith(
        "; reports takes the configuration file as --config PATH\n"
    )


def test_reports_config_before_ingest_is_the_config_of_ingest(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # As the hint for 'reports PATH' says to type it: ingest's default replaced it, and the
    # error was "no configuration file: give --config PATH", though it was given.
    store = f"sqlite:///{tmp_path / 'r.db'}"
    path = write_config(CONFIG_D + f"reports: {{store: '{store}', retention_days: 36500}}\n")
    assert main(["reports", "--config", str(path), "ingest", str(REPORT)]) == 0
    assert capsys.readouterr().err.startswith(f"{REPORT}: stored")
    # Given again after ingest, that one counts, as any option given twice.
    other = tmp_path / "missing.yaml"
    argv = ["reports", "--config", str(other), "ingest", "--config", str(path), str(REPORT)]
    assert main(argv) == 0


def test_reports_options_before_ingest_that_ingest_has_not_are_refused(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str]
) -> None:
    # They did nothing: 'reports --days 7 ingest' ran ingest as if they were not there.
    path = write_config()
    argv = ["reports", "--days", "7", "--format", "json", "ingest", "--config", str(path)]
    assert main(argv) == 75  # ingest's usage error: the mail system tries again
    assert capsys.readouterr().err == (
        "mtasts-host: error: --days, --format: not an option of reports ingest\n"
    )


@pytest.mark.parametrize("command", ["doctor", "publish", "reports"])
def test_a_domain_not_configured_is_the_same_error_in_every_command(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    path = write_config(
        CONFIG_D
        + "publish: {server: '127.0.0.1:9', command: '/bin/true'}\n"
        + "reports: {store: 'sqlite:///unused.db'}\n"
    )
    config = [str(path)] if command != "reports" else ["--config", str(path)]
    assert main([command, *config, "--domain", "other.example"]) == 2
    assert capsys.readouterr().err == (
        f"mtasts-host: error: --domain 'other.example': not configured in {path}\n"
    )


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["--resolver", "127.0.0.1:9"], id="resolver"),
        pytest.param(["--ca-file", "/nonexistent/ca.pem"], id="ca-file"),
        pytest.param(["--ehlo", "doctor.example.net"], id="ehlo"),
        pytest.param(["--doctor-timeout", "3"], id="doctor-timeout"),
        pytest.param(["--https-port", "8443"], id="https-port"),
    ],
)
def test_serve_refuses_doctor_options_without_an_interval(
    write_config: WriteConfig,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
) -> None:
    # They were ignored: an operator who typed them believed the doctor ran, and a bad
    # --ca-file passed.
    monkeypatch.delenv("MTASTS_HOST_DOCTOR_INTERVAL", raising=False)
    # A socket it cannot listen on: were the options ignored, it would end there, with 3.
    uds = ["--uds", str(tmp_path / "missing" / "mtasts.sock")]
    assert main(["serve", str(write_config()), *uds, *argv]) == 2
    assert capsys.readouterr().err == (
        f"mtasts-host: error: {argv[0]}: only the background doctor uses it: "
        "give --doctor-interval too\n"
    )


def test_serve_names_every_doctor_option_given_without_an_interval(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    uds = ["--uds", str(tmp_path / "missing" / "mtasts.sock")]
    argv = ["--ehlo", "doctor.example.net", "--smtp-port", "2525"]
    assert main(["serve", str(write_config()), *uds, *argv]) == 2
    assert capsys.readouterr().err == (
        "mtasts-host: error: --smtp-port, --ehlo: only the background doctor uses them: "
        "give --doctor-interval too\n"
    )


def test_serve_takes_doctor_options_with_the_interval_from_the_environment(
    write_config: WriteConfig, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The options are checked as the doctor starts: a bad --ca-file is refused there.
    monkeypatch.setenv("MTASTS_HOST_DOCTOR_INTERVAL", "1h")
    port = str(free_port())
    argv = ["serve", str(write_config()), "--port", port, "--ca-file", "/nonexistent/ca.pem"]
    assert _main_keeping_signals(argv) == 2
    assert (
        capsys.readouterr()
        .err.splitlines()[-1]
        .startswith("mtasts-host: error: --ca-file /nonexistent/ca.pem: ")
    )


def test_options_are_never_abbreviated(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The doctor's --timeout given to serve set --timeout-keep-alive instead, silently.
    uds = ["--uds", str(tmp_path / "missing" / "mtasts.sock")]
    assert main(["serve", str(write_config()), *uds, "--timeout", "10"]) == 2
    assert capsys.readouterr().err == "mtasts-host: error: unrecognized arguments: --timeout 10\n"


@pytest.mark.parametrize(
    ("command", "shows"),
    [
        (["serve"], "[--log-format {text,json}]"),
        (["serve"], "[--port PORT]"),
        (["serve"], "[--https-port PORT]"),
        (["doctor"], "[--format {text,json}]"),
        (["dns"], "[--format {zone,json,hosts}]"),
        (["reports"], "[--format {text,json}]"),
    ],
)
def test_help_shows_what_to_type(
    capsys: pytest.CaptureFixture[str], command: list[str], shows: str
) -> None:
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert shows in " ".join(capsys.readouterr().out.split())


def test_help_gives_one_default_per_option(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["serve", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert (
        "--limit-concurrency N answer 503 beyond this many connections and requests handled "
        "at once (default: no limit; MTASTS_HOST_LIMIT_CONCURRENCY)"
    ) in out


@pytest.mark.parametrize(
    "command", [["serve"], ["check"], ["dns"], ["doctor"], ["publish"], ["reports"]]
)
def test_help_has_one_parenthesis_per_option(
    capsys: pytest.CaptureFixture[str], command: list[str]
) -> None:
    # "(default: no limit) (MTASTS_HOST_LIMIT_CONCURRENCY)": the default and the variable
    # go in one.
    with pytest.raises(SystemExit):
        main([*command, "--help"])
    assert ") (" not in " ".join(capsys.readouterr().out.split())


def test_reports_ingest_help_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["reports", "ingest", "--help"])
    out = capsys.readouterr().out
    assert "\nstore the TLS reports in mail messages, report files or a maildir\n" in out


def test_reports_ingest_of_a_file_that_is_not_there_is_66(
    write_config: WriteConfig, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # EX_NOINPUT, not EX_DATAERR: no bad report came, and retrying (75) would not help.
    path = write_config(CONFIG_D + f"reports: {{store: 'sqlite:///{tmp_path / 'r.db'}'}}\n")
    missing = tmp_path / "missing.json"
    assert main(["reports", "ingest", "--config", str(path), str(missing)]) == 66
    assert capsys.readouterr().err == f"{missing}: No such file or directory\n"


@pytest.mark.parametrize("command", ["check", "dns"])
def test_a_reader_that_goes_away_is_no_traceback(write_config: WriteConfig, command: str) -> None:
    # `mtasts-host dns | head -1` ended in a BrokenPipeError traceback, and exit status 1.
    lines = [f"  d{n}.example.com: {{mode: testing, mx: mx.example.com}}" for n in range(5000)]
    path = write_config("domains:\n" + "\n".join(lines) + "\n")
    with subprocess.Popen(
        [sys.executable, "-m", "mtasts_host", command, str(path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        # More than a pipe holds: the command is still writing when the reader goes away.
        assert process.stdout.readline().startswith((b"d0.", b"_mta-sts.d0."))
        process.stdout.close()
        assert process.stderr.read() == b""
        assert process.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports it


@pytest.mark.parametrize("command", ["check", "dns"])
def test_output_that_cannot_be_written_is_one_line(write_config: WriteConfig, command: str) -> None:
    # `mtasts-host dns > zone.txt` on a full disk ended in an OSError traceback.
    argv = [sys.executable, "-m", "mtasts_host", command, str(write_config())]
    with open("/dev/full", "wb") as full:
        ran = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, check=False)
    assert (ran.returncode, ran.stderr) == (
        74,
        b"mtasts-host: error: cannot write the output: No space left on device\n",
    )


def test_a_closed_standard_output_is_no_traceback(write_config: WriteConfig) -> None:
    # Started with it closed (a supervisor's `>&-`), sys.stdout is None: flushing it raised.
    argv = ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "mtasts_host"]
    ran = subprocess.run([*argv, "check", str(write_config())], capture_output=True, check=False)
    assert (ran.returncode, ran.stderr) == (0, b"")


def test_a_closed_standard_output_is_no_traceback_for_the_reports_summary(
    write_config: WriteConfig, tmp_path: Path
) -> None:
    # It wrote on sys.stdout, None then: an AttributeError traceback.
    store = f"reports: {{store: 'sqlite:///{tmp_path / 'r.db'}', retention_days: 36500}}\n"
    path = write_config(CONFIG_D + store)
    assert main(["reports", "ingest", "--config", str(path), str(REPORT)]) == 0
    argv = ["sh", "-c", 'exec "$@" >&-', "sh", sys.executable, "-m", "mtasts_host"]
    ran = subprocess.run(
        [*argv, "reports", "--config", str(path)], capture_output=True, check=False
    )
    assert (ran.returncode, ran.stderr) == (0, b"")


def test_a_closed_standard_error_keeps_errors_out_of_the_output(write_config: WriteConfig) -> None:
    # sys.stderr is None then, and print(file=None) prints on standard output: the error went
    # into `dns > zone.txt`.
    argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", sys.executable, "-m", "mtasts_host"]
    path = write_config("domains: {x: 1}\n")
    ran = subprocess.run([*argv, "dns", str(path)], stdout=subprocess.PIPE, check=False)
    assert (ran.returncode, ran.stdout) == (1, b"")


def test_help_gives_whole_seconds_as_the_readme_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["doctor", "--help"])
    assert "(default: 10; MTASTS_HOST_TIMEOUT)" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["--nope"], {}, "unrecognized arguments: --nope"),
        ([], {"MAILDIR": ""}, "MTASTS_HOST_MAILDIR: expected a value, got ''"),
        ([], {}, "no configuration file: give --config PATH or set MTASTS_HOST_CONFIG"),
    ],
    ids=["option", "variable", "no-config"],
)
def test_a_usage_error_of_reports_ingest_is_75_for_the_mail_system_to_retry(
    argv: list[str],
    environ: dict[str, str],
    message: str | None,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A mistake in the pipe's command line in master.cf bounced every report (exit 2) where
    # an invalid configuration (75) has Postfix keep them until it is fixed.
    monkeypatch.delenv("MTASTS_HOST_CONFIG", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(f"MTASTS_HOST_{name}", value)
    assert main(["reports", "ingest", *argv]) == 75
    err = capsys.readouterr().err
    assert err.startswith("mtasts-host: error: ")
    if message is not None:
        assert err == f"mtasts-host: error: {message}\n"
    assert main(["reports", *argv]) == 2  # the summary is no mail pipe


SEARCH_A_B = (
    "/etc/resolv.conf: a 'domain' or 'search' name is not a DNS name (A DNS label is empty)"
)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], f"{SEARCH_A_B}; give --resolver", id="resolv-conf"),
        # dnspython reads the host name for a resolver given its server too.
        pytest.param(
            ["--resolver", "127.0.0.1"],
            "this machine's host name 'a..b' is not a DNS name (A DNS label is empty)",
            id="host-name",
        ),
    ],
)
def test_doctor_without_a_usable_system_resolver_says_why_in_one_line(
    write_config: WriteConfig,
    resolv_conf: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    resolv_conf.write_text("nameserver 127.0.0.1\nsearch a..b\n")
    if argv:
        monkeypatch.setattr(socket, "gethostname", lambda: "a..b")
    assert main(["doctor", str(write_config()), *argv]) == 2
    assert capsys.readouterr() == ("", f"mtasts-host: error: {message}\n")


def test_serve_with_the_doctor_and_no_usable_system_resolver_says_why_in_one_line(
    write_config: WriteConfig, resolv_conf: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    resolv_conf.write_text("nameserver dns.example\n")
    argv = ["serve", str(write_config()), "--port", str(free_port()), "--doctor-interval", "1h"]
    assert _main_keeping_signals(argv) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        "mtasts-host: error: /etc/resolv.conf: nameserver dns.example is not a "
        "dns.nameserver.Nameserver instance or text form, IP address, nor a valid https URL; "
        "give --resolver"
    )


@pytest.mark.parametrize(
    ("command", "block"),
    [
        (["doctor"], ""),
        (["publish"], "publish: {command: /bin/true}\n"),
        (["reports"], "reports: {store: 'sqlite:////nonexistent/r.db'}\n"),
    ],
    ids=["doctor", "publish", "reports"],
)
def test_a_domain_not_configured_from_the_environment_names_the_variable(
    command: list[str],
    block: str,
    write_config: WriteConfig,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said "--domain 'nope.example'" to an operator who had typed no --domain.
    path = write_config(CONFIG_D + block)
    monkeypatch.setenv("MTASTS_HOST_CONFIG", str(path))
    monkeypatch.setenv("MTASTS_HOST_DOMAIN", "nope.example")
    assert main(command) == 2
    assert capsys.readouterr() == (
        "",
        f"mtasts-host: error: MTASTS_HOST_DOMAIN 'nope.example': not configured in {path}\n",
    )
    assert main([*command, "--domain", "nope.example"]) == 2
    assert capsys.readouterr().err == (
        f"mtasts-host: error: --domain 'nope.example': not configured in {path}\n"
    )


@pytest.mark.parametrize(
    "argv", [["doctor"], ["serve", "--doctor-interval", "1h"]], ids=["doctor", "serve"]
)
def test_a_ca_file_from_the_environment_that_cannot_work_names_the_variable(
    argv: list[str],
    write_config: WriteConfig,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # It said "--ca-file ..." to an operator who had typed no --ca-file.
    missing = tmp_path / "ca.pem"
    monkeypatch.setenv("MTASTS_HOST_CA_FILE", str(missing))
    port = ["--port", str(free_port())] if argv[0] == "serve" else []
    assert _main_keeping_signals([*argv, str(write_config()), *port]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"mtasts-host: error: MTASTS_HOST_CA_FILE {missing}: No such file or directory"
    )


def test_serve_started_with_standard_error_closed_ends_as_sigterm_asks(
    write_config: WriteConfig,
) -> None:
    # When serve bound its port after the file loaded, a socket took the free number 2 and
    # libuv (uvloop) aborted as it closed it: SIGABRT. Now the listening socket would take
    # it, which uvloop serves on a copy of; /dev/null is put there first all the same (see
    # test_a_closed_standard_error_keeps_errors_out_of_the_output), and serve still serves.
    port = free_port()
    argv = ["sh", "-c", 'exec "$@" 2>&-', "sh", *serve_argv(write_config(), port)]
    with subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL) as process:
        try:
            wait_for_answer("127.0.0.1", port, process)
        finally:
            process.terminate()
        assert process.wait(timeout=30) == -signal.SIGTERM


def _main_keeping_signals(argv: list[str]) -> int:
    """``main(argv)``, for a ``serve`` in this process: its signal handlers put back after."""
    before = signal.getsignal(signal.SIGHUP), signal.getsignal(signal.SIGTERM)
    try:
        return main(argv)
    finally:
        signal.signal(signal.SIGHUP, before[0])
        signal.signal(signal.SIGTERM, before[1])
