"""An action's effect is looked for within a bounded wait; "not yet" is never a pass."""

from __future__ import annotations

import itertools

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos import verify


def test_returns_the_first_result_that_holds_and_how_long_it_took() -> None:
    seen = itertools.count()
    value, took = verify.until(lambda: next(seen), lambda n: n >= 3, "counting", wait=5)
    assert value == 3 and 0 <= took < 5


def test_a_look_that_raises_counts_as_not_yet() -> None:
    failures = iter([ConnectionError("refused"), ConnectionError("refused")])

    def look() -> str:
        failure = next(failures, None)
        if failure is not None:
            raise failure
        return "up"

    assert verify.until(look, lambda s: s == "up", "service up", wait=5)[0] == "up"


def test_never_in_effect_names_what_and_the_last_thing_seen() -> None:
    with pytest.raises(verify.NotInEffect, match=r"toxic x: not in effect 0.1 s .*last seen: 'no'"):
        verify.until(lambda: "no", lambda s: s == "yes", "toxic x", wait=0.1)


def test_not_in_effect_is_an_activity_failure() -> None:
    assert issubclass(verify.NotInEffect, ActivityFailed)


def test_every_look_failing_says_so() -> None:
    def look() -> str:
        raise OSError("engine gone")

    with pytest.raises(verify.NotInEffect, match="OSError: engine gone"):
        verify.until(look, bool, "anything", wait=0.1)


@pytest.mark.parametrize(("raw", "expected"), [("", 10.0), ("2.5", 2.5), ("x", 10.0),
                                               ("-1", 10.0)])  # fmt: skip
def test_the_wait_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, raw: str, expected: float
) -> None:
    monkeypatch.setenv("LKCHAOS_VERIFY_S", raw)
    assert verify.wait_s() == expected
