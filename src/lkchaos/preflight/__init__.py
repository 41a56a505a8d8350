"""Check an experiment's lkchaos activities before anything runs, without side effects.

Two levels:

- offline (:func:`check_experiment` with ``deployment=False``): every lkchaos activity of the
  steady-state hypothesis, the method, the rollbacks and the sampling control's probes names a
  public function of an lkchaos activity module; its arguments are known, of the right type,
  in range and unit, free of option or shell injection, resolved (``${name}``), and not aimed
  at lkchaos's own test harness. The rules are the activities' own argument checkers
  (:mod:`lkchaos.preflight.rules`).
- deployment-aware (the default): the services, proxies and names the activities target exist
  in the deployment, read only (:mod:`lkchaos.preflight.deployment`); a deployment that cannot
  be read is a problem too.

Before both, the experiment's shape (:mod:`lkchaos.preflight.shape`: a title, a description,
a method list of activities, sections of the right JSON type) and where its secrets are given
(:mod:`lkchaos.preflight.secrecy`: never the API key or secret in the configuration; a warning
for a secret written inline).

Every problem is a :class:`Problem`: phase, activity, function, argument, value and what would
be valid, and its level (``error``, or ``warning``, which does not stop a run). No problem
shows a secret: every known secret value is replaced by ``***`` in all of it. Entry points:
:func:`check_or_raise` for the start of a run (the safety control), :func:`validate_for_toolkit`
for ``chaos validate``, :func:`check_file` for ``lkchaos check``.
"""

from __future__ import annotations

import inspect
import json
import logging
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import yaml
from chaoslib.exceptions import ActivityFailed, InterruptExecution, InvalidActivity

from lkchaos.errors import ConfigError
from lkchaos.preflight import deployment as deployment_level
from lkchaos.preflight import pauses, secrecy, shape
from lkchaos.preflight.rules import RULES, Context, blame
from lkchaos.preflight.walk import (
    Call,
    Problem,
    _bind,
    _load,
    collect,
    env_key,
    sampled_probes,
)
from lkchaos.settings import Settings

__all__ = [
    "Problem", "ExperimentFileError", "check_experiment", "check_or_raise",
    "validate_for_toolkit", "load_file", "check_file", "resolve_configuration", "check_call",
    "errors",
]  # fmt: skip

logger = logging.getLogger("chaostoolkit")


class ExperimentFileError(ConfigError):
    """An experiment file that cannot be read or parsed; carries the file and the line."""

    def __init__(self, path: str, line: int | None, reason: str) -> None:
        self.path, self.line, self.reason = path, line, reason
        where = f"{path}:{line}" if line else path
        super().__init__(f"{where}: {reason}")


def load_file(path: str | Path) -> dict[str, Any]:
    """An experiment from a JSON (``.json``) or YAML (``.yaml``, ``.yml``) file.

    Raises :class:`ExperimentFileError` naming the file and, for a syntax error, the line.
    """
    import yaml

    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ExperimentFileError(name, None, f"cannot read it ({exc})") from exc
    if name.endswith((".yaml", ".yml")):
        try:
            loaded = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = mark.line + 1 if mark is not None else None
            reason = getattr(exc, "problem", None) or str(exc)
            raise ExperimentFileError(name, line, f"not valid YAML: {reason}") from exc
    else:
        try:
            loaded = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ExperimentFileError(name, exc.lineno, f"not valid JSON: {exc.msg} (column "
                                      f"{exc.colno})") from exc  # fmt: skip
    if not isinstance(loaded, dict):
        raise ExperimentFileError(name, 1, "an experiment must be an object with a title, a "
                                  f"method..., not {type(loaded).__name__}")  # fmt: skip
    return loaded


