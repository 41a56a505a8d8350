"""The stack's service states while `docker compose up` replaces containers."""

from __future__ import annotations

from typing import Any

import docker.errors

from lkchaos.stack import layout
from lkchaos.stack.health import service_statuses


class _Container:
    def __init__(self, state: dict[str, Any] | None) -> None:
        self.attrs: dict[str, Any] = {}
        self._state = state

    def reload(self) -> None:
        if self._state is None:
            raise docker.errors.NotFound("No such container")
        self.attrs = {"State": self._state}


class _Compose:
    def __init__(self, containers: dict[str, _Container]) -> None:
        self._containers = containers

    def containers(self, client: Any) -> dict[str, _Container]:
        return self._containers


def test_a_container_removed_since_it_was_listed_is_missing_not_an_error() -> None:
    healthy = {"Status": "running", "Health": {"Status": "healthy"}}
    first, second, *_ = layout.SERVICES
    compose = _Compose({first: _Container(healthy), second: _Container(None)})
    statuses = {s.service: s for s in service_statuses(compose, client=None)}  # type: ignore[arg-type]
    assert (statuses[first].state, statuses[first].health) == ("running", "healthy")
    assert (statuses[second].state, statuses[second].health) == ("missing", "none")
    assert not statuses[second].ok


def test_the_stack_is_not_healthy_before_docker_compose_up_is_done() -> None:
    """Every container healthy while `up` still runs may be the old ones it is about to
    replace (a setting changed): the wait lasts until `up` has exited."""
    import subprocess
    import time

    from lkchaos.stack.health import wait_healthy

    healthy = {"Status": "running", "Health": {"Status": "healthy"}}
    compose = _Compose({s: _Container(healthy) for s in layout.SERVICES})
    with subprocess.Popen(["sleep", "1.5"], stdout=subprocess.PIPE, text=True) as starter:
        started = time.monotonic()
        statuses = wait_healthy(compose, None, timeout=30, say=lambda _: None,  # type: ignore[arg-type]
                                starter=starter)  # fmt: skip
        waited, finished = time.monotonic() - started, starter.poll()
    assert finished == 0 and waited >= 1.5
    assert all(s.ok for s in statuses)


_HEALTHY = {"Status": "running", "Health": {"Status": "healthy"}}


def _unhealthy(output: str) -> dict[str, Any]:
    check = {"ExitCode": 1, "Output": output}
    return {"Status": "running", "Health": {"Status": "unhealthy", "Log": [check]}}


class _Restartable(_Compose):
    """Every service healthy but ``service``, which shows ``states`` in turn: the next one
    each time it is restarted (the last one stays)."""

    def __init__(self, service: str, states: list[dict[str, Any]]) -> None:
        super().__init__({s: _Container(_HEALTHY) for s in layout.SERVICES})
        self.service, self.states, self.restarts = service, states, 0
        self._containers[service] = _Container(states[0])

    def run(self, *args: str, timeout: float = 120.0) -> None:
        assert args == ("restart", self.service), args
        self.restarts += 1
        self._containers[self.service] = _Container(self.states[min(self.restarts,
                                                                    len(self.states) - 1)])

    def logs(self, client: Any, service: str, tail: int = 20) -> str:
        return f"last lines of {service}"


def _wait(compose: _Compose, timeout: float = 30) -> tuple[list[Any], list[str]]:
    from lkchaos.stack.health import wait_healthy

    said: list[str] = []
    statuses = wait_healthy(compose, None, timeout=timeout, say=said.append)  # type: ignore[arg-type]
    return statuses, said


def test_a_service_unhealthy_before_it_was_ever_healthy_is_restarted_once() -> None:
    """A start that missed its health check's window (an agent that had not registered with
    LiveKit within a minute on a starved machine) gets a second start, said with the check's
    output, rather than failing the whole stack."""
    compose = _Restartable("agent", [_unhealthy("not ready: /tmp/registered is missing\n"),
                                     _HEALTHY])  # fmt: skip
    statuses, said = _wait(compose)
    assert compose.restarts == 1
    assert all(s.ok for s in statuses)
    assert any("agent: unhealthy before it was ever healthy (not ready: /tmp/registered is "
               "missing); restarting it once" in line for line in said), said


def test_a_service_unhealthy_again_after_its_restart_fails_with_its_health_check() -> None:
    import pytest

    from lkchaos.errors import ServiceUnhealthy

    compose = _Restartable("agent", [_unhealthy("not ready: a"), _unhealthy("not ready: b")])
    with pytest.raises(ServiceUnhealthy) as caught:
        _wait(compose)
    assert compose.restarts == 1
    message = str(caught.value)
    assert "'agent' is running (unhealthy: not ready: b) again, after a restart" in message
    assert "last lines of agent" in message


def test_a_service_unhealthy_after_it_was_healthy_is_not_restarted() -> None:
    """Healthy once, then failing: not a slow start but a fault; the wait ends on it."""
    import pytest

    from lkchaos.errors import ServiceUnhealthy

    first, *_ = layout.SERVICES
    compose = _Restartable(first, [_HEALTHY])
    statuses_seen = 0

    def reload_then_fail() -> None:
        nonlocal statuses_seen
        statuses_seen += 1
        container.attrs = {"State": _HEALTHY if statuses_seen == 1 else _unhealthy("GET /: 503")}

    # every other service starts "starting", so the first poll does not end the wait
    for service in layout.SERVICES[1:]:
        compose._containers[service] = _Container(
            {"Status": "running", "Health": {"Status": "starting"}})
    container = compose._containers[first]
    container.reload = reload_then_fail  # type: ignore[method-assign]
    with pytest.raises(ServiceUnhealthy, match=r"is running \(unhealthy: GET /: 503\)"):
        _wait(compose)
    assert compose.restarts == 0
