"""One ``chaos run`` in a child process: the command, its environment, its settings file,
and the outcome read from its journal.

The child is the same installation's Chaos Toolkit (``sys.executable -m chaostoolkit``, so
neither ``PATH`` nor an activated virtualenv matters), started in its own process group so
that a Ctrl-C on the terminal reaches the game day runner alone, which forwards it once.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from lkchaos.errors import ConfigError
from lkchaos.gameday.model import FAULT_S

#: Controls declared at settings level for every run of a game day: name -> module.
CONTROLS = {
    "lkchaos-safety": "lkchaos.safety.control",
    "lkchaos-history": "lkchaos.controls.history",
    "lkchaos-progress": "lkchaos.controls.progress",
}
#: Environment variables through which the shipped experiments read their fault window
#: (each declares ``fault_s`` as ``{"type": "env", "key": "LKCHAOS_FAULT_S"}``).
FAULT_ENV = ("LKCHAOS_FAULT_S",)
#: Fault window in seconds with ``--ci`` when ``$LKCHAOS_FAULT_S`` is not set.
CI_FAULT_S = 8.0


def chaos_command() -> list[str]:
    """The argv prefix that runs this installation's ``chaos``."""
    return [sys.executable, "-m", "chaostoolkit", "--no-version-check", "--no-log-file"]


def user_settings_path(explicit: Path | None) -> Path:
    """The Chaos Toolkit settings file the user would get: ``explicit``, else
    ``~/.chaostoolkit/settings.yaml``."""
    return explicit or Path.home() / ".chaostoolkit" / "settings.yaml"


def merged_settings(user_file: Path | None) -> tuple[dict[str, Any], list[str]]:
    """The user's Chaos Toolkit settings with lkchaos's controls added at settings level,
    and notes on controls left out (their module is not installed). Raises ConfigError for a
    settings file that cannot be read."""
    path = user_settings_path(user_file)
    settings: dict[str, Any] = {}
    if path.is_file():
        try:
            loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read the Chaos Toolkit settings {path}: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"the Chaos Toolkit settings {path} are not a mapping")
        settings = dict(loaded or {})
    elif user_file is not None:
        raise ConfigError(f"no Chaos Toolkit settings file at {user_file}")
    controls = dict(settings.get("controls") or {})
    notes = []
    for name, module in CONTROLS.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except ImportError:
            found = False
        if not found:
            notes.append(f"control {module} is not installed: runs go without it")
            continue
        controls[name] = {"provider": {"type": "python", "module": module}}
    settings["controls"] = controls
    return settings, notes


