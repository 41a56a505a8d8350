"""A fault is in effect when its action returns, or the action fails.

Every lkchaos action asks the backend it changed whether the change took (the resolver's new
answer, the toxic listed, the rule counted, the container's state, the certificate served),
polling for a bounded while, and raises :class:`NotInEffect` when it did not. Rollbacks verify
their undo the same way. The fault stays in the ledger on failure, so the safety control's
cleanup or ``lkchaos recover`` still undoes whatever part of it landed.

The wait is ``LKCHAOS_VERIFY_S`` seconds (10 by default) unless an action names its own.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

from chaoslib.exceptions import ActivityFailed

T = TypeVar("T")

#: Seconds an action waits for its effect by default.
DEFAULT_WAIT_S = 10.0
#: Seconds between two looks.
INTERVAL_S = 0.05


class NotInEffect(ActivityFailed):  # type: ignore[misc]
    """The action ran, but the backend does not show its effect within the wait."""


def wait_s() -> float:
    """The verification wait in seconds: ``LKCHAOS_VERIFY_S`` or :data:`DEFAULT_WAIT_S`."""
    raw = os.environ.get("LKCHAOS_VERIFY_S", "")
    try:
        value = float(raw) if raw else DEFAULT_WAIT_S
    except ValueError:
        value = DEFAULT_WAIT_S
    return value if value > 0 else DEFAULT_WAIT_S


def until(
    look: Callable[[], T],
    holds: Callable[[T], bool],
    what: str,
    wait: float | None = None,
    describe: Callable[[T], str] = repr,
    hint: str = "`lkchaos recover` undoes what was done",
) -> tuple[T, float]:
    """Call ``look`` until ``holds(result)``; returns the result and the seconds it took.

    ``look`` may raise: an exception counts as "not yet" and its message is kept as the last
    thing seen. Raises :class:`NotInEffect` naming ``what`` and the last thing seen after
    ``wait`` seconds (default :func:`wait_s`).
    """
    limit = wait_s() if wait is None else wait
    start = time.monotonic()
    last = "nothing (every look failed)"
    while True:
        try:
            seen = look()
        except Exception as exc:  # a backend not answering yet is "not yet", not a crash
            last = f"{type(exc).__name__}: {exc}"
        else:
            if holds(seen):
                return seen, time.monotonic() - start
            last = describe(seen)
        if time.monotonic() - start >= limit:
            raise NotInEffect(
                f"{what}: not in effect {limit:g} s after the action (last seen: {last}); "
                f"{hint}"
            )
        time.sleep(INTERVAL_S)
