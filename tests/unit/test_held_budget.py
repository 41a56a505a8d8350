"""A held turn's latency budget (``held_call_turn`` with ``max_latency_s``).

A reply answered right but late is a failed sample (``slow_reply``), as in the one-shot round
trip; and a session waiting longer than the budget for its reply's first audio is overdue at
once, since that reply can only be slow now. Waits for the room or the agent keep
``overdue_s``: the budget is a reply's. The probe's wiring is tested with a backend that plays
a scripted call.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.preflight import check_call
from lkchaos.voice import held
from lkchaos.voice.session import Options

CONFIGURATION = {"livekit_url": "ws://127.0.0.1:1", "voice_prober_url": ""}
SECRETS = {"livekit": {"api_key": "k", "api_secret": "s"}}


class _Scripted:
    """One call: each ``turns`` answers with the next of ``script`` (a turn, or a wait)."""

    def __init__(self, script: list[dict[str, Any]]) -> None:
        self.script = script

    def start(self, options: Options) -> tuple[str, str]:
        return "c1", "room-1"

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        step = self.script[0] if len(self.script) == 1 else self.script.pop(0)
        if "waiting" in step:
            return {"waiting": step["waiting"], "turns": [], "state": "talking"}
        return {"turns": [{"turn": after + 1, "ended_at": time.time(), **step}],
                "state": "talking"}

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        return {"turns": 0}


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    def play(script: list[dict[str, Any]]) -> None:
        monkeypatch.setattr(held, "backend", lambda _settings: _Scripted(script))

    yield play
    held._handles.pop("budget", None)


def _turn(**arguments: Any) -> dict[str, Any]:
    return held.turn("budget", configuration=CONFIGURATION, secrets=SECRETS, **arguments)


def test_a_right_answer_over_the_budget_is_a_slow_reply(scripted: Any) -> None:
    scripted([{"ok": True, "stage": "ok", "latency_s": 3.6, "reason": "heard '5'"},
              {"ok": True, "stage": "ok", "latency_s": 1.2, "reason": "heard '7'"}])
    slow, fast = _turn(max_latency_s=3.0), _turn(max_latency_s=3.0)
    assert slow["ok"] is False and slow["stage"] == "slow_reply", slow
    assert "in 3.60 s, over 3 s" in slow["reason"] and slow["latency_s"] == 3.6
    assert fast["ok"] is True and fast["stage"] == "ok", fast


def test_without_a_budget_a_late_right_answer_passes(scripted: Any) -> None:
    scripted([{"ok": True, "stage": "ok", "latency_s": 9.0, "reason": "heard '5'"}])
    assert _turn()["ok"] is True


def test_a_failed_turn_keeps_its_own_stage(scripted: Any) -> None:
    scripted([{"ok": False, "stage": "wrong_reply", "latency_s": 4.0, "reason": "heard '6'"}])
    assert _turn(max_latency_s=3.0)["stage"] == "wrong_reply"


def test_a_reply_awaited_past_the_budget_is_overdue_before_overdue_s(scripted: Any) -> None:
    scripted([{"waiting": {"for": "reply", "s": 3.4}}])
    sample = _turn(timeout=5, overdue_s=6, every_s=0.2, max_latency_s=3.0)
    assert sample["ok"] is False and sample["stage"] == "overdue", sample
    assert sample["reason"] == "waiting 3.4 s for its reply, over the 3 s latency budget"


def test_the_budget_is_a_replys_not_the_agents_or_the_rooms(scripted: Any) -> None:
    scripted([{"waiting": {"for": "agent", "s": 4.0}}])
    sample = _turn(timeout=0.6, overdue_s=6, every_s=0.2, max_latency_s=3.0)
    assert sample["stage"] == "no_turn", sample  # 4 s for the agent is not over overdue_s
    held._handles.pop("budget", None)
    scripted([{"waiting": {"for": "join", "s": 6.5}}])
    sample = _turn(timeout=5, overdue_s=6, every_s=0.2, max_latency_s=3.0)
    assert sample["reason"] == "waiting 6.5 s for its room to be joined, over 6 s", sample


@pytest.mark.parametrize("value", [0, -1, 121, True, "3"])
def test_a_bad_budget_is_refused_before_any_call_and_by_the_preflight(
        scripted: Any, value: Any) -> None:  # fmt: skip
    scripted([{"ok": True, "stage": "ok", "latency_s": 1.0}])
    with pytest.raises(ActivityFailed, match="max_latency_s must be more than 0"):
        _turn(max_latency_s=value)
    assert "budget" not in held._handles
    problems = check_call("lkchaos.voice.probes", "held_call_turn", {"max_latency_s": value})
    assert any("max_latency_s" in str(p) for p in problems), problems
