"""Probes on the deployment's containers, by role or runtime name (see :mod:`lkchaos.roles`).

``services_health`` returns a dict; use it with a jsonpath tolerance, or use
``all_services_healthy`` (a bool) with ``"tolerance": true``::

    {"type": "probe", "name": "every-service-healthy",
     "tolerance": true,
     "provider": {"type": "python", "module": "lkchaos.docker.probes",
                  "func": "all_services_healthy"}}
"""

from typing import Any, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import roles
from lkchaos.docker.client import container_state, docker_session, runtime_containers
from lkchaos.errors import LkChaosError
from lkchaos.settings import Settings
from lkchaos.values import check_service_name

__all__ = ["services_health", "all_services_healthy", "service_health", "service_restarts"]


def services_health(
    services: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """State and health of each container (every container of the target by default).

    ``services``: roles (``livekit_node`` stands for each node), roles' members
    (``livekit_node:2``) or runtime names. Returns ``{"ok": bool, "unhealthy": [names],
    "services": {runtime name: {"state", "health", "ok"}}}``. A requested container that
    does not exist counts as unhealthy ("missing")."""
    settings = Settings.load(configuration, secrets)
    wanted: list[str] = []
    for value in services or []:
        check_service_name("services", value)
        wanted += [name for name in roles.resolve(settings, value, "services")
                   if name not in wanted]  # fmt: skip
    report: dict[str, dict[str, Any]] = {}
    try:
        with docker_session() as client:
            containers = runtime_containers(client, settings)
            for name in wanted or sorted(containers):
                container = containers.get(name)
                report[name] = (
                    container_state(container) if container is not None
                    else {"state": "missing", "health": "none", "ok": False}
                )
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    unhealthy = sorted(name for name, st in report.items() if not st["ok"])
    return {"ok": bool(report) and not unhealthy, "unhealthy": unhealthy, "services": report}


def all_services_healthy(
    services: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> bool:
    """True when every service (or every one named) is running and healthy."""
    return bool(services_health(services, configuration, secrets)["ok"])


def service_health(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """State and health of one container (a role of one member, a role's member, or a
    runtime name): ``{"state", "health", "ok"}``."""
    settings = Settings.load(configuration, secrets)
    name = roles.resolve_one(settings, check_service_name("service", service))
    return dict(services_health([name], configuration, secrets)["services"][name])


def service_restarts(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """Whether the runtime heals a service: ``{"running" (bool), "restart_count" (restarts by
    the engine since the container was created), "started_at" (its process's start time,
    RFC 3339), "restart_policy" (no, always, unless-stopped, on-failure)}``. After
    ``crash_service``, ``running`` true with a new ``started_at`` shows the runtime healed it."""
    settings = Settings.load(configuration, secrets)
    name = roles.resolve_one(settings, check_service_name("service", service))
    try:
        with docker_session() as client:
            containers = runtime_containers(client, settings)
            if name not in containers:
                from lkchaos.docker.client import no_container

                raise ActivityFailed(no_container(name, settings, containers))
            container = containers[name]
            container.reload()
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    state = container.attrs.get("State", {})
    policy = container.attrs.get("HostConfig", {}).get("RestartPolicy") or {}
    return {"running": state.get("Status") == "running",
            "restart_count": int(container.attrs.get("RestartCount") or 0),
            "started_at": str(state.get("StartedAt", "")),
            "restart_policy": str(policy.get("Name") or "no")}
