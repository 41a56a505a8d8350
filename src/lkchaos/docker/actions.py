"""Faults on the deployment's containers, by compose service name.

Every action refuses a service outside the configured compose project (and the stack's own
test harness, ``prober``), validates its arguments before acting, writes the fault to the
ledger (so ``lkchaos recover`` can undo it even if the runner dies), and returns what it did::

    {"service": "agent", "action": "kill", "signal": "SIGKILL",
     "before": "running", "after": "exited"}

Rollbacks: ``start_service`` undoes kill and stop, ``unpause_service`` undoes pause. Both
are safe to run when there is nothing to undo. Example::

    {"type": "action", "name": "kill-the-agent",
     "provider": {"type": "python", "module": "lkchaos.docker.actions",
                  "func": "kill_service", "arguments": {"service": "agent"}}}
"""

import random
import signal as signals
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.docker.client import container_state, project_containers
from lkchaos.errors import LkChaosError
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.stack.compose import docker_client

__all__ = [
    "kill_service", "stop_service", "pause_service", "restart_service",
    "start_service", "unpause_service",
]

#: Services of the reference stack that are test harness, never a target.
HARNESS = frozenset({"prober"})
UNDO = "lkchaos.docker.actions"


def _target(settings: Settings, service: str | None, one_of: list[str] | None) -> tuple[Any, str]:
    if bool(service) == bool(one_of):
        raise ActivityFailed("name exactly one of `service` or `one_of` (a list to pick from)")
    try:
        containers = project_containers(docker_client(), settings.compose_project)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    candidates = [service] if service else list(one_of or [])
    for name in candidates:
        if name in HARNESS:
            raise ActivityFailed(f"{name!r} is lkchaos's own test harness, not a target")
        if name not in containers:
            known = ", ".join(sorted(set(containers) - HARNESS)) or "none (is the stack up?)"
            raise ActivityFailed(
                f"no service {name!r} in compose project {settings.compose_project!r}; "
                f"services: {known}"
            )
    chosen = random.choice(candidates)
    return containers[chosen], chosen


def _signal_name(name: str) -> str:
    upper = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if upper not in signals.Signals.__members__:
        raise ActivityFailed(f"unknown signal {name!r}; for example SIGKILL, SIGTERM, SIGHUP")
    return upper


def _record(settings: Settings, kind: str, service: str, undo: str) -> None:
    ledger.record(settings.state_dir, ledger.Fault(kind, service, UNDO, undo, {"service": service}))


def _result(service: str, action: str, before: str, container: Any, **extra: Any) -> dict[str, Any]:
    return {"service": service, "action": action, "before": before,
            "after": container_state(container)["state"], **extra}


def kill_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    signal: str = "SIGKILL",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Send a signal to a service's container (SIGKILL by default): a crash, or with SIGTERM a
    graceful shutdown. With ``one_of``, one service of the list is picked at random."""
    settings = Settings.load(configuration, secrets)
    sig = _signal_name(signal)
    container, name = _target(settings, service, one_of)
    before = container_state(container)["state"]
    _record(settings, "stopped", name, "start_service")
    container.kill(signal=sig)
    return _result(name, "kill", before, container, signal=sig)


def stop_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    timeout: int = 10,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Stop a service (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
    if timeout < 0:
        raise ActivityFailed("timeout must be zero or more seconds")
    settings = Settings.load(configuration, secrets)
    container, name = _target(settings, service, one_of)
    before = container_state(container)["state"]
    _record(settings, "stopped", name, "start_service")
    container.stop(timeout=timeout)
    return _result(name, "stop", before, container)


def pause_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Freeze a service's processes (cgroup freezer): alive but answering nothing."""
    settings = Settings.load(configuration, secrets)
    container, name = _target(settings, service, one_of)
    before = container_state(container)["state"]
    if before != "running":
        raise ActivityFailed(f"{name} is {before}, not running: nothing to pause")
    _record(settings, "paused", name, "unpause_service")
    container.pause()
    return _result(name, "pause", before, container)


def restart_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    timeout: int = 10,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Restart a service (stop, then start): no fault is left behind."""
    settings = Settings.load(configuration, secrets)
    container, name = _target(settings, service, one_of)
    before = container_state(container)["state"]
    container.restart(timeout=timeout)
    return _result(name, "restart", before, container)


def start_service(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Start a stopped or killed service (unpausing it first if paused). A rollback: does
    nothing to a running service."""
    settings = Settings.load(configuration, secrets)
    container, name = _target(settings, service, None)
    before = container_state(container)["state"]
    if before == "paused":
        container.unpause()
    elif before != "running":
        container.start()
    ledger.forget(settings.state_dir, "stopped", name)
    ledger.forget(settings.state_dir, "paused", name)
    return _result(name, "start", before, container)


def unpause_service(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Resume a paused service. A rollback: does nothing to a service that is not paused."""
    settings = Settings.load(configuration, secrets)
    container, name = _target(settings, service, None)
    before = container_state(container)["state"]
    if before == "paused":
        container.unpause()
    ledger.forget(settings.state_dir, "paused", name)
    return _result(name, "unpause", before, container)
