"""Integration tests run against the live reference stack (`lkchaos stack up` first)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from lkchaos.settings import Settings
from lkchaos.stack.compose import Compose, docker_client
from lkchaos.stack.health import require_running
from lkchaos.stack.layout import StackPaths


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
    # Tests marked order_last (the scan of everything the run produced) run after the rest.
    items.sort(key=lambda item: item.get_closest_marker("order_last") is not None)


@pytest.fixture(scope="session")
def settings() -> Settings:
    return Settings.load()


@pytest.fixture(scope="session")
def docker() -> Iterator[object]:
    client = docker_client()
    yield client
    client.close()


@pytest.fixture(scope="session", autouse=True)
def stack_is_up(docker: object) -> None:
    """Fail (not skip) when the stack is not healthy: these tests exist to run against it."""
    require_running(Compose(StackPaths.discover()), docker)


def wait_baseline(timeout: float = 120) -> dict[str, Any]:
    """The baseline probe, retried until ok or ``timeout`` s (services may still be starting)."""
    from lkchaos.safety.probes import baseline

    deadline = time.monotonic() + timeout
    while True:
        state = baseline()
        if state["ok"] or time.monotonic() > deadline:
            return state
        time.sleep(1)
