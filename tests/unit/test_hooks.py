"""Judging a room's webhooks: lost, duplicated, reordered and late events."""

from __future__ import annotations

from typing import Any

from lkchaos.hooks.probes import judge


def _event(kind: str, created: int, received: float, who: str = "", seq: int = 0,
           event_id: str = "") -> dict[str, Any]:
    return {"id": event_id or f"EV_{kind}_{who}_{created}", "event": kind, "room": "r",
            "participant": who, "created_at": created, "received_at": received, "seq": seq}


def _call(t0: int = 1_000) -> list[dict[str, Any]]:
    return [
        _event("room_started", t0, t0 + 0.2),
        _event("participant_joined", t0, t0 + 0.3, "caller"),
        _event("participant_joined", t0 + 1, t0 + 1.2, "agent"),
        _event("track_published", t0 + 1, t0 + 1.3, "caller"),
        _event("track_published", t0 + 2, t0 + 2.1, "agent"),
        _event("participant_left", t0 + 9, t0 + 9.1, "caller"),
        _event("participant_left", t0 + 9, t0 + 9.2, "agent"),
        _event("room_finished", t0 + 20, t0 + 20.4),
    ]


def test_a_whole_call_in_order_passes() -> None:
    verdict = judge(_call(), finished_expected=True, late_s=5)
    assert verdict["ok"], verdict
    assert verdict["participants"] == ["agent", "caller"]
    assert verdict["finished"] and verdict["max_delay_s"] == 0.0


def test_a_missing_leave_and_finish_are_lost() -> None:
    events = [e for e in _call() if not (e["event"] == "participant_left"
                                         and e["participant"] == "agent")][:-1]
    verdict = judge(events, finished_expected=True, late_s=5)
    assert not verdict["ok"]
    assert verdict["lost"] == ["participant_left (agent)", "room_finished"]


def test_not_waiting_for_the_finish_does_not_count_it_lost() -> None:
    verdict = judge(_call()[:-1], finished_expected=False, late_s=5)
    assert verdict["ok"] and verdict["lost"] == []


def test_a_redelivered_event_is_a_duplicate() -> None:
    events = _call()
    events.insert(3, dict(events[2], received_at=events[2]["received_at"] + 0.5))
    verdict = judge(events, finished_expected=True, late_s=5)
    assert not verdict["ok"]
    assert verdict["duplicates"] == [events[2]["id"]]


def test_an_event_overtaken_by_a_later_one_is_reordered() -> None:
    events = _call()
    events[5], events[7] = events[7], events[5]
    verdict = judge(events, finished_expected=True, late_s=5)
    assert not verdict["ok"]
    assert any("room_finished arrived before" in r for r in verdict["reordered"])
    assert any("created 1009" in r for r in verdict["reordered"])


def test_a_track_before_its_join_is_reordered() -> None:
    events = _call()
    events[1], events[3] = events[3], events[1]
    verdict = judge(events, finished_expected=True, late_s=5)
    assert verdict["reordered"] == [
        "participant_joined (created 1000) arrived after an event created 1001",
        "track_published of caller arrived before its join"]


def test_late_events_are_listed_and_fail_only_with_a_budget() -> None:
    events = _call()
    events[5] = dict(events[5], received_at=events[5]["created_at"] + 8.5)
    relaxed = judge(events, finished_expected=True, late_s=5)
    assert relaxed["ok"]
    assert relaxed["late"] == [{"event": "participant_left", "participant": "caller",
                                "delay_s": 7.5}]
    assert relaxed["max_delay_s"] == 7.5
    strict = judge(events, finished_expected=True, late_s=5, max_delay_s=5)
    assert not strict["ok"]


def test_a_participant_whose_every_event_was_lost_is_counted_lost() -> None:
    events = [e for e in _call() if e["participant"] != "agent"]
    assert judge(events, finished_expected=True, late_s=5)["ok"]  # invisible without a count
    verdict = judge(events, finished_expected=True, late_s=5, participants=2)
    assert not verdict["ok"]
    assert verdict["lost"] == ["participant_joined (2 participants expected, 1 seen)"]


def test_a_connection_that_aborted_before_it_was_active_has_no_join_or_leave_to_lose() -> None:
    # LiveKit sends participant_connection_aborted alone for a participant whose connection
    # never completed (its ICE failed, say): no join, no leave was ever due.
    t0 = 1_000
    events = _call(t0)
    events.insert(3, _event("participant_connection_aborted", t0 + 1, t0 + 1.4, "dropped"))
    verdict = judge(events, finished_expected=True, late_s=5)
    assert verdict["ok"], verdict
    assert "dropped" in verdict["participants"]
