"""The shape of an experiment: what must be there, and of which JSON type, before its
activities can be read.

An experiment is an object with a ``title``, a ``description`` and a ``method`` list of
activities (an empty one checks the steady state alone); ``steady-state-hypothesis`` (an
object with a ``title`` and a list of ``probes``), ``rollbacks`` (a list), ``controls`` (a
list of controls, each with a ``name`` and a ``provider`` object), ``configuration`` (an
object) and ``secrets`` (an object of objects, one per scope) are optional. Each activity is
an object with a ``type`` (``action`` or ``probe``), a ``name`` and a ``provider`` object, or
a ``ref`` to one. The sampling control's arguments are checked by the control's own parser
(``parse_options``).

:func:`check` lists every shape problem (phase ``experiment``); :func:`sanitized` is the
experiment with every section of the wrong shape left out, so that the other checks can read
what is left without tripping over it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from chaoslib.exceptions import ChaosException

from lkchaos.discovery import wrong_kind
from lkchaos.preflight.walk import SAMPLING, Problem

ACTIVITY_TYPES = ("action", "probe")
SAFETY = "lkchaos.safety.control"
#: lkchaos's Chaos Toolkit controls (controls/README.md).
CONTROLS = (SAFETY, SAMPLING, "lkchaos.controls.history", "lkchaos.controls.progress")
#: Sections and the JSON type each must have: (check, what it must be).
_OBJECT = (lambda v: isinstance(v, Mapping), "an object")
_LIST = (lambda v: isinstance(v, list), "a list")


def _problem(where: str, message: str) -> Problem:
    return Problem("experiment", "", None, None, f"{where}: {message}")


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
             type(None): "null", int: "a number", float: "a number"}  # fmt: skip
    return names.get(type(value), type(value).__name__)


def _text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _activity(where: str, activity: Any, probe_only: bool = False) -> list[Problem]:
    if not isinstance(activity, Mapping):
        return [_problem(where, f"an activity must be an object with a type, a name and a "
                                f"provider, not {_kind(activity)}")]  # fmt: skip
    if "ref" in activity:
        ok = _text(activity.get("ref"))
        return [] if ok else [_problem(where, "ref must name an activity (a non-empty string)")]
    problems = []
    wanted = ("probe",) if probe_only else ACTIVITY_TYPES
    if activity.get("type") not in wanted:
        problems.append(_problem(where, f"type must be {' or '.join(map(repr, wanted))}, not "
                                        f"{activity.get('type')!r}"))  # fmt: skip
    if not _text(activity.get("name")):
        problems.append(_problem(where, "needs a name (a non-empty string)"))
    provider = activity.get("provider")
    if not isinstance(provider, Mapping):
        problems.append(_problem(where, f"provider must be an object such as {{\"type\": "
                                        f"\"python\", \"module\": ..., \"func\": ...}}, not "
                                        f"{_kind(provider)}"))  # fmt: skip
    elif provider.get("type") == "python":
        for key in ("module", "func"):
            if not _text(provider.get(key)):
                problems.append(_problem(where, f"provider.{key} must be a non-empty string"))
        if provider.get("arguments") is not None and not isinstance(provider["arguments"],
                                                                    Mapping):  # fmt: skip
            problems.append(_problem(where, f"provider.arguments must be an object, not "
                                            f"{_kind(provider['arguments'])}"))  # fmt: skip
    elif not _text(provider.get("type")):
        problems.append(_problem(where, "provider.type must be a string such as \"python\""))
    return problems


def _name(activity: Any) -> str:
    name = activity.get("name") if isinstance(activity, Mapping) else None
    return f" ({name!r})" if isinstance(name, str) and name else ""


def _activities(section: str, value: Any) -> list[Problem]:
    if not isinstance(value, list):
        return [_problem(section, f"must be a list of activities, not {_kind(value)}")]
    return [p for i, a in enumerate(value)
            for p in _activity(f"{section}[{i}]{_name(a)}", a)]  # fmt: skip


def _hypothesis(value: Any) -> list[Problem]:
    where = "steady-state-hypothesis"
    if not isinstance(value, Mapping):
        return [_problem(where, f"must be an object with a title and probes, not "
                                f"{_kind(value)}")]  # fmt: skip
    problems = [] if _text(value.get("title")) else [_problem(where, "needs a title")]
    probes = value.get("probes", [])
    if not isinstance(probes, list):
        return [*problems, _problem(f"{where}.probes", f"must be a list of probes, not "
                                                       f"{_kind(probes)}")]  # fmt: skip
    return problems + [p for i, a in enumerate(probes)
                       for p in _activity(f"{where}.probes[{i}]{_name(a)}", a)]  # fmt: skip


def _sampling(where: str, arguments: Any, method: Any = None) -> list[Problem]:
    from lkchaos.controls.options import parse_options

    if not isinstance(arguments, Mapping):
        return [_problem(f"{where}.provider.arguments", f"must be an object with the probes to "
                                                        f"sample, not {_kind(arguments)}")]
    try:
        parse_options(arguments, check_activities=False, allow_placeholders=True,
                      method=method if isinstance(method, list) else None)
    except ChaosException as exc:
        if any(m in str(exc) for m in _kind_mismatches(arguments.get("probes"))):
            return []  # reported on the probe itself, with its name (lkchaos.preflight.walk)
        return [_problem(f"{where}.provider.arguments", str(exc))]
    return []


def _kind_mismatches(probes: Any) -> list[str]:
    found = []
    for probe in probes if isinstance(probes, list) else []:
        provider = probe.get("provider") if isinstance(probe, Mapping) else None
        if isinstance(provider, Mapping):
            mismatch = wrong_kind("probe", str(provider.get("module") or ""),
                                  str(provider.get("func") or ""))  # fmt: skip
            found += [mismatch] if mismatch else []
    return found


def _controls(value: Any, method: Any = None) -> list[Problem]:
    if not isinstance(value, list):
        return [_problem("controls", f"must be a list of controls, not {_kind(value)}")]
    problems: list[Problem] = []
    for i, control in enumerate(value):
        where = f"controls[{i}]{_name(control)}"
        if not isinstance(control, Mapping):
            problems.append(_problem(where, f"a control must be an object with a name and a "
                                            f"provider, not {_kind(control)}"))  # fmt: skip
            continue
        if "ref" in control:
            continue
        if not _text(control.get("name")):
            problems.append(_problem(where, "needs a name (a non-empty string)"))
        problems += _control(where, control, method)
    return problems


def _of_lkchaos(module: str) -> bool:
    """Whether ``module`` names lkchaos or one of its modules."""
    return module == "lkchaos" or module.startswith("lkchaos.")


def _control(where: str, control: Mapping[str, Any], method: Any) -> list[Problem]:
    """One control's provider: an lkchaos module that exists, with arguments it takes."""
    provider = control.get("provider")
    if not isinstance(provider, Mapping) or not _text(provider.get("module")):
        return [_problem(where, "provider must be an object such as {\"type\": \"python\", "
                                "\"module\": \"lkchaos.safety.control\"}")]
    problems = []
    module = str(provider.get("module"))
    if _of_lkchaos(module) and module not in CONTROLS:
        problems.append(_problem(where, f"no lkchaos control module {module!r}: Chaos "
                                        f"Toolkit would skip it with a warning and run "
                                        f"without it; lkchaos's controls: "
                                        f"{', '.join(CONTROLS)}"))  # fmt: skip
    if module == SAMPLING:
        problems += _sampling(where, provider.get("arguments"), method)
    elif module in CONTROL_ARGUMENTS:
        problems += _control_arguments(where, module, provider.get("arguments"))
    return problems


