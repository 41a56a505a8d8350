"""Exceptions raised by lkchaos outside Chaos Toolkit activities.

Exception tree::

    LkChaosError                  base of everything lkchaos raises itself
    ├── ConfigError               a setting is missing or malformed
    ├── PrerequisiteError         a tool the command needs is missing (docker, go, debootstrap)
    ├── CommandFailed             an external command exited non-zero (carries its output)
    └── StackError                the reference stack is down, unhealthy or cannot be built
        └── ServiceUnhealthy      one service failed; carries its name and last log lines

Inside activities (probes and actions) failures are raised as Chaos Toolkit's
``chaoslib.exceptions.ActivityFailed`` with a message that says what to do, chained with
``from`` to the underlying error.
"""

from __future__ import annotations

from collections.abc import Sequence


class LkChaosError(Exception):
    """Base class of every error lkchaos raises outside activities."""


class ConfigError(LkChaosError):
    """A setting is missing or malformed."""


class PrerequisiteError(LkChaosError):
    """A program or package that the command needs is not installed."""


class CommandFailed(LkChaosError):
    """An external command exited with a non-zero status."""

    def __init__(self, argv: Sequence[str], returncode: int, output: str, hint: str = "") -> None:
        self.argv = list(argv)
        self.returncode = returncode
        self.output = output
        tail = "\n".join(output.strip().splitlines()[-20:])
        message = f"`{' '.join(self.argv)}` exited with status {returncode}"
        if tail:
            message += f":\n{tail}"
        if hint:
            message += f"\n{hint}"
        super().__init__(message)


class StackError(LkChaosError):
    """The reference stack is down, unhealthy, or cannot be built."""


class ServiceUnhealthy(StackError):
    """One service of the stack failed to become healthy."""

    def __init__(self, service: str, state: str, logs: str, hint: str = "") -> None:
        self.service = service
        self.state = state
        self.logs = logs
        message = f"service {service!r} is {state}"
        if hint:
            message += f": {hint}"
        if logs.strip():
            message += f"\n--- last log lines of {service} ---\n{logs.rstrip()}"
        super().__init__(message)
