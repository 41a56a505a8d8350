"""Held conversations on the reference stack: one caller, many turns, the same room. (Several
callers side by side: the held-call experiments and the load ramp.)"""

from __future__ import annotations

import asyncio
import time

from livekit import api

from lkchaos.settings import Settings
from lkchaos.voice.probes import held_conversation


def _participants(room: str) -> list[str]:
    settings = Settings.load()
    key, secret = settings.require_keys()

    async def go() -> list[str]:
        async with api.LiveKitAPI(settings.livekit_node_urls[0], key, secret) as lk:
            try:
                found = await lk.room.list_participants(api.ListParticipantsRequest(room=room))
            except api.TwirpError:
                return []
            return [p.identity for p in found.participants]

    return asyncio.run(go())


def _empties(room: str, within_s: float = 30.0) -> list[str]:
    """The room's participants once it is empty, or as they are after ``within_s``: the
    caller leaves at once, the agent when LiveKit ends its job (departure_timeout 10 s)."""
    deadline = time.monotonic() + within_s
    while (left := _participants(room)) and time.monotonic() < deadline:
        time.sleep(1)
    return left


def _agent_serves(within_s: float = 90.0) -> None:
    """Wait until a fresh call is answered: a held call's room is dispatched its agent once,
    when it is created, and LiveKit does not retry a dispatch that found no worker (an earlier
    test's fault may have left the worker re-registering)."""
    from lkchaos.voice.probes import voice_round_trip

    deadline = time.monotonic() + within_s
    while not (result := voice_round_trip(timeout=30))["ok"]:
        assert time.monotonic() < deadline, f"no caller answered within {within_s:g} s: {result}"
        time.sleep(2)


def test_a_held_conversation_of_ten_turns_passes_in_one_room() -> None:
    _agent_serves()
    result = held_conversation(turns=10, min_answered_pct=90.0, timeout=240)
    assert result["ok"], result["turn_results"]
    assert result["turns"] == 10 and result["agents_seen"] == 1 and result["reconnects"] == 0
    assert [t["turn"] for t in result["turn_results"]] == list(range(1, 11))
    assert result["latency_p50_s"] is not None and result["latency_p50_s"] < 3.0, result
    assert not any(p.startswith("caller-") for p in _participants(result["room"]))
    assert _empties(result["room"]) == []  # the agent followed


def test_a_room_created_while_the_agents_link_was_cut_is_answered_once_it_is_back() -> None:
    """LiveKit offers a room's dispatch to a worker once, when the room is created, and never
    again: a call that starts while the agent's link to LiveKit is cut (its worker not
    registered) would wait for ever. The reference agent dispatches itself again to such
    rooms once it has registered (stack/voice/voicestack/stranded.py)."""
    from lkchaos.toxiproxy.actions import disable_proxy, enable_proxy
    from lkchaos.voice.probes import end_held_call, held_call_turn

    _agent_serves()
    caller = "created-during-cut"
    disable_proxy("agent_livekit")
    try:
        first = held_call_turn(caller=caller, timeout=20)  # its room is created now
        assert first["stage"] in ("no_agent", "no_turn"), first
        time.sleep(3)
    finally:
        enable_proxy("agent_livekit")
    try:
        deadline = time.monotonic() + 60
        turns = [first]
        while not turns[-1]["ok"] and time.monotonic() < deadline:
            turns.append(held_call_turn(caller=caller, timeout=30))
    finally:
        summary = end_held_call(caller=caller)
    assert turns[-1]["ok"], [(t["stage"], t["reason"]) for t in turns]
    assert turns[-1]["room"] == first["room"] and summary["calls"] == 1, summary
    assert summary["agents_seen"] == 1, summary