def settings_controls(controls: Any, source: str, method: Any = None) -> list[Problem]:
    """The problems of the lkchaos controls that Chaos Toolkit's settings declare for every
    experiment (``controls:``, a mapping of name to control), checked as an experiment's own
    are; each says ``source`` (the settings file). Controls of other modules, and a
    ``controls`` that is not a mapping, are left to Chaos Toolkit."""
    if not isinstance(controls, Mapping):
        return []
    problems = []
    for name, control in controls.items():
        provider = control.get("provider") if isinstance(control, Mapping) else None
        module = str(provider.get("module") or "") if isinstance(provider, Mapping) else ""
        if _of_lkchaos(module):
            problems += _control(f"{source}: controls.{name}", control, method)
    return problems


#: The arguments lkchaos's controls other than sampling take (their hooks' ``**kwargs``
#: would take any name, and a misspelt one would be ignored without a word).
CONTROL_ARGUMENTS: dict[str, tuple[str, ...]] = {
    SAFETY: (), "lkchaos.controls.history": ("url",), "lkchaos.controls.progress": (),
}


def _control_arguments(where: str, module: str, arguments: Any) -> list[Problem]:
    import difflib

    if arguments is None:
        return []
    known = CONTROL_ARGUMENTS[module]
    takes = f"it takes {', '.join(known)}" if known else "it takes none"
    if not isinstance(arguments, Mapping):
        return [_problem(f"{where}.provider.arguments",
                         f"must be an object, not {_kind(arguments)} ({takes})")]
    problems = []
    for name in sorted(set(arguments) - set(known)):
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        problems.append(_problem(f"{where}.provider.arguments",
                                 f"unknown argument {name!r} of {module}: {takes}{hint}"))
    return problems


