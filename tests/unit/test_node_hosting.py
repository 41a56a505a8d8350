"""Which LiveKit node ``kill_node_hosting`` picks when given a room prefix, and its arguments."""

from __future__ import annotations

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.livekit.actions import _check_hosting, busiest_room

LIVE = {"ND_a", "ND_b"}


def test_the_node_with_the_most_prefixed_rooms_is_picked() -> None:
    rooms = {"lkchaos-held-1": "ND_a", "lkchaos-held-2": "ND_b", "lkchaos-held-3": "ND_b",
             "other-1": "ND_a", "other-2": "ND_a"}  # fmt: skip
    assert busiest_room(rooms, LIVE, "lkchaos-held-") == "lkchaos-held-2"


def test_rooms_of_a_node_that_is_gone_are_left_out() -> None:
    # LiveKit never removes the rooms of a killed node from room_node_map.
    rooms = {"lkchaos-held-1": "ND_a", "lkchaos-held-2": "ND_dead", "lkchaos-held-3": "ND_dead"}
    assert busiest_room(rooms, LIVE, "lkchaos-held-") == "lkchaos-held-1"


def test_a_tie_goes_to_the_node_of_the_first_room_by_name() -> None:
    rooms = {"lkchaos-held-b": "ND_b", "lkchaos-held-a": "ND_a"}
    assert busiest_room(rooms, LIVE, "lkchaos-held-") == "lkchaos-held-a"


def test_no_prefixed_room_on_a_live_node_is_none() -> None:
    assert busiest_room({"lkchaos-held-1": "ND_dead", "x": "ND_a"}, LIVE, "lkchaos-held-") is None
    assert busiest_room({}, LIVE, "lkchaos-held-") is None


@pytest.mark.parametrize(("room", "prefix"), [(None, None), ("a-room", "lkchaos-held-")])
def test_exactly_one_of_room_and_room_prefix(room: str | None, prefix: str | None) -> None:
    with pytest.raises(ActivityFailed, match="exactly one of room"):
        _check_hosting(room, prefix)


def test_an_empty_prefix_is_refused() -> None:
    with pytest.raises(ActivityFailed, match="room_prefix"):
        _check_hosting(None, "")
