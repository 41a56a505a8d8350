"""A pause the container runtime could not make is tried again (runc: "unable to freeze")."""

from __future__ import annotations

import pytest
from chaoslib.exceptions import ActivityFailed
from docker.errors import APIError

from lkchaos.docker.actions import _pause

FREEZE = 'Cannot pause container 8bdd: OCI runtime pause failed: unable to freeze: unknown'


class _Container:
    def __init__(self, failures: int, message: str = FREEZE) -> None:
        self.failures, self.message, self.calls = failures, message, 0

    def pause(self) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise APIError(self.message)


def test_a_freeze_that_failed_is_tried_again() -> None:
    container = _Container(failures=2)
    _pause(container, "whisper", retry_s=0.0)
    assert container.calls == 3


def test_a_freeze_that_keeps_failing_says_so_and_that_the_service_runs() -> None:
    container = _Container(failures=5)
    with pytest.raises(ActivityFailed, match="whisper could not be paused: the container "
                                             "runtime failed to freeze its processes 3 times"):
        _pause(container, "whisper", retry_s=0.0)
    assert container.calls == 3


def test_other_engine_errors_are_not_tried_again() -> None:
    container = _Container(failures=1, message="No such container: 8bdd")
    with pytest.raises(APIError):
        _pause(container, "whisper", retry_s=0.0)
    assert container.calls == 1
