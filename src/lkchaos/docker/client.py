"""The one Docker client lkchaos opens, and the deployment's containers through it.

:func:`docker_client` opens the engine (``DOCKER_HOST``, else the local socket), pinged, with
a timeout; close it when done (``with closing(docker_client()) as client``).
:func:`runtime_containers` lists the target's containers keyed by runtime name, as the
target's ``runtime`` says: compose service names of one project, container names, or the
values of one label (:attr:`lkchaos.settings.Settings.runtime`).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lkchaos.errors import ConfigError, StackError

if TYPE_CHECKING:
    from lkchaos.settings import Settings

DOCKER_TIMEOUT = 10.0
#: Engine API version: Debian's engine (20.10) speaks up to 1.41, and newer engines accept it.
#: Naming it saves a round-trip and keeps the SDK from connecting before we ping.
DOCKER_API_VERSION = "1.41"


def docker_client(timeout: float = DOCKER_TIMEOUT) -> Any:
    """A Docker SDK client for the engine (``DOCKER_HOST`` or the local socket), checked with a
    ping; a StackError saying how to start the engine when it does not answer."""
    import docker
    from docker.errors import DockerException
    from requests.exceptions import RequestException

    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    if host.startswith("unix://") and not Path(host.removeprefix("unix://")).exists():
        raise StackError(
            f"cannot reach the Docker engine: no socket at {host}. Start it (e.g. `dockerd &` "
            "or `systemctl start docker`) and check that `docker info` answers."
        )
    if host.startswith("unix://"):
        _answers(host.removeprefix("unix://"), timeout)
    client = None
    try:
        client = docker.from_env(version=DOCKER_API_VERSION, timeout=int(timeout))
        client.ping()
    except (DockerException, OSError, ValueError, RequestException) as exc:
        # A dead engine whose socket file is left behind, or a TCP DOCKER_HOST that refuses,
        # fails in requests, not in the SDK.
        if client is not None:
            client.close()
        raise StackError(
            f"cannot reach the Docker engine at {host} ({type(exc).__name__}: {exc}). Start it "
            "(e.g. `dockerd &` or `systemctl start docker`), or correct DOCKER_HOST, and check "
            "that `docker info` answers."
        ) from exc
    return client


def _answers(path: str, timeout: float) -> None:
    """Connect to the engine's socket once (closed either way): a socket file left behind by
    an engine that stopped refuses, and the SDK would leave its own attempt's socket open."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(timeout)
            probe.connect(path)
    except PermissionError as exc:
        raise StackError(
            f"cannot reach the Docker engine: permission denied on unix://{path}. Run as a "
            "user in the `docker` group (`sudo usermod -aG docker $USER`, then log in again) "
            "or as root."
        ) from exc
    except OSError as exc:
        raise StackError(
            f"cannot reach the Docker engine: nothing answers on unix://{path} ({exc}); the "
            "engine has stopped. Start it (e.g. `dockerd &` or `systemctl start docker`) and "
            "check that `docker info` answers."
        ) from exc


@contextmanager
def docker_session(timeout: float = DOCKER_TIMEOUT) -> Iterator[Any]:
    """:func:`docker_client`, closed when the block ends."""
    client = docker_client(timeout)
    try:
        yield client
    finally:
        client.close()


def describe_runtime(settings: Settings) -> str:
    """``compose project lkchaos``, ``docker containers by name`` or ``... by label KEY``."""
    if settings.runtime == "compose":
        return f"compose project {settings.compose_project!r}"
    if settings.runtime == "docker-label":
        return f"docker containers by label {settings.runtime_label!r}"
    return "docker containers by name"


def runtime_replicas(client: Any, settings: Settings) -> list[tuple[str, Any]]:
    """Every container of the target (any state) with its runtime name, sorted by runtime
    name then container name: a scaled compose service, or containers sharing one label
    value, appear once each (see the module docstring).

    By name or label, only containers whose runtime name the target maps to a role (or that
    carry the label) are listed, so a fault never reaches a container the target does not
    describe."""
    if settings.runtime == "compose":
        if not settings.compose_project:
            raise ConfigError("the target's runtime is compose but names no project: set "
                              "runtime.compose.project in the target file")  # fmt: skip
        key = "com.docker.compose.service"
        found = _listed(client, {"label": f"com.docker.compose.project={settings.compose_project}"})
        named = [(str(c.labels.get(key) or c.name), c) for c in found]
    elif settings.runtime == "docker-label":
        key = settings.runtime_label
        named = [(str(c.labels.get(key)), c) for c in _listed(client, {"label": key})
                 if c.labels.get(key)]  # fmt: skip
    elif settings.runtime == "docker-name":
        known = {name for members in settings.roles.values() for name in members}
        named = [(str(c.name), c) for c in _listed(client, {}) if c.name in known]
    else:
        raise ConfigError(f"unknown runtime {settings.runtime!r}: the target's runtime is "
                          "compose or docker (by name or label)")  # fmt: skip
    return sorted(named, key=lambda item: (item[0], str(item[1].name)))


def runtime_containers(client: Any, settings: Settings) -> dict[str, Any]:
    """The target's containers keyed by runtime name (:func:`runtime_replicas`); of several
    containers with one runtime name (replicas), the first by container name, so that a
    fault and its undo act on the same one."""
    chosen: dict[str, Any] = {}
    for name, container in runtime_replicas(client, settings):
        chosen.setdefault(name, container)
    return chosen


def deployment_containers(client: Any, settings: Settings) -> dict[str, Any]:
    """:func:`runtime_containers`, never empty: a check over every container of a deployment
    that has none judges nothing. Raises ConfigError saying where lkchaos looked."""
    containers = runtime_containers(client, settings)
    if not containers:
        raise ConfigError(f"no container found among {describe_runtime(settings)}: is the "
                          f"deployment up? (nothing to judge)")
    return containers


def runtime_container(client: Any, settings: Settings, name: str) -> Any:
    """The container of one runtime name, or a ConfigError listing the names that exist."""
    containers = runtime_containers(client, settings)
    if name not in containers:
        raise ConfigError(no_container(name, settings, containers))
    return containers[name]


def no_container(name: str, settings: Settings, known: Iterable[str]) -> str:
    """Why ``name`` is not found: where lkchaos looked and the runtime names that exist."""
    from lkchaos.roles import did_you_mean

    listed = ", ".join(sorted(known)) or "none (is the deployment up?)"
    return (f"no container {name!r} among {describe_runtime(settings)}{did_you_mean(name)}; "
            f"there are: {listed}")


def _listed(client: Any, filters: dict[str, str]) -> list[Any]:
    from docker.errors import NotFound

    attempts = 5
    for attempt in range(attempts):
        try:
            return list(client.containers.list(all=True, filters=filters))
        except NotFound:  # a container removed between listing and inspecting it
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)
    return []


def project_containers(client: Any, project: str) -> dict[str, Any]:
    """The project's containers (any state) keyed by compose service name.

    The SDK lists, then inspects each container: one removed in between (compose replacing
    it) raises NotFound, so the listing is simply taken again."""
    found = _listed(client, {"label": f"com.docker.compose.project={project}"})
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
