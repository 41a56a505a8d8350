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
    :class:`ConfigError` (bad usage or configuration), 1 for any other :class:`LkChaosError`
    and for an activity's ``ActivityFailed`` (a command that runs probes or actions itself:
    the deployment did not answer, or refused)."""
    from chaoslib.exceptions import ActivityFailed

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)
        except (LkChaosError, ActivityFailed) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


def _export_target(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        import os
        from pathlib import Path

        from lkchaos.target.select import ENV

        os.environ[ENV] = str(Path(value).expanduser().resolve())


def target_option(fn: F) -> F:
    """``--target FILE`` for a command whose work runs in child processes too (game days,
    load ramps): the file is exported as ``$LKCHAOS_TARGET`` for this process and every
    `chaos run` it starts, so that it wins over an experiment's own ``lkchaos_target``."""
    option = click.option(
        "--target", type=click.Path(exists=True, dir_okay=False), expose_value=False,
        callback=_export_target, is_eager=True,
        help="The target file (else $LKCHAOS_TARGET, else, for an experiment, its "
             "lkchaos_target, else the reference stack's); see docs/targets.md.",
    )  # fmt: skip
    return option(fn)
