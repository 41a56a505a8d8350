"""Whether an experiment applies to a target, and if not, exactly why.

An experiment applies when every lkchaos activity it holds (steady state, method, rollbacks,
the sampling control's probes) can run on the target (:func:`lkchaos.target.needs.missing`),
every role it names resolves there (``livekit_node:2`` needs two LiveKit nodes; see
:mod:`lkchaos.roles`), and every Toxiproxy link role it names is one of the target's
``toxiproxy.links``. Only the files are read: nothing is reached.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from chaoslib.exceptions import ActivityFailed

from lkchaos import roles
from lkchaos.preflight import walk
from lkchaos.settings import Settings
from lkchaos.target import needs
from lkchaos.target.convert import settings_values
from lkchaos.target.load import LoadedTarget
from lkchaos.target.model import LinkRole

#: Arguments that name components, and the one that names a Toxiproxy link.
COMPONENT_ARGUMENTS = ("service", "one_of", "peers", "services")
LINK_ROLES: tuple[str, ...] = LinkRole.__args__  # type: ignore[attr-defined]


def target_settings(loaded: LoadedTarget) -> Settings:
    """The target's settings without its secrets (nothing is resolved or reached)."""
    values = settings_values(loaded, resolve_secrets=False, state=Path("/nonexistent"))
    return Settings(**values)


def reasons(experiment: Mapping[str, Any], loaded: LoadedTarget,
            settings: Settings | None = None) -> dict[str, list[str]]:  # fmt: skip
    """Why the experiment does not apply to the target (empty: it applies): each reason ->
    the names of the activities it stops, in the experiment's order."""
    settings = settings or target_settings(loaded)
    configuration = experiment.get("configuration")
    calls, _ = walk.collect(experiment, configuration if isinstance(configuration, Mapping)
                            else None, None)  # fmt: skip
    found: dict[str, list[str]] = {}

    def add(reason: str, activity: str) -> None:
        stopped = found.setdefault(reason, [])
        if activity not in stopped:
            stopped.append(activity)

    for call in calls:
        for reason in _needs(loaded, call.key):
            add(reason, call.activity)
        for argument in COMPONENT_ARGUMENTS:
            value = call.arguments.get(argument)
            for item in value if isinstance(value, list) else [value]:
                if roles.is_reference(item):
                    try:
                        roles.resolve(settings, str(item), argument)
                    except ActivityFailed as exc:
                        add(str(exc), call.activity)
        proxy = call.arguments.get("proxy")
        if (proxy in LINK_ROLES and settings.toxiproxy_url
                and proxy not in settings.toxiproxy_links):  # fmt: skip
            add(f"proxy {proxy!r}: the target's toxiproxy.links has no {proxy}", call.activity)
    return found


def describe(found: Mapping[str, list[str]]) -> list[str]:
    """One line per reason: ``<reason> (<activity>, <activity>)``."""
    return [f"{reason} ({', '.join(stopped)})" for reason, stopped in found.items()]


def _needs(loaded: LoadedTarget, activity: str) -> list[str]:
    try:
        return needs.missing(loaded.target, activity)
    except KeyError:  # not an activity of the catalogue: preflight reports it
        return []


def check_files(paths: list[Path], loaded: LoadedTarget) -> dict[Path, list[str]]:
    """Each experiment file -> why it does not apply, as :func:`describe` lines (empty: it
    applies). A file that cannot be read as an experiment gets one line saying so."""
    settings = target_settings(loaded)
    verdicts: dict[Path, list[str]] = {}
    for path in paths:
        try:
            experiment = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            verdicts[path] = [f"cannot be read as an experiment: {exc}"]
            continue
        if not isinstance(experiment, Mapping):
            verdicts[path] = ["cannot be read as an experiment: not a JSON object"]
            continue
        verdicts[path] = describe(reasons(experiment, loaded, settings))
    return verdicts
