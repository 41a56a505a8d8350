"""Faults on the deployment's containers, by role or runtime name.

``service`` (and each name of ``one_of``) is a role (``agent_worker``; a role with several
members picks one at random), a role's member (``livekit_node:2``) or a runtime name (a
compose service, container name or label value, as the target's runtime says); see
:mod:`lkchaos.roles`. Every action refuses a container the target does not describe (and
lkchaos's own test harness, the role ``voice_prober``), validates its arguments before
acting, writes the fault to the ledger (so ``lkchaos recover`` can undo it even if the runner
dies), and returns what it did::

    {"service": "agent", "role": "agent_worker", "action": "kill", "signal": "SIGKILL",
     "before": "running", "after": "exited"}

Each action returns only once the engine shows its effect (the container exited, paused, or
running again with a new start time), within ``LKCHAOS_VERIFY_S`` (10 s by default), and fails
otherwise (``lkchaos.verify.NotInEffect``); ``verified_s`` says how long that took. A kill
takes only the signals whose default action ends the process (:data:`ENDING`: SIGKILL,
SIGTERM, SIGINT, SIGQUIT), so that its effect can be verified and ``start_service`` undoes it;
a freeze is ``pause_service``.

``crash_service`` is a crash as the runtime sees one: it kills the container's main process by
its host PID from a short sidecar in the host's PID namespace (``docker kill`` counts as an
operator's stop, after which the engine never applies the restart policy), then reports
whether the restart policy brought the service back and how fast.

Rollbacks: ``start_service`` undoes kill, crash and stop, ``unpause_service`` undoes pause. Both
are safe to run when there is nothing to undo, and verify the service runs again. Example::

    {"type": "action", "name": "kill-the-agent",
     "provider": {"type": "python", "module": "lkchaos.docker.actions",
                  "func": "kill_service", "arguments": {"service": "agent_worker"}}}
"""

import random
import shlex
import signal as signals
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import roles
from lkchaos.docker.client import (
    container_state,
    docker_session,
    no_container,
    runtime_containers,
)
from lkchaos.errors import LkChaosError
from lkchaos.network import sidecar
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_service_name
from lkchaos.verify import until

__all__ = [
    "kill_service", "crash_service", "stop_service", "pause_service", "restart_service",
    "start_service", "unpause_service",
]

UNDO = "lkchaos.docker.actions"


def _check_target(service: Any, one_of: Any) -> list[str]:
    """The candidate services, or ActivityFailed: exactly one of ``service`` (a name) or
    ``one_of`` (a non-empty list of names), none of them the harness."""
    if (service is None) == (one_of is None):
        raise ActivityFailed("name exactly one of `service` or `one_of` (a list to pick from)")
    if one_of is not None and (not isinstance(one_of, list) or not one_of):
        raise ActivityFailed(f"one_of must be a non-empty list of services, not {one_of!r}")
    candidates = [service] if one_of is None else one_of
    for name in candidates:
        check_service_name("service" if one_of is None else "one_of", name)
        if name in roles.HARNESS_ROLES:
            raise ActivityFailed(f"{name!r} is lkchaos's own test harness, not a target")
    return list(candidates)


def _check_timeout(timeout: Any) -> int:
    """Seconds as the int Docker's API needs (``10.0`` is 10; ``10.5`` is refused)."""
    return int(check_number("timeout", timeout, "seconds", whole=True))


@contextmanager
def _target(settings: Settings, service: str | None, one_of: list[str] | None,
            single: bool = False) -> Iterator[tuple[Any, str]]:  # fmt: skip
    """The chosen container and its runtime name, with the Docker client open meanwhile.
    ``single``: ``service`` must stand for one container (a rollback undoes one fault)."""
    label = "service" if one_of is None else "one_of"
    candidates = roles.targets(settings, _check_target(service, one_of), label, single)
    harness = roles.harness(settings)
    try:
        with docker_session() as client:
            containers = runtime_containers(client, settings)
            for name in candidates:
                if name not in containers:
                    raise ActivityFailed(no_container(name, settings, set(containers) - harness))
            chosen = random.choice(candidates)
            yield containers[chosen], chosen
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc


