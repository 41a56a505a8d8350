"""What the ``lkchaos`` commands share: one way to turn lkchaos errors into an exit status."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from lkchaos.errors import ConfigError, LkChaosError

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn lkchaos errors into a message on stderr and a non-zero exit: 2 for a
    :class:`ConfigError` (bad usage or configuration), 1 for any other :class:`LkChaosError`."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except LkChaosError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]
