"""Every lkchaos activity of an experiment, with its arguments resolved and bound.

Activities are read from the steady-state hypothesis (phase ``hypothesis``), the ``method``,
the ``rollbacks`` and the probes that the sampling control (``lkchaos.controls.sampling``)
declares in its arguments (phase ``control``). ``${name}`` values are substituted from the
configuration and the secrets with Chaos Toolkit's own helper; what stays unresolved is a
problem. Nothing here imports anything but lkchaos's activity modules.
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from chaoslib import substitute

from lkchaos.discovery import ACTIVITY_MODULES, wrong_kind

SAMPLING = "lkchaos.controls.sampling"
INJECTED = ("configuration", "secrets")
_PLACEHOLDER = re.compile(r"\$\{([^}]+)\}")
MASK = "***"


#: How a required argument left out is reported.
MISSING = "missing:"


@dataclass(frozen=True)
class Problem:
    """One reason an experiment must not run.

    ``phase``: ``hypothesis``, ``method``, ``rollbacks``, ``control`` (a probe of the sampling
    control), ``experiment`` (the file or its configuration) or ``deployment`` (it could not be
    read); ``activity``: the activity's name; ``function``: ``module.func``; ``argument`` and
    ``value``: the argument at fault (the value masked when it comes from the secrets);
    ``message``: what is wrong and what would be valid; ``level``: ``error`` (the experiment
    must not run) or ``warning`` (it may run, but should be changed).
    """

    phase: str
    activity: str
    argument: str | None
    value: Any
    message: str
    function: str = ""
    level: str = "error"

    def __str__(self) -> str:
        where = f"{self.phase} activity {self.activity!r}" if self.activity else self.phase
        if self.level != "error":
            where = f"{self.level}: {where}"
        if self.function:
            where += f" ({self.function})"
        if self.argument is None:
            return f"{where}: {self.message}"
        if self.message.startswith(MISSING) or (self.value is None and not self.activity):
            # no value to show (an experiment's own setting that could not be loaded)
            return f"{where}, argument {self.argument!r}: {self.message}"
        return f"{where}, argument {self.argument!r} = {self.value!r}: {self.message}"


def env_key(declared: Any) -> str | None:
    """The environment variable a configuration entry reads (``{"type": "env", "key": K}``),
    else None."""
    if isinstance(declared, Mapping) and declared.get("type") == "env" and declared.get("key"):
        return str(declared["key"])
    return None


@dataclass
class Call:
    """One lkchaos activity: where it is, its function and its arguments (substituted)."""

    phase: str
    activity: str
    module: str
    func: str
    arguments: dict[str, Any]
    masked: set[str] = field(default_factory=set)
    function: Callable[..., Any] | None = None
    bad: set[str] = field(default_factory=set)

    @property
    def key(self) -> str:
        return f"{self.module}.{self.func}"

    def shown(self, argument: str) -> Any:
        return MASK if argument in self.masked else self.arguments.get(argument)

    def problem(self, argument: str | None, message: str) -> Problem:
        if argument is not None:
            self.bad.add(argument)
        value = self.shown(argument) if argument is not None else None
        return Problem(self.phase, self.activity, argument, value, message, self.key)

    def bound(self) -> dict[str, Any]:
        """The arguments with the function's defaults filled in."""
        values: dict[str, Any] = {}
        if self.function is not None:
            for name, param in inspect.signature(self.function).parameters.items():
                if name not in INJECTED and param.default is not inspect.Parameter.empty:
                    values[name] = param.default
        values.update(self.arguments)
        return values


def _activities(experiment: Mapping[str, Any]) -> Iterator[tuple[str, Any]]:
    hypothesis = experiment.get("steady-state-hypothesis")
    if isinstance(hypothesis, Mapping):
        for probe in hypothesis.get("probes") or []:
            yield "hypothesis", probe
    for phase in ("method", "rollbacks"):
        for activity in experiment.get(phase) or []:
            yield phase, activity
    for control in experiment.get("controls") or []:
        provider = control.get("provider") if isinstance(control, Mapping) else None
        if isinstance(provider, Mapping) and provider.get("module") == SAMPLING:
            arguments = provider.get("arguments")
            if isinstance(arguments, Mapping):
                for probe in arguments.get("probes") or []:
                    yield "control", probe


def sampled_probes(experiment: Mapping[str, Any]) -> set[str]:
    """Names of the probes the experiment's sampling control samples."""
    return {str(a.get("name")) for phase, a in _activities(experiment)
            if phase == "control" and isinstance(a, Mapping)}  # fmt: skip


def _references(value: Any) -> set[str]:
    if isinstance(value, str):
        return set(_PLACEHOLDER.findall(value))
    if isinstance(value, list | tuple):
        return {key for item in value for key in _references(item)}
    if isinstance(value, Mapping):
        return {key for item in value.values() for key in _references(item)}
    return set()


def _secret_keys(secrets: Mapping[str, Any] | None) -> set[str]:
    return {key for scope in (secrets or {}).values() if isinstance(scope, Mapping)
            for key in scope}  # fmt: skip


def _load(module: str, func: str) -> tuple[Callable[..., Any] | None, str | None]:
    modules = [name for name, _ in ACTIVITY_MODULES]
    if module not in modules:
        return None, f"no lkchaos activity module {module!r}; modules: {', '.join(modules)}"
    loaded = importlib.import_module(module)
    public = list(getattr(loaded, "__all__", []))
    if func not in public or func.startswith("_") or not callable(getattr(loaded, func, None)):
        return None, f"{module} has no public function {func!r}; it has: {', '.join(public)}"
    return getattr(loaded, func), None


