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
