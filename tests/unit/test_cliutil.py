"""How the CLI turns errors into messages and exit codes."""

from __future__ import annotations

import click
import pytest
from chaoslib.exceptions import ActivityFailed
from click.testing import CliRunner

from lkchaos.cliutil import handle_errors
from lkchaos.errors import ConfigError, LkChaosError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad --steps: use 1,2,5"), 2),
        (LkChaosError("the stack is not running"), 1),
        # a command running an activity itself (a load ramp's prober calls): no traceback
        (ActivityFailed("the voice prober at http://127.0.0.1:1 did not answer"), 1),
    ],
)
def test_errors_are_a_message_and_an_exit_code(error: Exception, code: int) -> None:
    @click.command()
    @handle_errors
    def command() -> None:
        raise error

    result = CliRunner().invoke(command, [])
    assert result.exit_code == code
    assert f"error: {error}" in result.output
    assert "Traceback" not in result.output
