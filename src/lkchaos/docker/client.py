"""Find a compose project's containers through the Docker SDK (the one way lkchaos does)."""

from __future__ import annotations

import time
from typing import Any

from lkchaos.errors import ConfigError


def project_containers(client: Any, project: str) -> dict[str, Any]:
    """The project's containers (any state) keyed by compose service name.

    The SDK lists, then inspects each container: one removed in between (compose replacing
    it) raises NotFound, so the listing is simply taken again."""
    from docker.errors import NotFound

    attempts = 5
    for attempt in range(attempts):
        try:
            found = client.containers.list(
                all=True, filters={"label": f"com.docker.compose.project={project}"}
            )
            break
        except NotFound:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    return {c.labels.get("com.docker.compose.service", c.name): c for c in found}


def service_container(client: Any, project: str, service: str) -> Any:
    """The container of one service, or a ConfigError listing the services that exist."""
    containers = project_containers(client, project)
    if service not in containers:
        known = ", ".join(sorted(containers)) or "none (is the stack up?)"
        raise ConfigError(
            f"no service {service!r} in compose project {project!r}; services: {known}"
        )
    return containers[service]


def container_state(container: Any) -> dict[str, Any]:
    """State, health and whether it counts as up (running, and healthy if it has a check)."""
    container.reload()
    state = container.attrs.get("State", {})
    health = str(state.get("Health", {}).get("Status", "none"))
    status = str(state.get("Status", "unknown"))
    return {
        "state": status,
        "health": health,
        "ok": status == "running" and health in ("healthy", "none"),
    }