def resolve_configuration(
    experiment: Mapping[str, Any],
) -> tuple[dict[str, Any], dict[str, Any], list[Problem]]:
    """The experiment's configuration and secrets loaded as Chaos Toolkit loads them (from
    the environment for ``{"type": "env"}`` values); a key that cannot be loaded is left out,
    so that the arguments using it are reported unresolved."""
    from chaoslib.configuration import load_configuration
    from chaoslib.secret import load_secrets

    configuration: dict[str, Any] = {}
    problems: list[Problem] = []
    raw = experiment.get("configuration") or {}
    for key, value in (raw.items() if isinstance(raw, Mapping) else []):
        try:
            configuration.update(load_configuration({key: value}) or {})
        except Exception as exc:  # any value Chaos Toolkit cannot load is the user's problem
            problems.append(Problem("experiment", "", f"configuration.{key}", None,
                                    f"cannot be loaded{_from_env(value)}: {exc}"))  # fmt: skip
    secrets: dict[str, Any] = {}
    raw_secrets = experiment.get("secrets") or {}
    for scope, values in (raw_secrets.items() if isinstance(raw_secrets, Mapping) else []):
        if not isinstance(values, Mapping):
            continue  # a shape problem (lkchaos.preflight.shape)
        try:
            secrets.update(load_secrets({scope: values}, configuration) or {})
        except Exception as exc:  # as above
            problems.append(Problem("experiment", "", f"secrets.{scope}", "***",
                                    f"cannot be loaded: {exc}"))  # fmt: skip
    return configuration, secrets, problems


#: Chaos Toolkit's settings file when `chaos` is given no ``--settings``.
TOOLKIT_SETTINGS = Path("~/.chaostoolkit/settings.yaml")


def _declares_safety(controls: Any) -> bool:
    """Whether ``controls`` (an experiment's list, or the settings' mapping of name to
    control) holds lkchaos's safety control."""
    values = controls.values() if isinstance(controls, Mapping) else controls or []
    return any(isinstance(c, Mapping) and isinstance(c.get("provider"), Mapping)
               and c["provider"].get("module") == shape.SAFETY for c in values)  # fmt: skip


def _toolkit_settings() -> tuple[Mapping[str, Any] | None, str]:
    """Chaos Toolkit's settings and where they come from: those the running ``chaos`` loaded
    (its ``--settings``, else its default file), else its default file, read here (``None``
    when there is none, or it cannot be read: Chaos Toolkit says why)."""
    from chaoslib.settings import get_loaded_settings

    loaded = get_loaded_settings()
    if loaded:
        return loaded, "Chaos Toolkit's settings"
    path = TOOLKIT_SETTINGS.expanduser()
    try:
        settings = yaml.safe_load(path.read_text()) if path.is_file() else None
    except (OSError, yaml.YAMLError):
        settings = None
    return (settings if isinstance(settings, Mapping) else None), str(TOOLKIT_SETTINGS)


def _settings_controls(experiment: Mapping[str, Any],
                       toolkit: tuple[Mapping[str, Any] | None, str]) -> list[Problem]:  # fmt: skip
    """The problems of the lkchaos controls Chaos Toolkit's settings declare (``toolkit``:
    :func:`_toolkit_settings`; a misspelt argument there would be ignored in every run, as in
    an experiment)."""
    settings, source = toolkit
    if settings is None:
        return []
    return shape.settings_controls(settings.get("controls"), source, experiment.get("method"))


def _safety_missing(experiment: Mapping[str, Any],
                    settings: Mapping[str, Any] | None) -> list[Problem]:  # fmt: skip
    """A warning when the method runs lkchaos actions with no safety control declared, in
    the experiment or in Chaos Toolkit's ``settings`` (:func:`_toolkit_settings`)."""
    faults = [a for a in experiment.get("method") or [] if isinstance(a, Mapping)
              and a.get("type") == "action" and isinstance(a.get("provider"), Mapping)
              and str(a["provider"].get("module") or "").startswith("lkchaos.")]  # fmt: skip
    if not faults or _declares_safety(experiment.get("controls")):
        return []
    if settings is not None and _declares_safety(settings.get("controls")):
        return []
    return [Problem("experiment", "", None, None,
                    f"no safety control ({shape.SAFETY}) in the experiment's controls or in "
                    f"{TOOLKIT_SETTINGS}: `chaos run` would inject its faults with no check "
                    f"of its arguments first, no run lock, no undo of its faults at the end, "
                    f"and a fault that fails would not fail the run; declare it (README, "
                    f"\"Running experiments\"), or pass `chaos --settings` a file that does",
                    level="warning")]  # fmt: skip


