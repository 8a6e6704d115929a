"""Configuration errors of `sailplane`: one line naming the variable or flag, exit code 2,
found before any first-start work; `--version`, the worker names in `--help`, and progress
bars only on a terminal."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from sailplane import cli
from sailplane.cli import main
from sailplane.settings import ConfigurationError, Settings
from tests.services import free_port

CLEAN = ("DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SAILPLANE_LOG_FORMAT", "SAILPLANE_SMTP_PORT")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in CLEAN:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # a default data directory would be made here


def one_line_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    """Runs `sailplane ARGV`, checks exit code 2 and one line on stderr; returns the line."""
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (out, err)
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    return err.strip()


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SAILPLANE_SMTP_PORT", "twenty-five"),
        ("SAILPLANE_KAFKA_PARTITIONS", "3.5"),
        ("SAILPLANE_READ_YOUR_WRITES_TIMEOUT", "soon"),
        ("SAILPLANE_SCHEDULER_TICK", ""),
        ("SAILPLANE_WARM_CHILDREN", "two"),
    ],
)
def test_a_non_numeric_setting_names_its_variable(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError) as error:
        Settings.from_env({variable: value})
    assert str(error.value).startswith(f"{variable}: {value!r} is not")


def test_warm_children_default_to_two_zero_turns_them_off_and_below_zero_is_refused() -> None:
    assert Settings.from_env({}).warm_children == 2
    assert Settings.from_env({"SAILPLANE_WARM_CHILDREN": "0"}).warm_children == 0
    with pytest.raises(ConfigurationError, match=r"^SAILPLANE_WARM_CHILDREN: -1 is below 0$"):
        Settings.from_env({"SAILPLANE_WARM_CHILDREN": "-1"})


def test_a_non_numeric_smtp_port_is_one_line_and_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAILPLANE_SMTP_PORT", "abc")
    line = one_line_error(capsys, ["serve"])
    assert line == "sailplane: SAILPLANE_SMTP_PORT: 'abc' is not a whole number"


def test_a_malformed_database_url(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", "not a url")
    assert one_line_error(capsys, ["projections", "rebuild"]).startswith(
        "sailplane: DATABASE_URL: cannot use it:"
    )


def test_an_unreachable_database(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"postgresql://postgres@127.0.0.1:{free_port()}/x")
    line = one_line_error(capsys, ["events", "export"])
    assert line.startswith("sailplane: DATABASE_URL: cannot use it:") and "refused" in line


def test_an_unreachable_or_malformed_kafka(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")
    assert one_line_error(capsys, ["worker", "relay"]).startswith(
        "sailplane: KAFKA_BOOTSTRAP_SERVERS: no broker answers at 127.0.0.1:"
    )
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka-without-port")
    assert "'kafka-without-port' is not host:port" in one_line_error(capsys, ["worker", "relay"])


def test_an_unknown_worker_lists_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    line = one_line_error(capsys, ["worker", "nosuch"])
    assert line.startswith("sailplane: worker: unknown worker 'nosuch'; known: projections,")
    assert "dispatcher" in line and "scheduler" in line


def test_bad_flags_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert "--log-level" in one_line_error(capsys, ["--log-level", "loud", "serve"])
    assert "--port" in one_line_error(capsys, ["serve", "--port", "eighty"])
    assert "--port" in one_line_error(capsys, ["serve", "--port", "70000"])


def test_an_unknown_log_format(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SAILPLANE_LOG_FORMAT", "xml")
    assert one_line_error(capsys, ["serve"]).startswith("sailplane: SAILPLANE_LOG_FORMAT: 'xml'")


def test_a_port_in_use_is_found_before_any_first_start_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        data_dir = tmp_path / "data"
        line = one_line_error(capsys, ["serve", "--port", str(port), "--data-dir", str(data_dir)])
    assert line.startswith(f"sailplane: --port: cannot listen on 127.0.0.1:{port}")
    # Nothing was started or created: no embedded database, so no organization either.
    assert not data_dir.exists()


def test_version_and_the_worker_names_in_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as version:
        main(["--version"])
    assert version.value.code == 0
    assert capsys.readouterr().out.strip() == "sailplane 0.1.0"
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "run one worker: projections, relay, provisioner, notifier, dispatcher, scheduler" in (
        help_text
    )
    assert "exit codes:" in help_text


def test_progress_bars_only_on_a_terminal(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cli._bar("teams", 5, 10)
    assert capsys.readouterr().err == ""  # stderr is not a terminal here
    monkeypatch.setattr("sys.stderr.isatty", lambda: True)
    cli._bar("teams", 5, 10)
    assert "5/10" in capsys.readouterr().err
