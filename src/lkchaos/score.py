"""The resilience score of an experiment run and of a game day, 0-100 (see docs/score.md).

An experiment run's score is a weighted mean of three parts, each 0-1:

- ``hypothesis`` (H): 1 if the run completed and did not deviate, else 0. A run whose status
  is ``failed``, ``aborted`` or ``interrupted``, or whose steady state did not hold before
  the method (Chaos Toolkit then skips the method yet says ``completed``), tested nothing:
  it scores 0 overall.
- ``availability`` (A): the mean over the sampled probes of their availability over the run;
  left out (weights renormalised) when the run sampled nothing.
- ``rto`` (R): the mean over the sampled probes whose fault ended (their ``rto_s`` is known)
  of 1 if it recovered within its bound, ``bound / rto_s`` if slower, 0 if it never
  recovered; with no bound, 1 if recovered else 0. Left out when no fault ended.

Default weights H 0.5, A 0.25, R 0.25. An experiment may set them, its RTO bound and its
weight in a game day in its ``extensions``::

    "extensions": [{"name": "lkchaos", "rto_bound_s": 30,
                    "score": {"weights": {"hypothesis": 0.6, "availability": 0.2, "rto": 0.2},
                              "weight": 2}}]

Then the staleness factor: a run that ended more than ``fresh_days`` ago (default 7,
``$LKCHAOS_SCORE_FRESH_DAYS``) counts for less, ``0.5 ** ((age_days - fresh_days) /
half_life_days)`` (half life 7 days, ``$LKCHAOS_SCORE_HALF_LIFE_DAYS``).

A game day's score is the weighted mean of its entries' scores; an entry that did not run
counts 0. An entry scores as the game day judged it where that is worse than its journal:
one the game day interrupted (its timeout, Ctrl-C) tested nothing and scores 0; one after
which the deployment was not back at its baseline (``not_recovered``) did not hold, so its
``hypothesis`` part is 0.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lkchaos.errors import ConfigError

__all__ = [
    "DEFAULT_WEIGHTS", "Score", "decayed", "experiment_score", "gameday_score",
    "rto_bound_s", "rto_bounds", "staleness",
]  # fmt: skip

DEFAULT_WEIGHTS: Mapping[str, float] = {"hypothesis": 0.5, "availability": 0.25, "rto": 0.25}
_ALIASES = {"h": "hypothesis", "a": "availability", "r": "rto"}
FRESH_DAYS_ENV = "LKCHAOS_SCORE_FRESH_DAYS"
HALF_LIFE_ENV = "LKCHAOS_SCORE_HALF_LIFE_DAYS"
_NOT_RUN = ("failed", "aborted", "interrupted")
_RECOVERY = ("lkchaos.controls.probes", "recovery")


@dataclass(frozen=True)
class Score:
    """A run's score: ``value`` 0-100 (rounded to 0.1, staleness applied); ``parts`` maps
    ``hypothesis``, ``availability``, ``rto`` to 0-1 or None (left out) and ``staleness`` to
    its factor; ``weight`` is the experiment's weight in a game day."""

    value: float
    parts: dict[str, float | None] = field(hash=False)
    weight: float
    explanation: str


def _extension(experiment: Mapping[str, Any]) -> Mapping[str, Any]:
    for item in experiment.get("extensions") or []:
        if isinstance(item, Mapping) and item.get("name") == "lkchaos":
            return item
    return {}