def _from_env(value: Any) -> str:
    """`` from $NAME ('text')`` for a configuration value read from the environment."""
    key = env_key(value)
    if key is not None:
        found = os.environ.get(key)
        shown = f" ({found!r}; fix or unset ${key})" if found is not None else ""
        return f" from ${key}{shown}"
    return ""


def _rules(call: Call, context: Context) -> list[Problem]:
    problems: list[Problem] = []
    arguments = call.bound()
    for rule in RULES.get(call.key, []):
        if call.bad & set(rule.arguments):
            continue  # already reported (type, unresolved): one problem per argument
        try:
            rule.check(arguments, context)
        except ActivityFailed as exc:
            problems.append(call.problem(blame(rule, str(exc), arguments), str(exc)))
    return problems


def check_call(module: str, func: str, arguments: Mapping[str, Any]) -> list[Problem]:
    """The argument problems of one call, by the activity's own rules alone (no settings, no
    deployment): exactly what the activity itself rejects before it acts."""
    call = Call("method", func, module, func, dict(arguments))
    call.function, missing = _load(module, func)
    if missing is not None:
        return [call.problem(None, missing)]
    return _bind(call) + _rules(call, Context())


def errors(problems: list[Problem]) -> list[Problem]:
    """The problems that stop a run (warnings left out)."""
    return [problem for problem in problems if problem.level == "error"]


def check_experiment(
    experiment: Mapping[str, Any],
    configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
    *,
    deployment: bool = True,
    docker_client: Callable[[], Any] | None = None,
    toxiproxy_client: Callable[[Settings], Any] | None = None,
) -> list[Problem]:
    """Every problem of the experiment (an empty list: it may run; see :func:`errors` for
    those that stop it), with every known secret value replaced by ``***``.

    ``configuration`` and ``secrets`` are the loaded ones (as Chaos Toolkit passes them to
    controls); when ``configuration`` is None they are loaded from the experiment. With
    ``deployment`` the targets are looked up in the deployment (read only), through the
    given client factories or lkchaos's own.
    """
    problems, known = _check(experiment, configuration, secrets, deployment, docker_client,
                             toxiproxy_client)  # fmt: skip
    return [secrecy.scrub_problem(problem, known) for problem in problems]


def _check(
    experiment: Mapping[str, Any],
    configuration: Mapping[str, Any] | None,
    secrets: Mapping[str, Any] | None,
    deployment: bool,
    docker_client: Callable[[], Any] | None = None,
    toxiproxy_client: Callable[[Settings], Any] | None = None,
) -> tuple[list[Problem], list[str]]:
    """The problems, not yet scrubbed, and the secret values to scrub from them."""
    problems = shape.check(experiment)
    experiment = shape.sanitized(experiment)
    problems += secrecy.in_configuration(experiment) + secrecy.inline(experiment)
    if configuration is None:
        configuration, secrets, loaded = resolve_configuration(experiment)
        problems += loaded
    calls, found = collect(experiment, configuration, secrets)
    problems += found + pauses.check(experiment, configuration, secrets)
    toolkit = _toolkit_settings()
    problems += _safety_missing(experiment, toolkit[0]) + _settings_controls(experiment, toolkit)
    try:
        settings: Settings | None = Settings.load(configuration, secrets)
    except (ConfigError, ValueError, TypeError, AttributeError) as exc:
        settings = None
        problems.append(Problem("experiment", "", "configuration", None, str(exc)))
    known = secrecy.known(secrets, _api_secret(settings))
    context = Context(settings, frozenset(sampled_probes(experiment)))
    for call in calls:
        problems += _rules(call, context)
    problems += _target_lacks(calls, configuration)
    if deployment and settings is not None:
        wanted = deployment_level.needs(calls)
        if wanted:
            found_deployment = deployment_level.read(settings, wanted, docker_client,
                                                     toxiproxy_client)  # fmt: skip
            problems += deployment_level.check(calls, found_deployment)
    return problems, known


