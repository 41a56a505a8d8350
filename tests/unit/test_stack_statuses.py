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
