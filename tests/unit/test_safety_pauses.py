"""An interrupted activity's pause after it is skipped; every other pause is kept.

Runs chaoslib's own ``execute_activity`` on python-provider activities of this module; the
clock's underlying ``time.sleep`` is recorded instead of slept."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from chaoslib import activity as chaoslib_activity
from chaoslib.exceptions import ActivityFailed

from lkchaos.safety import pauses

MODULE = __name__


def interrupted() -> None:
    raise KeyboardInterrupt("Ctrl-C while the fault was being injected")


def exited() -> None:
    raise SystemExit(1)


def failed() -> None:
    raise ActivityFailed("the fault could not be verified")


def succeeded() -> dict[str, Any]:
    return {"ok": True}


def action(func: str, after: float = 30) -> dict[str, Any]:
    return {"type": "action", "name": func,
            "provider": {"type": "python", "module": MODULE, "func": func},
            "pauses": {"after": after}}  # fmt: skip


@pytest.fixture()
def slept(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """The clock installed in chaoslib (as the safety control does); the seconds of every
    real sleep it asked for, recorded instead of slept."""
    calls: list[float] = []
    monkeypatch.setattr(pauses.time, "sleep", calls.append)
    monkeypatch.setattr(chaoslib_activity, "time", pauses.time)
    assert pauses.install()
    assert isinstance(chaoslib_activity.time, pauses.PauseClock)
    assert pauses.install()  # twice: still one clock
    yield calls


def run(activity: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = chaoslib_activity.execute_activity(
        {"title": "t"}, activity, {}, {}, dry=None
    )
    return result


@pytest.mark.parametrize(("func", "expected"), [
    ("interrupted", KeyboardInterrupt), ("exited", SystemExit),
])
def test_an_interrupted_activity_skips_its_pause(
    func: str, expected: type[BaseException], slept: list[float]
) -> None:
    with pytest.raises(expected):
        run(action(func))
    assert slept == []


def test_a_finished_activity_pauses(slept: list[float]) -> None:
    assert run(action("succeeded"))["status"] == "succeeded"
    assert slept == [30]


def test_a_failed_activity_still_pauses_as_chaoslib_makes_it(slept: list[float]) -> None:
    assert run(action("failed", after=7))["status"] == "failed"
    assert slept == [7]


def test_a_pause_while_handling_an_earlier_interrupt_is_kept(slept: list[float]) -> None:
    # Rollbacks played after an interrupted method run inside the handler of that interrupt:
    # their pauses are theirs, the interrupt does not unwind through them.
    try:
        interrupted()
    except KeyboardInterrupt:
        assert run(action("succeeded", after=2))["status"] == "succeeded"
    assert slept == [2]


def test_the_clock_is_the_time_module_otherwise() -> None:
    clock = pauses.PauseClock()
    assert clock.monotonic() <= clock.monotonic()
    assert clock.time is pauses.time.time


def test_another_chaoslib_without_a_module_time_is_left_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(chaoslib_activity, "time")
    assert pauses.install() is False
    assert not hasattr(chaoslib_activity, "time")