def _target_lacks(calls: list[Call], configuration: Mapping[str, Any] | None) -> list[Problem]:
    """A problem for each activity the selected target cannot run (no resolver lkchaos may
    fault, Redis without Sentinel, no Toxiproxy, ...), as ``lkchaos target check`` says."""
    from lkchaos.settings import selected_target
    from lkchaos.target import needs
    from lkchaos.target.layer import load_cached

    try:
        selection = selected_target(configuration)
        if selection is None:
            return []
        target = load_cached(selection).target
    except ConfigError:  # reported by Settings.load already
        return []
    problems = []
    for call in calls:
        reasons = needs.missing(target, call.key, known_only=False)
        problems += [call.problem(None, f"the target cannot run it: it {reason} "
                                        "(`lkchaos target check` lists what can run)")
                     for reason in reasons]  # fmt: skip
    return problems


def _api_secret(settings: Settings | None) -> str:
    """The API secret the settings load (from the environment or the stack's state folder
    when the experiment's own settings could not be loaded)."""
    if settings is None:
        try:
            settings = Settings.load()
        except Exception:  # settings that cannot load hold no secret to hide
            return ""
    return settings.livekit_api_secret


def report(problems: list[Problem], title: str = "the experiment",
           secrets: list[str] | None = None) -> str:  # fmt: skip
    """The problems as one message, one per line, ending with what to do; ``secrets`` are
    scrubbed from all of it."""
    failing = errors(problems)
    lines = [f"{title} has {len(failing)} problem(s); nothing was run:"]
    lines += [f"  - {problem}" for problem in failing]
    lines += [f"  - {problem}" for problem in problems if problem not in failing]
    lines.append("Fix them and check again with `lkchaos check EXPERIMENT`.")
    return secrecy.scrub_text("\n".join(lines), secrets or [])


def _warn(problems: list[Problem], secrets: list[str]) -> None:
    for problem in problems:
        if problem.level != "error":
            logger.warning("lkchaos: %s", secrecy.scrub_text(str(problem), secrets))


def check_or_raise(
    experiment: Mapping[str, Any],
    configuration: Mapping[str, Any] | None = None,
    secrets: Mapping[str, Any] | None = None,
) -> None:
    """Both levels, for the start of a run: raise ``InterruptExecution`` listing every
    problem, so that nothing runs, not even the first steady-state probe. Warnings are
    logged."""
    problems, known = _check(experiment, configuration or {}, secrets or {}, True)
    problems = [secrecy.scrub_problem(problem, known) for problem in problems]
    if errors(problems):
        raise InterruptExecution(report(problems, repr(experiment.get("title", "experiment")),
                                        known))  # fmt: skip
    _warn(problems, known)


def _experiment_being_validated() -> Mapping[str, Any] | None:
    """The experiment of Chaos Toolkit's ``validate_controls(experiment)`` up the stack.

    ``chaos validate`` and ``chaos run`` give a control's ``validate_control`` only the
    control's own declaration; the experiment is found in the calling frame, which is the one
    way the toolkit offers. None when not called from there.
    """
    frame = inspect.currentframe()
    try:
        while frame is not None:
            if frame.f_code.co_name in ("validate_controls", "ensure_experiment_is_valid"):
                found = frame.f_locals.get("experiment")
                if isinstance(found, Mapping):
                    return found
            frame = frame.f_back
        return None
    finally:
        del frame


def validate_for_toolkit(control: Mapping[str, Any]) -> None:
    """``validate_control`` for a control module: the offline check of the experiment being
    validated; raises ``InvalidActivity`` listing every problem. Does nothing when the
    experiment cannot be found (see :func:`_experiment_being_validated`)."""
    experiment = _experiment_being_validated()
    if experiment is None:
        return
    problems, known = _check(experiment, None, None, False)
    problems = [secrecy.scrub_problem(problem, known) for problem in problems]
    if errors(problems):
        raise InvalidActivity(report(problems, repr(experiment.get("title", "experiment")),
                                     known))  # fmt: skip
    _warn(problems, known)


def check_file(
    path: str | Path, *, offline: bool = False, **clients: Any
) -> list[Problem]:
    """:func:`check_experiment` on a file; a file that cannot be parsed raises
    :class:`ExperimentFileError`."""
    return check_experiment(load_file(path), deployment=not offline, **clients)