def collect(
    experiment: Mapping[str, Any],
    configuration: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
) -> tuple[list[Call], list[Problem]]:
    """The experiment's lkchaos calls, and the problems found finding and binding them."""
    calls: list[Call] = []
    problems: list[Problem] = []
    config = dict(configuration or {})
    secret_only = _secret_keys(secrets) - set(config)
    actions: list[str] = []  # the method's actions so far, in order
    for phase, activity in _activities(experiment):
        if not isinstance(activity, Mapping) or "ref" in activity:
            continue
        if phase == "method" and activity.get("type") == "action":
            actions.append(str(activity.get("name") or "?"))
        provider = activity.get("provider")
        if not isinstance(provider, Mapping) or provider.get("type") != "python":
            continue
        module = str(provider.get("module") or "")
        if module != "lkchaos" and not module.startswith("lkchaos."):
            continue
        raw = provider.get("arguments") or {}
        call = Call(phase, str(activity.get("name") or "?"), module, str(provider.get("func")),
                    {})  # fmt: skip
        if not isinstance(raw, Mapping):
            problems.append(call.problem(None, f"arguments must be an object, not {raw!r}"))
            continue
        call.arguments = dict(substitute(dict(raw), config, dict(secrets or {})) or {})
        call.masked = {name for name, value in raw.items() if _references(value) & secret_only}
        call.function, missing = _load(module, call.func)
        if missing is not None:
            problems.append(call.problem(None, missing))
            continue
        # The sampling control samples probes only; a hypothesis holds probes.
        kind = "probe" if phase == "control" else activity.get(
            "type", "probe" if phase == "hypothesis" else None)
        mismatch = wrong_kind(kind, module, call.func)
        if mismatch is not None:
            problems.append(call.problem(None, mismatch))
            continue
        problems += _bind(call)
        problems += _placement(call, actions)
        calls.append(call)
    return calls, problems


#: Functions that judge a fault a method action put in place: they belong in the method,
#: after that action.
AFTER_AN_ACTION = {"lkchaos.controls.probes.answered_during_fault"}


def _placement(call: Call, actions: list[str]) -> list[Problem]:
    """Where ``call`` stands against the method's actions before it (``actions``)."""
    if call.key not in AFTER_AN_ACTION:
        return []
    if call.phase != "method" or not actions:
        return [call.problem(None, f"{call.func} judges a fault that an action of the method "
                             "put in place: put it in the method, after that action and "
                             "before anything that undoes it")]  # fmt: skip
    named = call.arguments.get("action")
    if isinstance(named, str) and named and named not in actions:
        return [call.problem("action", f"action must name a method action before this "
                             f"probe: {', '.join(actions)}")]  # fmt: skip
    return []


def _bind(call: Call) -> list[Problem]:
    assert call.function is not None
    params = {name: p for name, p in inspect.signature(call.function).parameters.items()
              if name not in INJECTED}  # fmt: skip
    problems: list[Problem] = []
    for name, value in call.arguments.items():
        unresolved = sorted(_references(value))
        if name not in params:
            known = ", ".join(params) or "none"
            problems.append(call.problem(name, f"unknown argument; {call.func} takes: {known}"))
        elif unresolved:
            problems.append(call.problem(name, (
                f"${{{unresolved[0]}}} is not defined: add {unresolved[0]!r} to the "
                "experiment's configuration (or secrets), or give the value itself")))
        else:
            hints = typing.get_type_hints(call.function)
            wanted = _type_problem(value, hints.get(name, Any), params[name].default)
            if wanted:
                problems.append(call.problem(name, f"must be {wanted}"))
    for name, param in params.items():
        if param.default is inspect.Parameter.empty and name not in call.arguments:
            problems.append(call.problem(name, f"{MISSING} {call.func} needs {name}"))
    return problems


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


_SIMPLE: dict[Any, tuple[str, Callable[[Any], bool]]] = {
    str: ("a string", lambda v: isinstance(v, str)),
    bool: ("true or false", lambda v: isinstance(v, bool)),
    int: ("a whole number", lambda v: _is_number(v) and v == int(v)),
    float: ("a number", _is_number),
}
#: The same, in the plural: "a list of strings".
_PLURAL = {str: "strings", bool: "true or false values", int: "whole numbers", float: "numbers"}


def _type_problem(value: Any, annotation: Any, default: Any) -> str | None:
    """What the value should be, when it is not what the annotation says; None when it is."""
    if value is None and default is None:
        return None
    if annotation in _SIMPLE:
        what, ok = _SIMPLE[annotation]
        return None if ok(value) else what
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is list:
        if not isinstance(value, list):
            return "a list"
        if args and args[0] in _SIMPLE:
            what, ok = _SIMPLE[args[0]]
            return None if all(ok(v) for v in value) else f"a list of {_PLURAL[args[0]]}"
    if origin is dict:
        if not isinstance(value, dict):
            return "an object (a mapping)"
        if len(args) == 2 and args[1] in _SIMPLE:
            what, ok = _SIMPLE[args[1]]
            return (None if all(ok(v) for v in value.values())
                    else f"an object of {_PLURAL[args[1]]}")
    return None