def write_settings(settings: Mapping[str, Any], folder: Path) -> Path:
    """A private (0600) settings file in ``folder``: it may hold the user's credentials, so it
    is never written with the journals. The caller removes it."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix="gameday-settings-", suffix=".yaml", dir=folder)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(dict(settings), handle, sort_keys=False)
    return Path(name)


def var_arguments(configuration: Mapping[str, Any]) -> list[str]:
    """``--var`` options for Chaos Toolkit configuration overrides (typed for numbers)."""
    argv = []
    for key, value in configuration.items():
        if isinstance(value, bool):
            raise ConfigError(f"configuration {key}: true/false cannot be passed to chaos run; "
                              "write a string or a number")  # fmt: skip
        kind = ":int" if isinstance(value, int) else ":float" if isinstance(value, float) else ""
        argv += ["--var", f"{key}{kind}={value}"]
    return argv


def fault_window(entry_s: float | None, gameday_s: float | None, ci: bool,
                 env: Mapping[str, str]) -> float | None:  # fmt: skip
    """The fault window in seconds for one entry (None: the experiment's own default).

    The entry's ``fault_s``, else the game day's; with ``ci``, at most ``$LKCHAOS_FAULT_S``
    (else 8 s), and that when neither says. Raises ConfigError for a bad ``$LKCHAOS_FAULT_S``.
    """
    configured = entry_s if entry_s is not None else gameday_s
    given = fault_env(env)
    if not ci:
        return configured
    cap = given if given is not None else CI_FAULT_S
    return min(configured, cap) if configured is not None else cap


def fault_env(env: Mapping[str, str]) -> float | None:
    """``$LKCHAOS_FAULT_S`` in seconds, None when unset or empty. Checked with or without
    ``--ci``: the experiments of a game day read it for their fault windows. Raises
    ConfigError naming the variable for a value that is not a number in range."""
    raw = env.get("LKCHAOS_FAULT_S", "").strip()
    if not raw:
        return None
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"LKCHAOS_FAULT_S={raw!r} is not a number of seconds: fix or unset "
                          f"it") from exc
    low, high = FAULT_S
    if not low <= value <= high:  # also refuses nan
        raise ConfigError(f"LKCHAOS_FAULT_S={raw!r} is out of range: use a number of seconds "
                          f"from {low} to {high}, or unset it")
    return value


def environment(base: Mapping[str, str], *, fault_s: float | None, run_id: str | None,
                entry: str, journal: Path, progress: Path) -> dict[str, str]:  # fmt: skip
    """The child's environment: ``base`` plus the game day's variables."""
    env = dict(base)
    if fault_s is not None:
        text = f"{fault_s:g}"
        env.update(dict.fromkeys(FAULT_ENV, text))
    env.update(LKCHAOS_GAMEDAY_RUN_ID=run_id or "", LKCHAOS_GAMEDAY_ENTRY=entry,
               LKCHAOS_JOURNAL_PATH=str(journal), LKCHAOS_PROGRESS_FILE=str(progress))
    return env


def _last_error(run: Mapping[str, Any]) -> str:
    lines = [str(line).strip() for line in run.get("exception") or [] if str(line).strip()]
    return lines[-1] if lines else "failed"


def outcome(journal_path: Path, returncode: int | None) -> tuple[str, str]:
    """``(outcome, note)`` of a run from its journal: ``held``, ``deviated``, ``failed``,
    ``not_recovered`` (the safety control could not undo a fault) or ``interrupted``."""
    try:
        journal = json.loads(journal_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "failed", f"chaos run exited {returncode} without a journal (see its .log)"
    safety = journal.get("lkchaos_safety") or {}
    status = journal.get("status")
    if safety.get("not_recovered"):
        faults = ", ".join(str(item.get("fault")) for item in safety["not_recovered"])
        return "not_recovered", f"could not undo: {faults}; run `lkchaos recover`"
    if safety.get("refused"):
        refused = str(safety["refused"])
        listed = [str(p) for p in safety.get("problems") or []]
        first = refused.splitlines()[0] if refused.strip() else "refused"
        if listed and listed != [refused]:  # "X has 2 problem(s); nothing was run:" + each
            first = first.rstrip(":") + ": " + "; ".join(listed)
        return "failed", "refused before anything ran: " + first
    if status in ("interrupted", "aborted"):
        return "interrupted", f"the run was {status}"
    if status == "failed":
        failed = safety.get("failed_actions") or []
        if failed:
            return "failed", "; ".join(f"{f.get('activity')}: {f.get('error')}" for f in failed)
        errors = [f"{r.get('activity', {}).get('name')}: {_last_error(r)}"
                  for r in journal.get("run") or [] if r.get("status") == "failed"]
        if not errors and _unmet(journal):  # the safety control's verdict: nothing injected
            return "failed", "steady state not met: " + ", ".join(_missed(journal))
        return "failed", "; ".join(errors) or "the run failed"
    if journal.get("deviated") or _unmet(journal):
        return "deviated", "steady state not met: " + ", ".join(_missed(journal))
    if status == "completed":
        return "held", ""
    return "failed", f"unexpected status {status!r}"


def _unmet(journal: Mapping[str, Any]) -> bool:
    """A steady state that was not met. Chaos Toolkit ends a run whose hypothesis fails
    before the method with status ``completed`` and ``deviated`` false: only
    ``steady_states.before.steady_state_met`` says so."""
    states = journal.get("steady_states") or {}
    return any((states.get(phase) or {}).get("steady_state_met") is False
               for phase in ("before", "after"))


#: How much of a missed probe's output or error a note quotes (characters).
WHY_CHARS = 160


def _why(probe: Mapping[str, Any]) -> str:
    """What a steady-state probe that missed said: its error, else its output, cut short."""
    if probe.get("status") == "failed":
        why = _last_error(probe)
    else:
        why = "returned " + json.dumps(probe.get("output"), default=str)
    return why if len(why) <= WHY_CHARS else why[:WHY_CHARS - 3] + "..."


def _missed(journal: Mapping[str, Any]) -> list[str]:
    missed = []
    for phase in ("before", "after"):
        state = (journal.get("steady_states") or {}).get(phase) or {}
        missed += [f"{p.get('activity', {}).get('name')} ({phase}: {_why(p)})"
                   for p in state.get("probes") or [] if not p.get("tolerance_met", True)]
    safety = journal.get("lkchaos_safety") or {}
    missed += [f"{m.get('probe')} (method)" for m in safety.get("missed_tolerances") or []]
    return missed or ["see the journal"]
