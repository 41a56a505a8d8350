"""Whether an experiment applies to a target, and if not, exactly why.

An experiment applies when every lkchaos activity it holds (steady state, method, rollbacks,
the sampling control's probes) can run on the target (:func:`lkchaos.target.needs.missing`)
and passes the preflight's argument rules with the target's settings (:mod:`lkchaos.preflight`,
as ``lkchaos check --offline`` runs them): every role it names resolves there
(``livekit_node:2`` needs two LiveKit nodes; see :mod:`lkchaos.roles`), never to the test
harness, a rollback's role stands for one container, and every Toxiproxy link role it names
is one of the target's ``toxiproxy.links``. Only the files are read: nothing is reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lkchaos.preflight import _rules, errors, load_file, shape, walk
from lkchaos.preflight.rules import Context
from lkchaos.settings import Settings
from lkchaos.target import needs
from lkchaos.target.convert import settings_values
from lkchaos.target.load import LoadedTarget


def target_settings(loaded: LoadedTarget) -> Settings:
    """The target's settings without its secrets (nothing is resolved or reached)."""
    values = settings_values(loaded, resolve_secrets=False, state=Path("/nonexistent"))
    return Settings(**values)


#: Activity arguments that name the deployment's components (:mod:`lkchaos.roles`).
COMPONENT_ARGUMENTS = ("service", "one_of", "peers", "services")


def _roles_named(call: Any, settings: Settings) -> set[str]:
    """The roles an activity call's component arguments name (a role, a role's member, or a
    runtime name the target maps to a role)."""
    from lkchaos import roles

    named: set[str] = set()
    for argument in COMPONENT_ARGUMENTS:
        value = call.arguments.get(argument)
        for item in value if isinstance(value, list | tuple) else [value]:
            if not isinstance(item, str):
                continue
            parsed = roles.parse(item)
            role = parsed[0] if parsed else roles.role_of(settings, item)
            if role:
                named.add(role)
    return named


def _link_named(call: Any, settings: Settings) -> str | None:
    """The link role a Toxiproxy activity's ``proxy`` argument names (a link role, or the
    proxy a link maps to), else None."""
    proxy = call.arguments.get("proxy")
    if not isinstance(proxy, str) or not call.module.startswith("lkchaos.toxiproxy."):
        return None
    if proxy in settings.toxiproxy_links:
        return proxy
    return next((link for link, name in settings.toxiproxy_links.items() if name == proxy),
                None)


def reasons(experiment: Mapping[str, Any], loaded: LoadedTarget,
            settings: Settings | None = None,
            failed: frozenset[str] = frozenset(),
            missing_roles: Mapping[str, str] | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Why the experiment does not apply to the target (empty: it applies): each reason ->
    the names of the activities it stops, in the experiment's order. ``failed``: components
    (``needs.COMPONENT`` values) that failed the reachability check; an activity that needs
    one does not apply either. ``missing_roles``: role -> why its container was not found
    (the runtime's lines of the check), and ``"link <role>"`` -> why Toxiproxy has no such
    proxy; only the activities that name such a role or link are stopped by it."""
    settings = settings or target_settings(loaded)
    configuration = experiment.get("configuration")
    calls, _ = walk.collect(experiment, configuration if isinstance(configuration, Mapping)
                            else None, None)  # fmt: skip
    found: dict[str, list[str]] = {}

    def add(reason: str, activity: str) -> None:
        stopped = found.setdefault(reason, [])
        if activity not in stopped:
            stopped.append(activity)

    for problem in errors(shape.check(experiment)):
        what = f"{problem.argument}: " if problem.argument else ""
        add(f"not a valid experiment: {what}{problem.message}", "the file")
    context = Context(settings, frozenset(walk.sampled_probes(experiment)))
    for call in calls:
        for reason in needs.missing(loaded.target, call.key, known_only=False):
            add(reason, call.activity)
        for reason in needs.unreachable(call.key, failed):
            add(reason, call.activity)
        for role in sorted(_roles_named(call, settings) & set(missing_roles or {})):
            add(f"role {role}: {(missing_roles or {})[role]}", call.activity)
        link = _link_named(call, settings)
        if link is not None and f"link {link}" in (missing_roles or {}):
            add(f"link {link}: {(missing_roles or {})[f'link {link}']}", call.activity)
        for problem in _rules(call, context):
            message = problem.message
            if problem.argument and message.startswith(repr(problem.value)):
                message = f"{problem.argument} {message}"
            elif problem.argument and not message.startswith(problem.argument):
                message = f"{problem.argument} {problem.value!r}: {message}"
            add(message, call.activity)
    return found


def describe(found: Mapping[str, list[str]]) -> list[str]:
    """One line per reason: ``<reason> (<activity>, <activity>)``."""
    return [f"{reason} ({', '.join(stopped)})" for reason, stopped in found.items()]


def check_files(paths: list[Path], loaded: LoadedTarget,
                failed: frozenset[str] = frozenset(),
                missing_roles: Mapping[str, str] | None = None,
                ) -> dict[Path, list[str]]:  # fmt: skip
    """Each experiment file -> why it does not apply, as :func:`describe` lines (empty: it
    applies), ``failed`` and ``missing_roles`` as in :func:`reasons`. A file that cannot be
    read as an experiment gets one line saying so."""
    settings = target_settings(loaded)
    verdicts: dict[Path, list[str]] = {}
    for path in paths:
        try:
            experiment = load_file(path)
        except Exception as exc:  # any unreadable file is one line of the listing
            verdicts[path] = [f"cannot be read as an experiment: {exc}"]
            continue
        if not isinstance(experiment, Mapping):
            verdicts[path] = ["cannot be read as an experiment: not a JSON object"]
            continue
        verdicts[path] = describe(reasons(experiment, loaded, settings, failed,
                                          missing_roles))
    return verdicts