def _number(value: Any, what: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a number, not {value!r}")
    if value < 0 or (positive and value == 0):
        raise ConfigError(f"{what} must be {'> 0' if positive else '>= 0'}, not {value!r}")
    return float(value)


def _recovery_bounds(experiment: Mapping[str, Any]) -> dict[str, float]:
    """Upper bound of each ``recovery`` probe's range tolerance on ``rto_s``, per sampled
    probe it names (the strictest when several name the same probe)."""
    activities = list((experiment.get("steady-state-hypothesis") or {}).get("probes") or [])
    activities += list(experiment.get("method") or [])
    bounds: dict[str, float] = {}
    for activity in activities:
        if not isinstance(activity, Mapping):
            continue
        provider = activity.get("provider") or {}
        if (provider.get("module"), provider.get("func")) != _RECOVERY:
            continue
        tolerance = activity.get("tolerance")
        probe = (provider.get("arguments") or {}).get("probe")
        if not isinstance(tolerance, Mapping) or not isinstance(probe, str):
            continue
        window = tolerance.get("range")
        if (tolerance.get("type") != "range" or tolerance.get("target") != "rto_s"
                or not isinstance(window, list) or len(window) != 2):  # fmt: skip
            continue
        upper = window[1]
        if isinstance(upper, int | float) and not isinstance(upper, bool) and upper > 0:
            bounds[probe] = min(float(upper), bounds.get(probe, math.inf))
    return bounds


def rto_bound_s(experiment: Mapping[str, Any]) -> float | None:
    """The experiment's RTO bound in seconds: its ``lkchaos`` extension's ``rto_bound_s``,
    else the largest bound of its ``lkchaos.controls.probes.recovery`` probes' ``range``
    tolerances on ``rto_s`` (everything must be back within it), else None. Raises
    ``ConfigError`` for a bound that is not a number > 0."""
    extension = _extension(experiment)
    if "rto_bound_s" in extension:
        return _number(extension["rto_bound_s"], "extensions lkchaos rto_bound_s", positive=True)
    bounds = _recovery_bounds(experiment)
    return max(bounds.values()) if bounds else None


def rto_bounds(experiment: Mapping[str, Any], probes: Sequence[str]) -> dict[str, float | None]:
    """The bound applied to each sampled probe: the extension's ``rto_bound_s`` for all,
    else the bound of the recovery probe naming it, else :func:`rto_bound_s`."""
    overall = rto_bound_s(experiment)
    if "rto_bound_s" in _extension(experiment):
        return dict.fromkeys(probes, overall)
    own = _recovery_bounds(experiment)
    return {probe: own.get(probe, overall) for probe in probes}


def _weights(experiment: Mapping[str, Any]) -> tuple[dict[str, float], float]:
    score = _extension(experiment).get("score") or {}
    if not isinstance(score, Mapping):
        raise ConfigError("extensions lkchaos score must be a mapping")
    weights = dict(DEFAULT_WEIGHTS)
    given = score.get("weights") or {}
    if not isinstance(given, Mapping):
        raise ConfigError("extensions lkchaos score weights must be a mapping")
    for key, value in given.items():
        name = _ALIASES.get(str(key).lower(), str(key))
        if name not in DEFAULT_WEIGHTS:
            raise ConfigError(f"unknown score weight {key!r}: use hypothesis, availability, rto")
        weights[name] = _number(value, f"score weight {key!r}")
    if sum(weights.values()) <= 0:
        raise ConfigError("the score weights must not all be 0")
    weight = _number(score.get("weight", 1.0), "extensions lkchaos score weight")
    return weights, weight


def _env_days(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or not raw.strip():
        return default
    try:
        return _number(float(raw), name, positive=name == HALF_LIFE_ENV)
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} is not a number of days") from exc


def staleness(
    age_days: float, *, fresh_days: float | None = None, half_life_days: float | None = None
) -> float:
    """The factor (0-1] of a run ``age_days`` old: 1 up to ``fresh_days``, then halved every
    ``half_life_days`` (defaults from the environment, else 7 and 7). Raises ``ConfigError``
    for a bad environment value."""
    fresh = _env_days(FRESH_DAYS_ENV, 7.0) if fresh_days is None else fresh_days
    half = _env_days(HALF_LIFE_ENV, 7.0) if half_life_days is None else half_life_days
    if half <= 0:
        raise ConfigError(f"the half life must be > 0 days, not {half!r}")
    if age_days <= fresh:
        return 1.0
    return float(0.5 ** ((age_days - fresh) / half))


def decayed(value: float, ended_at: dt.datetime, now: dt.datetime | None = None) -> float:
    """A score recorded when its run ended, decayed to ``now`` (0-100, rounded to 0.1)."""
    now = now or dt.datetime.now(dt.UTC)
    age_days = max(0.0, (now - ended_at).total_seconds() / 86400.0)
    return round(value * staleness(age_days), 1)


def journal_end(journal: Mapping[str, Any]) -> dt.datetime | None:
    """When the journaled run ended (else started), UTC if the journal's time is naive; None
    when it has neither time."""
    for key in ("end", "start"):
        raw = journal.get(key)
        if isinstance(raw, str):
            try:
                when = dt.datetime.fromisoformat(raw)
            except ValueError:
                continue
            return when if when.tzinfo else when.replace(tzinfo=dt.UTC)
    return None


def _why_not_run(journal: Mapping[str, Any]) -> str:
    status = str(journal.get("status"))
    safety = journal.get("lkchaos_safety") or {}
    reasons: list[str] = []
    if safety.get("refused"):
        reasons.append(f"refused before anything ran: {str(safety['refused']).splitlines()[0]}")
    reasons += [f"{item.get('type', 'action')} {item.get('activity')!r} failed: "
                f"{item.get('error')}" for item in safety.get("failed_actions") or []]
    reasons += [f"could not undo {item.get('fault')}" for item in safety.get("not_recovered") or []]
    if safety.get("error"):
        reasons.append(f"the safety control failed: {safety['error']}")
    sampling = (journal.get("lkchaos") or {}).get("sampling") or {}
    reasons += [f"{name} failed every sample before the fault"
                for name in sampling.get("not_steady_before_fault") or {}]
    because = f" ({'; '.join(reasons)})" if reasons else ""
    return f"the run {status}{because}: it tested nothing, so it scores 0"


def _parts(journal: Mapping[str, Any], experiment: Mapping[str, Any]) -> tuple[
        float | None, float | None, list[str]]:  # fmt: skip
    probes = (((journal.get("lkchaos") or {}).get("sampling") or {}).get("probes")) or {}
    figures = {name: p.get("figures") or {} for name, p in probes.items() if isinstance(p, Mapping)}
    notes: list[str] = []
    availabilities = [float(f["availability"]) for f in figures.values()
                      if isinstance(f.get("availability"), int | float)]  # fmt: skip
    availability = sum(availabilities) / len(availabilities) if availabilities else None
    bounds = rto_bounds(experiment, list(figures))
    rto_parts: list[float] = []
    for name, fig in figures.items():
        rto, bound = fig.get("rto_s"), bounds.get(name)
        if not isinstance(rto, int | float):
            continue
        if not fig.get("recovered", True):
            part = 0.0
            notes.append(f"{name} did not recover")
        elif bound is None or rto <= bound:
            part = 1.0
        else:
            part = bound / float(rto)
            notes.append(f"{name} recovered in {rto:g} s, over its {bound:g} s bound")
        rto_parts.append(part)
    rto_part = sum(rto_parts) / len(rto_parts) if rto_parts else None
    return availability, rto_part, notes


#: A game day entry's outcomes worse than its journal's verdict can be (``lkchaos.gameday``).
ENTRY_NOT_RECOVERED = "not_recovered"
ENTRY_INTERRUPTED = "interrupted"


def experiment_score(journal: Mapping[str, Any], *, now: dt.datetime | None = None,
                     entry_outcome: str | None = None) -> Score:  # fmt: skip
    """Score a Chaos Toolkit journal (see the module docstring). ``now`` (aware) sets the age
    for the staleness factor (default: the current time; the run's end time gives the score
    undecayed). ``entry_outcome``: the game day's verdict on the entry the run was
    (``not_recovered`` and ``interrupted`` lower the score, see the module docstring).
    Raises ``ConfigError`` for bad score settings in the experiment."""
    experiment = journal.get("experiment") or {}
    weights, weight = _weights(experiment)
    when = journal_end(journal)
    now = now or dt.datetime.now(dt.UTC)
    age_days = max(0.0, (now - when).total_seconds() / 86400.0) if when else 0.0
    factor = staleness(age_days)
    status = str(journal.get("status"))
    if status in _NOT_RUN or entry_outcome == ENTRY_INTERRUPTED:
        parts: dict[str, float | None] = {"hypothesis": 0.0, "availability": None, "rto": None,
                                          "staleness": factor}  # fmt: skip
        why = (_why_not_run(journal) if status in _NOT_RUN else "the game day interrupted "
               "this entry (its timeout, or a stop): it tested nothing, so it scores 0")
        return Score(0.0, parts, weight, why)
    before = (journal.get("steady_states") or {}).get("before")
    if isinstance(before, Mapping) and before.get("steady_state_met") is False:
        # Chaos Toolkit ends such a run "completed", not deviated, and exits 0.
        parts = {"hypothesis": 0.0, "availability": None, "rto": None, "staleness": factor}
        return Score(0.0, parts, weight, "the steady state did not hold before the method, "
                     "so the method never ran: it tested nothing, so it scores 0")
    not_back = entry_outcome == ENTRY_NOT_RECOVERED
    held = status == "completed" and not journal.get("deviated") and not not_back
    availability, rto_part, notes = _parts(journal, experiment)
    parts = {"hypothesis": 1.0 if held else 0.0, "availability": availability, "rto": rto_part}
    used = {k: weights[k] for k, v in parts.items() if v is not None and weights[k] > 0}
    raw = sum(w * float(parts[k] or 0.0) for k, w in used.items()) / sum(used.values()) \
        if used else 0.0
    value = round(100.0 * raw * factor, 1)
    parts["staleness"] = factor
    shown = ", ".join(f"{k} {parts[k]:.2f} (weight {w:g})" for k, w in used.items())
    left_out = [k for k in ("availability", "rto") if parts[k] is None]
    verdict = "held" if held else "deviated"
    if not_back:
        verdict = "not recovered (the deployment was not back at its baseline after it)"
    text = f"{verdict}: {shown}"
    if left_out:
        text += f"; left out (nothing measured): {', '.join(left_out)}"
    if notes:
        text += "; " + "; ".join(notes)
    if factor < 1.0:
        text += f"; {age_days:.1f} days old, staleness x{factor:.2f}"
    return Score(value, parts, weight, f"{text} -> {value:g}")


def gameday_score(entries: Sequence[tuple[Score | None, float]]) -> float:
    """Weighted mean (0-100, rounded to 0.1) of ``(score, weight)`` pairs, one per entry; a
    None score (the entry did not run) counts 0. 0.0 when the weights add up to 0. Raises
    ``ConfigError`` for a negative or non-numeric weight."""
    total = sum(_number(weight, "a game day entry's weight") for _, weight in entries)
    if total <= 0:
        return 0.0
    earned = sum((score.value if score is not None else 0.0) * float(weight)
                 for score, weight in entries)  # fmt: skip
    return round(earned / total, 1)
