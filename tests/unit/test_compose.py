"""Running external commands: missing programs, failures and timeouts are explained."""

from __future__ import annotations

import sys

import pytest

from lkchaos.errors import CommandFailed, PrerequisiteError
from lkchaos.stack.compose import run


def test_missing_program_is_a_prerequisite_error() -> None:
    with pytest.raises(PrerequisiteError, match="`no-such-program-x` is not installed"):
        run(["no-such-program-x"], timeout=5, hint="install it")


def test_failure_carries_exit_code_and_last_output() -> None:
    with pytest.raises(CommandFailed) as info:
        run([sys.executable, "-c", "print('boom'); raise SystemExit(3)"], timeout=10)
    assert info.value.returncode == 3
    assert "boom" in str(info.value)


def test_timeout_is_reported_with_the_hint() -> None:
    with pytest.raises(CommandFailed, match="timed out after 1 s. try later"):
        run([sys.executable, "-c", "import time; time.sleep(10)"], timeout=1, hint="try later")
