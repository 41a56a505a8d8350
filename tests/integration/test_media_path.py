"""The voice round trip reports the media path its call took (from the SDK's RTC stats)."""

from __future__ import annotations

from lkchaos.voice.probes import voice_round_trip


def test_a_call_on_the_stack_network_goes_direct_over_udp() -> None:
    result = voice_round_trip(timeout=45)
    # The path is read once the reply's audio has come: what the caller made of the reply
    # (the probe's own Whisper mishears about one reply in a hundred) is not this test's.
    assert result["latency_s"] is not None, result
    publisher = result["media_path"]["publisher"]
    assert publisher["path"] == "udp" and publisher["candidate_type"] == "host", publisher
    assert publisher["remote"].endswith(":7882"), publisher  # LiveKit's muxed ICE/UDP port
    # The subscriber's stats may name no selected pair (then its path is unknown, not wrong).
    assert result["media_path"]["subscriber"]["path"] in (None, "udp"), result["media_path"]
