"""A stack started from another checkout of lkchaos is not silently replaced or removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lkchaos.errors import StackError
from lkchaos.stack.compose import CONFIG_FILES_LABEL, Compose
from lkchaos.stack.layout import StackPaths


class _Container:
    def __init__(self, service: str, files: str) -> None:
        self.name = f"lkchaos-{service}-1"
        self.labels = {"com.docker.compose.project": "lkchaos",
                       "com.docker.compose.service": service, CONFIG_FILES_LABEL: files}


class _Engine:
    """The engine's container list, as the Docker SDK gives it (filtered by label)."""

    def __init__(self, containers: list[_Container]) -> None:
        self.listed = containers
        self.containers = self

    def list(self, all: bool, filters: dict[str, str]) -> list[Any]:  # noqa: A002
        return [c for c in self.listed
                if filters["label"] == "com.docker.compose.project=lkchaos"]


def _compose(tmp_path: Path) -> Compose:
    (tmp_path / "docker-compose.chaos.yml").write_text("services: {}\n")
    return Compose(StackPaths(tmp_path))


def test_a_stack_started_from_another_checkout_is_named_and_refused(tmp_path: Path) -> None:
    compose = _compose(tmp_path)
    other = "/srv/old-clone/docker-compose.chaos.yml"
    engine = _Engine([_Container("dns", other), _Container("livekit-1", other)])
    assert compose.other_checkout(engine) == other
    with pytest.raises(StackError) as refused:
        compose.refuse_other_checkout(engine, "up")
    message = str(refused.value)
    assert f"started from another checkout ({other})" in message
    assert "`lkchaos stack up --take-over`" in message


def test_this_checkouts_own_stack_or_none_is_not_refused(tmp_path: Path) -> None:
    compose = _compose(tmp_path)
    mine = str((tmp_path / "docker-compose.chaos.yml").resolve())
    compose.refuse_other_checkout(_Engine([_Container("dns", mine)]), "down")
    compose.refuse_other_checkout(_Engine([]), "up")
    assert compose.other_checkout(_Engine([_Container("dns", "")])) is None  # unlabelled