def _signal_name(name: str) -> str:
    """The signal's name (``term`` is ``SIGTERM``), one of :data:`ENDING`: the signals whose
    effect (the process ends) can be verified and undone (``start_service``)."""
    allowed = ", ".join(sorted(ENDING))
    if not isinstance(name, str):
        raise ActivityFailed(f"signal must be one of {allowed}, not {name!r}")
    upper = name.upper() if name.upper().startswith("SIG") else f"SIG{name.upper()}"
    if upper not in ENDING:
        what = "not allowed" if upper in signals.Signals.__members__ else "an unknown signal"
        raise ActivityFailed(
            f"signal {name!r} is {what}: signal must be one of {allowed} (they end the "
            "process, so that the kill can be verified and undone); to freeze a service as "
            "SIGSTOP would, use pause_service"
        )
    return upper


def _record(settings: Settings, kind: str, service: str, undo: str) -> None:
    ledger.record(settings.state_dir, ledger.Fault(kind, service, UNDO, undo, {"service": service}))


def _result(settings: Settings, service: str, action: str, before: str, container: Any,
            **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"service": service, "role": roles.role_of(settings, service), "action": action,
            "before": before, "after": container_state(container)["state"], **extra}


#: Signals whose default action ends the process; other signals may be handled and ignored.
ENDING = frozenset({"SIGKILL", "SIGTERM", "SIGINT", "SIGQUIT"})


def _started_at(container: Any) -> str:
    return str(container.attrs.get("State", {}).get("StartedAt", ""))


def _look(container: Any) -> tuple[str, str]:
    """The container's state and the time its current process started."""
    container.reload()
    return str(container.attrs.get("State", {}).get("Status", "unknown")), _started_at(container)


def _wait_down(container: Any, name: str, started: str, what: str) -> float:
    """Until the process that ran is gone: not running, or running again (a restart policy)
    with a new start time."""
    def gone(seen: tuple[str, str]) -> bool:
        return seen[0] not in ("running", "paused") or seen[1] != started

    return until(lambda: _look(container), gone, f"{what} of {name}",
                 describe=lambda seen: f"{seen[0]} since {seen[1]}")[1]


def _wait_state(container: Any, name: str, states: tuple[str, ...], what: str) -> float:
    return until(lambda: _look(container), lambda seen: seen[0] in states, f"{what} of {name}",
                 describe=lambda seen: seen[0])[1]


