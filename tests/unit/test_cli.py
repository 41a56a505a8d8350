"""The CLI's error paths: clear messages and the right exit codes, without Docker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from lkchaos import __version__
from lkchaos.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LKCHAOS_ROOT", str(ROOT))
    # An engine that cannot be there: every Docker call fails fast.
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    return CliRunner()


def test_version(runner: CliRunner) -> None:
    result = runner.invoke(main, ["--version"])
    assert result.exit_code == 0 and __version__ in result.output


def test_unknown_service_for_logs_is_a_usage_error(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stack", "logs", "nginx"])
    assert result.exit_code == 2
    assert "unknown service(s): nginx" in result.output
    assert "livekit-1" in result.output  # it lists the services that exist


def test_status_without_an_engine_says_how_to_start_one(runner: CliRunner) -> None:
    result = runner.invoke(main, ["stack", "status"])
    assert result.exit_code == 1
    assert "cannot reach the Docker engine" in result.output
    assert "docker info" in result.output


def test_up_without_an_engine_fails_before_touching_anything(
    runner: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    result = runner.invoke(main, ["stack", "up", "--no-build"])
    assert result.exit_code == 1
    assert "cannot reach the Docker engine" in result.output
    assert not (tmp_path / "state").exists()


def test_outside_a_checkout_the_error_says_where_to_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lkchaos import checkout

    monkeypatch.delenv("LKCHAOS_ROOT", raising=False)
    monkeypatch.setattr(checkout, "package_checkout", lambda: None)  # installed from an index
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["stack", "down"])
    assert result.exit_code == 2
    assert "docker-compose.chaos.yml not found" in result.output
    assert "LKCHAOS_ROOT" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["stack", "up", "--timeout", "0"], "0.0 is not in the range x>=1"),
        (["stack", "logs", "--tail", "-3"], "-3 is not in the range x>=1"),
        (["stack", "explode"], "No such command 'explode'"),
    ],
)
def test_bad_arguments_are_usage_errors(runner: CliRunner, args: list[str], message: str) -> None:
    result = runner.invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


CRASH = """
import ctypes
from lkchaos import cli

@cli.main.command()
def crash() -> None:
    ctypes.string_at(0)  # a native crash: reads address 0

cli.main(["crash"])
"""


def test_a_native_crash_says_where_it_was() -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONFAULTHANDLER"}
    done = subprocess.run([sys.executable, "-c", CRASH], capture_output=True, text=True,
                          env=env, timeout=60, check=False)  # fmt: skip
    assert done.returncode < 0, (done.returncode, done.stderr)  # ended by the signal
    assert "Fatal Python error: Segmentation fault" in done.stderr, done.stderr
    assert "line 7 in crash" in done.stderr, done.stderr