def _secrets(value: Any) -> list[Problem]:
    if not isinstance(value, Mapping):
        return [_problem("secrets", f"must be an object of scopes, such as {{\"livekit\": "
                                    f"{{\"api_secret\": {{\"type\": \"env\", \"key\": "
                                    f"\"LIVEKIT_API_SECRET\"}}}}}}, not {_kind(value)}")]
    return [_problem(f"secrets.{scope}", f"a scope must be an object of secrets, such as "
                                         f"{{\"api_secret\": {{\"type\": \"env\", \"key\": "
                                         f"\"LIVEKIT_API_SECRET\"}}}}, not {_kind(values)}")
            for scope, values in value.items() if not isinstance(values, Mapping)]  # fmt: skip


def check(experiment: Any) -> list[Problem]:
    """Every shape problem of ``experiment`` (an empty list: it has the shape of one)."""
    if not isinstance(experiment, Mapping):
        return [_problem("the experiment", f"must be an object with a title, a description "
                                           f"and a method, not {_kind(experiment)}")]
    problems = [_problem(key, "must be a non-empty string")
                for key in ("title", "description") if not _text(experiment.get(key))]
    if experiment.get("method") is None:
        problems.append(_problem("method", "missing: an experiment needs a method, a non-empty "
                                           "list of activities"))  # fmt: skip
    else:
        # An empty method is a steady-state check (Chaos Toolkit runs the hypothesis and the
        # controls alone).
        problems += _activities("method", experiment["method"])
    if experiment.get("rollbacks") is not None:
        problems += _activities("rollbacks", experiment["rollbacks"])
    if experiment.get("steady-state-hypothesis") is not None:
        problems += _hypothesis(experiment["steady-state-hypothesis"])
    if experiment.get("controls") is not None:
        problems += _controls(experiment["controls"], experiment.get("method"))
    if experiment.get("configuration") is not None and not isinstance(
            experiment["configuration"], Mapping):  # fmt: skip
        problems.append(_problem("configuration", f"must be an object (names to values), not "
                                                  f"{_kind(experiment['configuration'])}"))
    if experiment.get("secrets") is not None:
        problems += _secrets(experiment["secrets"])
    return problems


def sanitized(experiment: Any) -> dict[str, Any]:
    """``experiment`` with each section of the wrong type, and each activity, control or
    secret scope that is not an object, left out."""
    if not isinstance(experiment, Mapping):
        return {}
    clean = dict(experiment)
    for key in ("method", "rollbacks", "controls"):
        value = clean.get(key)
        clean[key] = [a for a in value if isinstance(a, Mapping)] if isinstance(value, list) else []
    hypothesis = clean.get("steady-state-hypothesis")
    if isinstance(hypothesis, Mapping):
        probes = hypothesis.get("probes")
        clean["steady-state-hypothesis"] = {**hypothesis, "probes": [
            p for p in (probes if isinstance(probes, list) else []) if isinstance(p, Mapping)]}
    else:
        clean.pop("steady-state-hypothesis", None)
    if not isinstance(clean.get("configuration"), Mapping):
        clean.pop("configuration", None)
    secrets = clean.get("secrets")
    clean["secrets"] = {scope: values for scope, values in secrets.items()
                        if isinstance(values, Mapping)} if isinstance(secrets, Mapping) else {}
    return clean