def kill_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    signal: str = "SIGKILL",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Send a signal to a service's container (SIGKILL by default): a crash, or with SIGTERM a
    graceful shutdown. ``signal`` is SIGKILL, SIGTERM, SIGINT or SIGQUIT (to freeze a
    service, ``pause_service``). With ``one_of``, one service of the list is picked at random."""
    settings = Settings.load(configuration, secrets)
    sig = _signal_name(signal)
    with _target(settings, service, one_of) as (container, name):
        before = container_state(container)["state"]
        if before != "running":
            raise ActivityFailed(f"{name} is {before}, not running: nothing to kill")
        started = _started_at(container)
        _record(settings, "stopped", name, "start_service")
        container.kill(signal=sig)
        waited = _wait_down(container, name, started, f"{sig}") if sig in ENDING else 0.0
        return _result(settings, name, "kill", before, container, signal=sig,
                       verified_s=round(waited, 3))


#: Restart policies under which the engine restarts a container whose process died.
HEALING = frozenset({"always", "unless-stopped", "on-failure"})
#: The crash sidecar: the host's PIDs, no network, no capability beyond Docker's default.
CRASHER = sidecar.Options(network=False, net_admin=False, pid="host", what="crash sidecar",
                          hint="The engine must allow a container in the host's PID namespace "
                               "(--pid host) that may signal other containers' processes.")


#: Exit status of the crash script when the PID is no longer the container's process.
STALE_PID = 97


def _crash_script(pid: int, container_id: str, sig: str) -> str:
    """Kill ``pid`` only while it is still in the container's cgroup (its full id is in
    ``/proc/<pid>/cgroup``, on cgroup v1 and v2); else exit :data:`STALE_PID`, killing
    nothing: the service may have restarted, and its PID gone to another host process."""
    return (f"grep -qF {shlex.quote(str(container_id))} /proc/{pid}/cgroup 2>/dev/null || "
            f"exit {STALE_PID}; kill -s {sig.removeprefix('SIG')} {pid}")  # fmt: skip


def _runtime(container: Any) -> dict[str, Any]:
    """What the engine says of the container's process: state, start time, host PID, restart
    count and restart policy."""
    container.reload()
    state = container.attrs.get("State", {})
    policy = container.attrs.get("HostConfig", {}).get("RestartPolicy") or {}
    return {"state": str(state.get("Status", "unknown")), "started_at": _started_at(container),
            "pid": int(state.get("Pid") or 0),
            "restart_count": int(container.attrs.get("RestartCount") or 0),
            "restart_policy": str(policy.get("Name") or "no")}  # fmt: skip


def _healed(container: Any, name: str, started: str, policy: str, after: float) -> float | None:
    """Seconds from the crash until the engine ran the service again (new start time), or
    None: the policy does not restart it, or it was not running again within the wait."""
    if policy not in HEALING:
        return None
    try:
        _, waited = until(lambda: _runtime(container),
                          lambda seen: seen["state"] == "running" and seen["started_at"] != started,
                          f"the restart of {name} by its policy {policy}")  # fmt: skip
    except ActivityFailed:
        return None
    return round(after + waited, 3)


def crash_service(
    service: str,
    signal: str = "SIGKILL",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Crash a service: its main process killed by its host PID (``State.Pid``), from a
    short sidecar in the host's PID namespace, so that the engine sees a crash, not an
    operator's stop, and applies the restart policy (``docker kill`` never does).

    ``signal`` is SIGKILL (default), SIGTERM, SIGINT or SIGQUIT; a main process that is its
    namespace's init and has no handler for the signal ignores all but SIGKILL, and the
    action then fails as not in effect. Verified: the container exited, or runs again with a
    new start time, within ``LKCHAOS_VERIFY_S``. The sidecar kills the PID only while it is
    still the container's (its cgroup): a service that restarted meanwhile is not killed, and
    the action fails saying the process changed. Returns ``{"service", "role", "action":
    "crash", "signal", "pid" (host PID killed), "before", "after" (states), "restart_policy"
    (no, always, unless-stopped, on-failure), "restart_count_before", "restart_count_after",
    "restarted" (bool: the runtime ran it again), "healed_s" (seconds from the kill until it
    ran again, or null), "verified_s"}``. Rollback: ``start_service`` (it starts the service
    only if the runtime did not)."""
    settings = Settings.load(configuration, secrets)
    sig = _signal_name(signal)
    with _target(settings, service, None, single=True) as (container, name):
        client = container.client
        try:
            sidecar.ensure_image(client)  # first: a build takes minutes, the PID must be fresh
        except LkChaosError as exc:
            raise ActivityFailed(f"crashing {name} failed: {exc}") from exc
        seen = _runtime(container)
        if seen["state"] != "running" or seen["pid"] <= 0:
            raise ActivityFailed(f"{name} is {seen['state']}, not running: nothing to crash "
                                 f"(start it first: start_service {name!r})")  # fmt: skip
        _record(settings, "stopped", name, "start_service")
        try:
            sidecar.run(client, container, _crash_script(seen["pid"], container.id, sig),
                        options=CRASHER)  # fmt: skip
        except LkChaosError as exc:
            if f"(exit status {STALE_PID})" in str(exc):
                raise ActivityFailed(f"crashing {name} failed: the process changed before the "
                                     f"kill (PID {seen['pid']} is no longer {name}'s main "
                                     "process: it restarted); nothing was killed") from exc
            raise ActivityFailed(f"crashing {name} failed: {exc}") from exc
        waited = _wait_down(container, name, seen["started_at"], f"the crash ({sig})")
        healed = _healed(container, name, seen["started_at"], seen["restart_policy"], waited)
        after = _runtime(container)
        return _result(settings, name, "crash", seen["state"], container, signal=sig,
                       pid=seen["pid"], restart_policy=seen["restart_policy"],
                       restart_count_before=seen["restart_count"],
                       restart_count_after=after["restart_count"], restarted=healed is not None,
                       healed_s=healed, verified_s=round(waited, 3))


