"""The sampling control's arguments: parsed and checked once, before any probe runs.

Every problem raises Chaos Toolkit's ``InvalidControl`` with a message that names the
argument (``probes[1] ('room-api'): interval_s must be ...``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any

from chaoslib.activity import ensure_activity_is_valid
from chaoslib.exceptions import ChaosException, InvalidControl
from chaoslib.hypothesis import ensure_hypothesis_tolerance_is_valid

from lkchaos.discovery import wrong_kind

#: Options of the control, with their defaults (``probes`` is required).
DEFAULTS: dict[str, Any] = {
    "max_samples": 20000,
    "max_duration_s": 3600.0,
    "start": "experiment",
    "stop": "experiment",
    "fault_end": "last_action",
    "fault_actions": None,
    "baseline_s": 0.0,
    "tail_s": 0.0,
    "settle_s": 0.0,
    "join_timeout_s": 1.0,
}
CHOICES: dict[str, tuple[str, ...]] = {
    "start": ("experiment", "method"),
    "stop": ("experiment", "method"),
    "fault_end": ("last_action", "rollbacks"),
}
#: Keys a sampled probe may have: a steady-state probe's, plus the sampler's own.
PROBE_KEYS = ("type", "name", "provider", "tolerance", "interval_s", "summary_keys")
DEFAULT_INTERVAL_S = 1.0

_PLACEHOLDER = re.compile(r"^\$\{[^}]+\}$")


@dataclass(frozen=True)
class ProbeSpec:
    """One probe to sample: the activity Chaos Toolkit runs, and how often."""

    name: str
    activity: dict[str, Any]
    tolerance: Any
    has_tolerance: bool
    interval_s: float
    summary_keys: tuple[str, ...] | None

    def describe(self) -> dict[str, Any]:
        """What the journal records of the probe (not its arguments, which may hold secrets)."""
        provider = self.activity["provider"]
        return {
            "interval_s": self.interval_s,
            "tolerance": self.tolerance if self.has_tolerance else None,
            "provider": {k: provider.get(k) for k in ("type", "module", "func")},
        }


@dataclass(frozen=True)
class Options:
    """The control's arguments, checked."""

    probes: tuple[ProbeSpec, ...]
    max_samples: int
    max_duration_s: float
    start: str
    stop: str
    fault_end: str
    fault_actions: tuple[str, ...] | None
    baseline_s: float
    tail_s: float
    settle_s: float
    join_timeout_s: float

    def describe(self) -> dict[str, Any]:
        """The options as recorded in the journal (probe definitions apart)."""
        return {
            "max_samples": self.max_samples,
            "max_duration_s": self.max_duration_s,
            "start": self.start,
            "stop": self.stop,
            "fault_end": self.fault_end,
            "fault_actions": list(self.fault_actions) if self.fault_actions else None,
            "baseline_s": self.baseline_s,
            "tail_s": self.tail_s,
            "settle_s": self.settle_s,
            "join_timeout_s": self.join_timeout_s,
        }


def _fail(message: str) -> InvalidControl:
    return InvalidControl(f"lkchaos sampling control: {message}")


def _is_placeholder(value: Any, allow: bool) -> bool:
    return allow and isinstance(value, str) and bool(_PLACEHOLDER.match(value))


def _number(where: str, value: Any, *, minimum: float, strict: bool, allow: bool) -> float:
    if _is_placeholder(value, allow):
        return minimum if not strict else minimum + 1.0
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if ok and (value > minimum if strict else value >= minimum):
        return float(value)
    bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
    raise _fail(f"{where} must be a number {bound}, not {value!r}")


