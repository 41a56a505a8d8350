"""The gate at the start of a run: whichever lkchaos control starts first checks the
experiment (``lkchaos.preflight``), once per experiment, before it does anything else.

Both lkchaos controls call :func:`check` first thing in ``before_experiment_control``: the
safety control and the sampling control, in whatever order an experiment declares them, so
no probe is sampled and no lock is taken for an experiment that is refused. The outcome is
kept for the experiment object Chaos Toolkit passes to every hook, so the check runs once.

A refused run is ended with :class:`Refused`, a ``SystemExit`` with code 30: Chaos Toolkit
marks the run ``interrupted``, writes the journal, makes ``chaos run`` exit 1, and, unlike
for ``InterruptExecution``, plays no rollback whatever the rollback strategy (nothing ran, so
there is nothing to roll back, and a rollback would itself change the deployment). The
problems are logged at CRITICAL; the safety control writes them into the journal's
``lkchaos_safety`` section (``refused``, ``problems``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from chaoslib.exceptions import InterruptExecution

from lkchaos.safety import audit

logger = logging.getLogger("chaostoolkit")

#: Chaos Toolkit's exit code for "stop now and play no rollback" (chaoslib.run).
NO_ROLLBACK_EXIT_CODE = 30

#: The experiment last checked and its outcome: ``{"experiment": obj, "refusal": str|None}``.
_memo: dict[str, Any] = {}


class Refused(SystemExit):
    """The run is refused before anything ran; Chaos Toolkit plays no rollback for it."""

    def __init__(self, message: str) -> None:
        super().__init__(NO_ROLLBACK_EXIT_CODE)
        self.message = message

    def __str__(self) -> str:
        return self.message


def _secrets(configuration: Mapping[str, Any] | None, secrets: Mapping[str, Any] | None
             ) -> set[str]:  # fmt: skip
    from lkchaos.settings import Settings

    try:
        settings = Settings.load(dict(configuration or {}), dict(secrets or {}))
    except Exception:  # the settings may be what is wrong: mask what is known
        return audit.known_secrets()
    audit.register_settings(settings)
    return audit.known_secrets(settings.state_dir)


def refuse(
    experiment: Any, message: str, configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> NoReturn:  # fmt: skip
    """Log ``message`` at CRITICAL, remember it for ``experiment`` and end the run with
    :class:`Refused` (no rollback is played)."""
    message = str(audit.scrub(message, _secrets(configuration, secrets)))
    _memo.clear()
    _memo.update(experiment=experiment, refusal=message)
    logger.critical(f"lkchaos refused the run, so nothing ran and no rollback is played: "
                    f"{message}")  # fmt: skip
    raise Refused(message)


def check(
    experiment: Any, configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> None:  # fmt: skip
    """The preflight check of ``experiment``, once: refuse the run (:func:`refuse`) when it
    finds problems or cannot run; later calls for the same experiment object repeat the
    outcome without checking again."""
    if _memo.get("experiment") is experiment:
        if _memo.get("refusal") is not None:
            raise Refused(str(_memo["refusal"]))
        return
    from lkchaos import preflight

    try:
        preflight.check_or_raise(experiment, configuration, secrets)
    except InterruptExecution as exc:
        refuse(experiment, str(exc), configuration, secrets)
    except Exception as exc:
        refuse(experiment, f"the lkchaos preflight check could not run ({type(exc).__name__}: "
               f"{exc}); nothing was run. Fix the cause and run the experiment again.",
               configuration, secrets)  # fmt: skip
    _memo.clear()
    _memo.update(experiment=experiment, refusal=None)


def refusal(experiment: Any) -> str | None:
    """Why ``experiment``'s run was refused, or None if it was not."""
    if _memo.get("experiment") is experiment:
        found = _memo.get("refusal")
        return None if found is None else str(found)
    return None


def problems(message: str) -> list[str]:
    """The listed problems of a refusal message (its ``  - `` lines), else the message."""
    listed = [line[4:] for line in message.splitlines() if line.startswith("  - ")]
    return listed or [message]


def forget() -> None:
    """Drop the remembered outcome (at the end of a run)."""
    _memo.clear()