def stop_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    timeout: int = 10,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Stop a service (SIGTERM, then SIGKILL after ``timeout`` seconds)."""
    seconds = _check_timeout(timeout)
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, one_of) as (container, name):
        before = container_state(container)["state"]
        started = _started_at(container)
        _record(settings, "stopped", name, "start_service")
        container.stop(timeout=seconds)
        waited = _wait_down(container, name, started, "the stop") if before == "running" else 0.0
        return _result(settings, name, "stop", before, container, verified_s=round(waited, 3))


def pause_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Freeze a service's processes (cgroup freezer): alive but answering nothing."""
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, one_of) as (container, name):
        before = container_state(container)["state"]
        if before != "running":
            raise ActivityFailed(f"{name} is {before}, not running: nothing to pause")
        _record(settings, "paused", name, "unpause_service")
        _pause(container, name)
        waited = _wait_state(container, name, ("paused",), "the pause")
        return _result(settings, name, "pause", before, container, verified_s=round(waited, 3))


#: Attempts at a pause the runtime could not make, and the seconds between them: runc gives
#: up on a cgroup that did not reach FROZEN in time ("unable to freeze", seen in CI under
#: load) and thaws it again, so trying again is safe.
PAUSE_ATTEMPTS = 3
PAUSE_RETRY_S = 0.5


def _pause(container: Any, name: str, attempts: int = PAUSE_ATTEMPTS,
           retry_s: float = PAUSE_RETRY_S) -> None:  # fmt: skip
    """``container.pause()``, tried again when the runtime could not freeze it."""
    from docker.errors import APIError

    for attempt in range(1, attempts + 1):
        try:
            container.pause()
            return
        except APIError as exc:
            if "unable to freeze" not in str(exc):
                raise
            if attempt == attempts:
                raise ActivityFailed(
                    f"{name} could not be paused: the container runtime failed to freeze its "
                    f"processes {attempts} times ({exc}); it runs as before") from exc
            time.sleep(retry_s)


def restart_service(
    service: str = None,  # type: ignore[assignment]
    one_of: List[str] = None,  # type: ignore[assignment]
    timeout: int = 10,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Restart a service (stop, then start): no fault is left behind."""
    seconds = _check_timeout(timeout)
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, one_of) as (container, name):
        before = container_state(container)["state"]
        started = _started_at(container)
        container.restart(timeout=seconds)
        waited = until(lambda: _look(container),
                       lambda seen: seen[0] == "running" and seen[1] != started,
                       f"the restart of {name}",
                       describe=lambda seen: f"{seen[0]} since {seen[1]}")[1]
        return _result(settings, name, "restart", before, container, verified_s=round(waited, 3))


def start_service(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Start a stopped or killed service (unpausing it first if paused). A rollback: does
    nothing to a running service."""
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        before = container_state(container)["state"]
        if before == "paused":
            container.unpause()
        elif before != "running":
            container.start()
        waited = _wait_state(container, name, ("running",), "the start")
        ledger.forget(settings.state_dir, "stopped", name)
        ledger.forget(settings.state_dir, "paused", name)
        return _result(settings, name, "start", before, container, verified_s=round(waited, 3))


def unpause_service(
    service: str, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Resume a paused service. A rollback: does nothing to a service that is not paused."""
    settings = Settings.load(configuration, secrets)
    with _target(settings, service, None, single=True) as (container, name):
        before = container_state(container)["state"]
        if before == "paused":
            container.unpause()
            _wait_state(container, name, ("running", "exited", "dead"), "the unpause")
        ledger.forget(settings.state_dir, "paused", name)
        return _result(settings, name, "unpause", before, container)
