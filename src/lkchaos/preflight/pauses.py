"""Pauses: every activity's ``pauses.before`` and ``pauses.after`` must be a number of seconds
Chaos Toolkit can sleep once its ``${name}`` values are substituted.

Chaos Toolkit's own validation accepts any string for a pause and substitutes it only when the
activity runs: a pause that names no configuration key (``${faults_s}``), a value read from
the environment as text (``{"type": "env"}`` without ``"env_var_type": "float"``), or a
negative, infinite or not-a-number one ends the run in a traceback *after* the activity
before it ran, with its fault injected. Checked here with every activity of the experiment
(not only lkchaos's), before anything runs.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from chaoslib import substitute

from lkchaos.preflight.walk import _PLACEHOLDER, Problem, _activities, env_key

#: The longest pause accepted, in seconds (a day: a longer fault window is a mistake).
MAX_PAUSE_S = 86_400.0
KEYS = ("before", "after")


def _source(raw: Any, experiment: Mapping[str, Any]) -> str:
    """Where a ``${name}`` pause comes from, e.g. `` (configuration `fault_s`, from
    $LKCHAOS_FAULT_S)``; empty when it is not one."""
    names = _PLACEHOLDER.findall(raw) if isinstance(raw, str) else []
    if len(names) != 1:
        return ""
    key = env_key((experiment.get("configuration") or {}).get(names[0]))
    return f" (configuration `{names[0]}`" + (f", from ${key})" if key else ")")


def _why(
    raw: Any, value: Any, configuration: Mapping[str, Any], declared: Mapping[str, Any]
) -> str | None:
    """What is wrong with one pause (None: nothing, or reported already: a configuration key
    the experiment declares but that could not be loaded)."""
    if isinstance(value, str):
        unknown = [n for n in _PLACEHOLDER.findall(value) if n not in configuration]
        if any(n in declared for n in unknown):
            return None
        if unknown:
            have = ", ".join(sorted(configuration)) or "none"
            return (f"${{{unknown[0]}}} names no configuration key (the experiment's "
                    f"configuration has: {have})")
        if _PLACEHOLDER.search(raw if isinstance(raw, str) else ""):
            return (f"is the text {value!r}, not a number of seconds; a value read from the "
                    f"environment needs \"env_var_type\": \"float\" in its configuration "
                    f"entry")
        return "must be a number of seconds, or a ${name} of the configuration holding one"
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"must be a number of seconds, not {type(value).__name__}"
    if not math.isfinite(value) or value < 0 or value > MAX_PAUSE_S:
        return f"must be a number of seconds from 0 to {MAX_PAUSE_S:g} (a day), not {value!r}"
    return None


def check(
    experiment: Mapping[str, Any],
    configuration: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
) -> list[Problem]:
    """A problem for each pause of ``experiment`` that Chaos Toolkit could not sleep, with
    the configuration and secrets as loaded for the run."""
    config = dict(configuration or {})
    raw_config = experiment.get("configuration")
    declared = raw_config if isinstance(raw_config, Mapping) else {}
    problems = []
    for phase, activity in _activities(experiment):
        if not isinstance(activity, Mapping) or "ref" in activity or "pauses" not in activity:
            continue
        name = str(activity.get("name") or "?")
        pauses = activity["pauses"]
        if not isinstance(pauses, Mapping):
            problems.append(Problem(phase, name, "pauses", pauses,
                                    "must be an object such as {\"after\": \"${fault_s}\"} "
                                    "(seconds before and after the activity)"))  # fmt: skip
            continue
        for key in sorted(set(pauses) - set(KEYS)):
            problems.append(Problem(phase, name, f"pauses.{key}", pauses[key],
                                    "unknown pause: Chaos Toolkit has `before` and `after`"))
        for key in KEYS:
            raw = pauses.get(key)
            if raw is None:
                continue
            value = substitute(raw, config, dict(secrets or {}))
            why = _why(raw, value, config, declared)
            if why is not None:
                problems.append(Problem(phase, name, f"pauses.{key}", value,
                                        why + _source(raw, experiment)))  # fmt: skip
    return problems