def _names(where: str, value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise _fail(f"{where} must be a list of non-empty strings, not {value!r}")
    return tuple(value)


def _probe(index: int, raw: Any, *, check: bool, allow: bool) -> ProbeSpec:
    if not isinstance(raw, Mapping):
        raise _fail(f"probes[{index}] must be a probe definition (an object), not {raw!r}")
    name = raw.get("name")
    where = f"probes[{index}] ({name!r})" if name else f"probes[{index}]"
    unknown = sorted(set(raw) - set(PROBE_KEYS))
    if unknown:
        raise _fail(f"{where} has unknown keys {unknown}; allowed: {list(PROBE_KEYS)}")
    if "ref" in raw or raw.get("type") != "probe":
        raise _fail(f"{where} must be a full definition with \"type\": \"probe\"")
    if not isinstance(name, str) or not name:
        raise _fail(f"{where} needs a non-empty name")
    if not isinstance(raw.get("provider"), Mapping):
        raise _fail(f"{where} needs a provider (as in a steady-state hypothesis probe)")
    provider = raw["provider"]
    mismatch = wrong_kind("probe", str(provider.get("module") or ""),
                          str(provider.get("func") or ""))
    if mismatch is not None:
        raise _fail(f"{where}: {mismatch}")
    interval = _number(
        f"{where}: interval_s", raw.get("interval_s", DEFAULT_INTERVAL_S),
        minimum=0.0, strict=False, allow=allow,
    )
    keys = raw.get("summary_keys")
    summary = _names(f"{where}: summary_keys", keys) if keys is not None else None
    activity = deepcopy({k: v for k, v in raw.items() if k in ("type", "name", "provider")})
    if check:
        try:
            ensure_activity_is_valid(activity)
            if "tolerance" in raw:
                ensure_hypothesis_tolerance_is_valid(raw["tolerance"])
        except ChaosException as exc:
            raise _fail(f"{where}: {exc}") from exc
    return ProbeSpec(
        name=name, activity=activity, tolerance=deepcopy(raw.get("tolerance")),
        has_tolerance="tolerance" in raw, interval_s=interval, summary_keys=summary,
    )


def parse_options(
    arguments: Mapping[str, Any],
    *,
    check_activities: bool = True,
    allow_placeholders: bool = False,
    method: list[Any] | None = None,
) -> Options:
    """Check the control's arguments and return them with defaults filled in.

    ``check_activities`` imports each probe's module and binds its arguments (Chaos Toolkit's
    own activity check). ``allow_placeholders`` accepts ``${name}`` in numeric options, for
    the check at validation time, before configuration is substituted. With ``method`` (the
    experiment's method), ``fault_actions`` must name actions of it.
    """
    unknown = sorted(set(arguments) - set(DEFAULTS) - {"probes"})
    if unknown:
        allowed = ["probes", *DEFAULTS]
        raise _fail(f"unknown arguments {unknown}; allowed: {allowed}")
    raw_probes = arguments.get("probes")
    if not isinstance(raw_probes, list) or not raw_probes:
        raise _fail("\"probes\" must be a non-empty list of probe definitions")
    probes = tuple(
        _probe(i, raw, check=check_activities, allow=allow_placeholders)
        for i, raw in enumerate(raw_probes)
    )
    seen: set[str] = set()
    for spec in probes:
        if spec.name in seen:
            raise _fail(f"two probes are named {spec.name!r}; names must be unique")
        seen.add(spec.name)

    values = {**DEFAULTS, **arguments}
    for key, choices in CHOICES.items():
        if values[key] not in choices:
            raise _fail(f"{key} must be one of {list(choices)}, not {values[key]!r}")
    max_samples = values["max_samples"]
    if not _is_placeholder(max_samples, allow_placeholders) and (
        not isinstance(max_samples, int) or isinstance(max_samples, bool) or max_samples < 1
    ):
        raise _fail(f"max_samples must be a whole number >= 1, not {max_samples!r}")
    fault_actions = values["fault_actions"]
    actions = _names("fault_actions", fault_actions) if fault_actions is not None else None
    if actions and method is not None:
        declared = {a.get("name") for a in method if isinstance(a, Mapping)
                    and a.get("type") == "action"}  # fmt: skip
        missing = [a for a in actions if a not in declared]
        if missing:
            raise _fail(f"fault_actions names {missing}, which are not actions of the method")

    def num(key: str, strict: bool) -> float:
        return _number(key, values[key], minimum=0.0, strict=strict, allow=allow_placeholders)

    return Options(
        probes=probes,
        max_samples=int(max_samples) if isinstance(max_samples, int) else 1,
        max_duration_s=num("max_duration_s", True),
        start=values["start"],
        stop=values["stop"],
        fault_end=values["fault_end"],
        fault_actions=actions,
        baseline_s=num("baseline_s", False),
        tail_s=num("tail_s", False),
        settle_s=num("settle_s", False),
        join_timeout_s=num("join_timeout_s", True),
    )
