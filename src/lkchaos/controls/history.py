"""A Chaos Toolkit control that records every run in the lkchaos run history.

Declare it in an experiment::

    "controls": [{"name": "lkchaos-history",
                  "provider": {"type": "python", "module": "lkchaos.controls.history"}}]

or for every experiment in Chaos Toolkit's settings (``~/.chaostoolkit/settings.yaml``)::

    controls:
      lkchaos-history:
        provider: {type: python, module: lkchaos.controls.history}

Declared both ways, it records once (to the URL of the first declaration Chaos Toolkit calls,
the settings' one). Argument: ``url`` (optional; else ``$LKCHAOS_HISTORY_URL``, else the
SQLite file in the state folder).

When: Chaos Toolkit calls the ``after_experiment_control`` hooks in declaration order and the
safety control may still change the status and ``deviated`` in its own. So this control only
keeps the journal there and writes the record in ``cleanup_control``, which Chaos Toolkit
calls after every hook and before ``chaos run`` writes the journal file: the note this
control adds lands in that file.

Recorded with the run: ``$LKCHAOS_GAMEDAY_RUN_ID``, ``$LKCHAOS_GAMEDAY_ENTRY``,
``$LKCHAOS_TARGET`` (the target file, docs/targets.md) and ``$LKCHAOS_JOURNAL_PATH`` when set,
and the experiment's file: Chaos Toolkit does not pass it to controls, so it is read from
``sys.argv`` when the process is ``chaos run`` (its last positional argument and
``--journal-path``), see :func:`run_arguments`. Run otherwise (``chaoslib`` called from
Python), the experiment path and journal path are unknown unless given in the environment.

A history that fails never changes the verdict nor stops the run: one ERROR line in Chaos
Toolkit's log, and ``journal["lkchaos"]["history"] = {"recorded": false, "run_id": null,
"url": <masked>, "error": ...}`` (``recorded: true`` and the run id on success).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lkchaos.errors import LkChaosError

__all__ = ["after_experiment_control", "cleanup_control", "run_arguments", "JOURNAL_KEY"]

logger = logging.getLogger("chaostoolkit")

#: Where the note goes: ``journal[JOURNAL_KEY[0]][JOURNAL_KEY[1]]``.
JOURNAL_KEY = ("lkchaos", "history")

#: ``chaos`` options taking a value, before and after the ``run`` command (chaostoolkit 1.19).
_GLOBAL_VALUED = {"--change-dir", "--log-file", "--log-file-level", "--log-format", "--settings"}
_RUN_VALUED = {"--journal-path", "--dry", "--rollback-strategy", "--var", "--var-file",
               "--control-file", "--hypothesis-strategy", "--hypothesis-frequency"}  # fmt: skip

_pending: dict[str, Any] = {}


def run_arguments(argv: Sequence[str]) -> tuple[str | None, str | None]:
    """(experiment source, ``--journal-path`` value) of a ``chaos [opts] run [opts] SOURCE``
    command line, as given (relative paths stay relative); (None, None) when ``argv`` is not
    ``chaos run`` (``chaos`` or ``python -m chaostoolkit``). Options are recognised as
    chaostoolkit 1.19 declares them, ``--opt value`` and ``--opt=value``; an unknown option
    is taken as a flag."""
    if not argv:
        return None, None
    program = Path(argv[0])
    if program.name not in ("chaos", "chaos.exe") and program.parent.name != "chaostoolkit":
        return None, None
    args, index, command = list(argv[1:]), 0, None
    source: str | None = None
    journal: str | None = None
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            if command == "run" and index < len(args):
                source = args[-1]
            break
        if arg.startswith("--"):
            name, has_value, value = arg.partition("=")
            valued = _RUN_VALUED if command == "run" else _GLOBAL_VALUED
            if name in valued and not has_value:
                value = args[index] if index < len(args) else ""
                index += 1
            if command == "run" and name == "--journal-path":
                journal = value
            continue
        if command is None:
            command = arg
            if command != "run":
                return None, None
        else:
            source = arg
    if command != "run":
        return None, None
    return source, journal


def _where() -> tuple[str | None, str | None]:
    """(experiment path, journal path): absolute where they are files."""
    source, journal = run_arguments(sys.argv)
    if source and "://" not in source:
        source = str(Path(source).resolve())
    if command_journal := journal:
        journal = str(Path(command_journal).resolve())
    elif source:
        journal = str(Path("journal.json").resolve())  # chaos run's default
    env_journal = os.environ.get("LKCHAOS_JOURNAL_PATH")
    return source, env_journal or journal


def after_experiment_control(
    context: dict[str, Any], state: dict[str, Any], url: str | None = None, **kwargs: Any
) -> None:
    """Keep the journal (recorded at cleanup, once the verdict is final)."""
    if _pending.get("journal") is state:
        return  # declared in the settings and in the experiment: record once
    _pending.clear()
    _pending.update(journal=state, url=url)


def cleanup_control(**kwargs: Any) -> None:
    """Record the journal kept by ``after_experiment_control``; never raises."""
    journal = _pending.pop("journal", None)
    url = _pending.pop("url", None)
    _pending.clear()
    if not isinstance(journal, dict):
        return
    try:
        note = _record(journal, url)
    except Exception as exc:  # the history must never change the run
        masked = _masked(url)
        error = str(exc) if isinstance(exc, LkChaosError) else (
            f"{type(exc).__name__}: {exc} (history at {masked})")
        note = {"recorded": False, "run_id": None, "url": masked, "error": error}
        logger.error(f"lkchaos: this run was NOT recorded in the run history: {error}")
    try:
        section = journal.get(JOURNAL_KEY[0])
        if not isinstance(section, dict):
            section = journal[JOURNAL_KEY[0]] = {}
        section[JOURNAL_KEY[1]] = note
    except Exception:  # pragma: no cover - a journal that refuses keys
        logger.debug("could not note the history record in the journal", exc_info=True)


def _masked(url: str | None) -> str:
    try:
        from lkchaos.history.connect import mask_url, resolve_url

        return mask_url(resolve_url(url))
    except Exception:
        return "(the history URL could not be resolved)"


def _record(journal: dict[str, Any], url: str | None) -> dict[str, Any]:
    from lkchaos.history import open_history

    experiment_path, journal_path = _where()
    with open_history(url) as history:
        run_id = history.record_run(
            journal, experiment_path=experiment_path, journal_path=journal_path,
            gameday_run_id=os.environ.get("LKCHAOS_GAMEDAY_RUN_ID") or None,
            entry=os.environ.get("LKCHAOS_GAMEDAY_ENTRY") or None,
            target=target_in_use(), livekit_version=_livekit_version(journal),
        )  # fmt: skip
        return {"recorded": True, "run_id": run_id, "url": history.url, "error": None}


def _livekit_version(journal: dict[str, Any]) -> str | None:
    """The LiveKit version the deployment records in its Redis (``livekit_version``), asked
    with a short timeout, when the journal (or ``$LKCHAOS_LIVEKIT_VERSION``) does not already
    say; None when it cannot be read (never a guess)."""
    from lkchaos.history import extract
    from lkchaos.livekit import keys
    from lkchaos.redis import client
    from lkchaos.settings import Settings

    if extract.livekit_version(journal) is not None:
        return None  # record_run takes it from the journal: no need to ask Redis

    try:
        with client.primary(Settings.load(), timeout=1.0) as r:
            raw = r.get(keys.VERSION)
    except Exception:  # the deployment may be down after a run: the record still goes in
        logger.debug("could not read LiveKit's version from Redis", exc_info=True)
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw or "")
    return keys.normalise(text) if text.strip() else None


def target_in_use() -> str | None:
    """The target file in use (its path, at most 200 characters), or None for none."""
    from lkchaos.settings import selected_target

    try:
        chosen = selected_target()
    except Exception:  # a broken target already failed the run; say what was asked for
        return (os.environ.get("LKCHAOS_TARGET") or "")[-200:] or None
    return None if chosen is None else str(chosen.path)[-200:]
