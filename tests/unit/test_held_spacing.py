"""Held calls of one group keep their questions apart (``Options.group``, ``spacing_s``).

After a fault every held call waits for the same thing and is ready to ask at the same moment;
without spacing they stay in step and the sampled series gets its turns in pairs. The claim is
tested with explicit clock values; the probe's wiring with a backend that records what it is
asked to start.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.voice import held, session
from lkchaos.voice.session import Options, claim_question


def test_a_question_within_the_spacing_of_the_groups_last_waits_for_the_rest() -> None:
    group = "spacing-test-a"
    assert claim_question(group, 2.0, 100.0) == 0.0  # the first claims at once
    assert claim_question(group, 2.0, 100.5) == pytest.approx(1.5)  # in step: waits
    assert claim_question(group, 2.0, 101.2) == pytest.approx(0.8)  # still not claimed
    assert claim_question(group, 2.0, 102.0) == 0.0  # spaced: claims
    assert claim_question(group, 2.0, 102.1) == pytest.approx(1.9)  # from the new claim
    assert claim_question("spacing-test-b", 2.0, 102.1) == 0.0  # another group is apart


def test_a_group_silent_for_an_hour_is_forgotten() -> None:
    claim_question("spacing-test-old", 2.0, 1000.0)
    claim_question("spacing-test-new", 2.0, 1000.0 + session._GROUP_IDLE_S + 1)
    assert "spacing-test-old" not in session._LAST_ASKED
    assert "spacing-test-new" in session._LAST_ASKED


@pytest.mark.parametrize("values", [{"spacing_s": -1}, {"spacing_s": 61}, {"spacing_s": True},
                                    {"group": 7}, {"group": "g" * 101}])
def test_bad_spacing_options_are_refused(values: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="spacing_s|group"):
        Options.from_dict(values)


class _Recording:
    """A backend whose calls answer a turn at once, keeping the options they were given."""

    def __init__(self) -> None:
        self.started: list[Options] = []

    def start(self, options: Options) -> tuple[str, str]:
        self.started.append(options)
        return f"c{len(self.started)}", f"room-{len(self.started)}"

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        now = time.time()
        return {"turns": [{"ok": True, "stage": "ok", "turn": after + 1, "ended_at": now}],
                "state": "talking"}

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        return {"turns": 0}


def test_the_turn_probe_spaces_its_callers_by_their_stagger(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    recording = _Recording()
    monkeypatch.setattr(held, "backend", lambda _settings: recording)
    configuration = {"livekit_url": "ws://127.0.0.1:1", "voice_prober_url": ""}
    secrets = {"livekit": {"api_key": "k", "api_secret": "s"}}
    try:
        held.turn("spaced", callers=3, stagger_s=2.5, configuration=configuration,
                  secrets=secrets)  # fmt: skip
        held.turn("alone", callers=1, configuration=configuration, secrets=secrets)
    finally:
        for name in ("spaced", "alone"):
            held._handles.pop(name, None)
    spaced, alone = recording.started[:3], recording.started[3]
    assert {o.group for o in spaced} == {spaced[0].group} and spaced[0].group.startswith("spaced")
    assert [o.spacing_s for o in spaced] == [2.5, 2.5, 2.5]
    assert [o.start_delay_s for o in spaced] == [0.0, 2.5, 5.0]
    assert alone.group == "" and alone.spacing_s == 0.0  # one caller: nothing to keep apart


def test_a_bad_stagger_is_refused_before_any_call_starts(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    recording = _Recording()
    monkeypatch.setattr(held, "backend", lambda _settings: recording)
    with pytest.raises(ActivityFailed, match="spacing_s|start_delay_s"):
        held.turn("bad-stagger", callers=2, stagger_s=61,
                  configuration={"livekit_url": "ws://127.0.0.1:1", "voice_prober_url": ""},
                  secrets={"livekit": {"api_key": "k", "api_secret": "s"}})  # fmt: skip
    assert recording.started == [] and "bad-stagger" not in held._handles
