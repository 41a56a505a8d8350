"""Probes on the deployment's containers, by compose service name.

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

from lkchaos.docker.client import container_state, project_containers
from lkchaos.errors import LkChaosError
from lkchaos.settings import Settings
from lkchaos.stack.compose import docker_client

__all__ = ["services_health", "all_services_healthy", "service_health"]


def services_health(
    services: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """State and health of each service (all of the project's services by default).

    Returns ``{"ok": bool, "unhealthy": [names], "services": {name: {"state", "health",
    "ok"}}}``. A requested service that does not exist counts as unhealthy ("missing").
    """
    settings = Settings.load(configuration, secrets)
    try:
        containers = project_containers(docker_client(), settings.compose_project)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    wanted = list(services) if services else sorted(containers)
    report: dict[str, dict[str, Any]] = {}
    for name in wanted:
        container = containers.get(name)
        report[name] = (
            container_state(container) if container is not None
            else {"state": "missing", "health": "none", "ok": False}
        )
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
    """State and health of one service: ``{"state", "health", "ok"}``."""
    return dict(services_health([service], configuration, secrets)["services"][service])
