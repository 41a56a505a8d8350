"""Held participants: arguments checked before anything joins, and bounded."""

from __future__ import annotations

from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit import actions, hold
from tests.unit.answering import serving


@pytest.mark.parametrize(
    ("room", "count", "duration", "message"),
    [
        ("", 2, 60, "room must be"),
        ("-rf", 2, 60, "room must be"),
        ("a b", 2, 60, "room must be"),
        ("x" * 101, 2, 60, "room must be"),
        ("held", 0, 60, "count must be"),
        ("held", 21, 60, "count must be"),
        ("held", True, 60, "count must be"),
        ("held", 2.5, 60, "count must be"),
        ("held", 2, 0, "duration_s must be"),
        ("held", 2, 3601, "duration_s must be"),
        ("held", 2, "60", "duration_s must be"),
    ],
)
def test_bad_holds_are_refused(room: Any, count: Any, duration: Any, message: str) -> None:
    with pytest.raises(hold.HoldError, match=message):
        hold.check(room, count, duration)
    with pytest.raises(ActivityFailed, match=message):
        actions.hold_participants(room, count, duration)


def test_identities_are_marked_as_lkchaos_own() -> None:
    assert hold.identities(3) == ["lkchaos-held-1", "lkchaos-held-2", "lkchaos-held-3"]
    assert hold.check("held-room.1", 20, 3600) == ("held-room.1", 20, 3600.0)


def test_a_holder_token_cannot_publish_or_dispatch_an_agent() -> None:
    from livekit import api

    token = hold.holder_token("key", "secret-of-at-least-32-characters!!", "held", "h-1", 60)
    claims = api.TokenVerifier("key", "secret-of-at-least-32-characters!!").verify(token)
    assert claims.identity == "h-1"
    assert claims.video is not None and claims.video.room == "held"
    assert claims.video.can_publish is False and claims.video.room_join is True
    assert claims.room_config is None or not claims.room_config.agents


def test_release_of_a_room_never_held_is_not_an_error() -> None:
    import asyncio

    assert asyncio.run(hold.Holds().release("nobody-here")) == {
        "room": "nobody-here", "released": 0, "connected_at_release": 0}


# -- a hold the prober never received leaves no fault ------------------------------------------
def _configuration(prober_url: str) -> dict[str, Any]:
    return {"voice_prober_url": prober_url, "livekit_api_key": "devkey",
            "livekit_api_secret": "a-secret-of-at-least-thirty-two-chars"}  # fmt: skip


def test_a_hold_the_prober_never_received_leaves_no_fault_behind() -> None:
    from lkchaos.safety import audit, ledger
    from lkchaos.settings import Settings
    from tests.unit.livekit_dev import free_port

    configuration = _configuration(f"http://127.0.0.1:{free_port()}")  # nothing listens
    with pytest.raises(ActivityFailed, match="did not answer POST /hold"):
        actions.hold_participants("held-room", configuration=configuration)
    state = Settings.load(configuration).state_dir
    assert ledger.pending(state) == []  # the next run is not refused for a fault never made
    outcomes = [(e["outcome"], e["target"]) for e in audit.read(state)]
    assert outcomes == [("injected", "held-room"), ("not injected", "held-room")]


def test_a_hold_the_prober_received_and_failed_stays_to_be_undone() -> None:
    # The prober may have held some participants before it failed: release them later.
    from lkchaos.safety import ledger
    from lkchaos.settings import Settings

    with serving(500, b'{"error": "could not join"}') as url:
        configuration = _configuration(url)
        with pytest.raises(ActivityFailed, match="the voice prober failed: 500"):
            actions.hold_participants("held-room", configuration=configuration)
        pending = ledger.pending(Settings.load(configuration).state_dir)
        assert [f.describe() for f in pending] == ["held_participants on held-room"]
