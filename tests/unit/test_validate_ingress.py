"""The Ingress/Egress checks: n/a without Ingress or Egress, and real RTMP and WHIP publishes
through the loopback LiveKit + Ingress of test_ingress_live's fixture."""

from __future__ import annotations

import shutil

import pytest

from lkchaos.ingress import whip
from lkchaos.settings import Settings
from lkchaos.validate.checks import ingress
from lkchaos.validate.model import CHECKS, Context
from tests.unit.test_ingress_live import Stack, stack  # noqa: F401

#: The group's items this module checks (TURN integration is checked with the TURN items).
ITEMS = [i for i, f in CHECKS.items() if f.__module__ == ingress.__name__]
EGRESS = ["ingress-egress.recording-functionality-working",
          "ingress-egress.export-formats-supported", "ingress-egress.file-storage-integration",
          "ingress-egress.webhook-notifications-sent", "ingress-egress.cleanup-after-recording"]
NO_PUSHER = shutil.which("gst-launch-1.0") is None and shutil.which("ffmpeg") is None
#: Publishes through test_ingress_live's Ingress: run, as those are, with the host's CPU idle.
pytestmark = pytest.mark.idle_cpu


def test_every_item_of_the_group_has_a_check() -> None:
    from lkchaos.validate.model import items

    group = {i.id for i in items() if i.id.startswith("ingress-egress.")}
    assert group - set(ITEMS) == {"ingress-egress.turn-integration"}


def test_without_ingress_or_egress_nothing_applies() -> None:
    bare = Settings(roles={"livekit_node": ("lk",)}, ingress_rtmp_url="", ingress_whip_url="")
    ctx = Context(bare)
    for item in ITEMS:
        found = CHECKS[item](ctx)
        assert found.status == "n/a", (item, found)
    assert "no Ingress" in CHECKS["ingress-egress.rtmp-streams-accepted"](ctx).evidence
    assert "no Egress" in CHECKS[EGRESS[0]](ctx).evidence


def test_egress_named_is_manual() -> None:
    ctx = Context(Settings(roles={"egress": ("egress",)}, ingress_rtmp_url="",
                           ingress_whip_url=""))  # fmt: skip
    assert {CHECKS[i](ctx).status for i in EGRESS} == {"manual"}


def test_webhooks_of_an_ingress_room_are_judged() -> None:
    events = [{"id": str(i), "event": kind, "participant": who, "created_at": 100 + i,
               "received_at": 101.0 + i}
              for i, (kind, who) in enumerate([("room_started", ""),
                                               ("participant_joined", "lkchaos-rtmp-1"),
                                               ("track_published", "lkchaos-rtmp-1"),
                                               ("participant_left", "lkchaos-rtmp-1")])]
    assert ingress.judge_webhooks(events)["ok"] is True
    lost = ingress.judge_webhooks(events[:3])
    assert lost["ok"] is False and lost["lost"] == ["participant_left (lkchaos-rtmp-1)"]


def test_webhooks_need_a_receiver(stack: Stack) -> None:  # noqa: F811
    from dataclasses import replace

    ctx = Context(replace(stack.settings(), receiver_url=""))
    found = CHECKS["ingress-egress.webhook-notifications-sent"](ctx)
    assert found.status == "n/a" and "no webhook receiver" in found.evidence


@pytest.mark.skipif(NO_PUSHER, reason="apt-get install gstreamer1.0-tools or ffmpeg")
def test_rtmp_is_accepted_forwarded_and_authenticated(stack: Stack) -> None:  # noqa: F811
    ctx = Context(stack.settings(), timeout_s=30.0)
    accepted = CHECKS["ingress-egress.rtmp-streams-accepted"](ctx)
    assert accepted.status == "pass", f"{accepted}\n{stack.logs()}"
    assert accepted.data["deleted"] is True
    forwarded = CHECKS["ingress-egress.stream-forwarding-livekit"](ctx)
    assert forwarded.status == "pass"
    assert {t["type"] for t in forwarded.data["tracks"]} >= {"audio", "video"}
    auth = CHECKS["ingress-egress.authentication-working"](ctx)
    assert auth.status == "pass", auth.evidence
    assert auth.data["refused"] is True and "lkchaos-wrong-key" not in auth.evidence


@pytest.mark.skipif(whip.aiortc_missing(), reason="pip install lkchaos[ingress] (aiortc)")
def test_whip_negotiates_and_streams(stack: Stack) -> None:  # noqa: F811
    ctx = Context(stack.settings(), timeout_s=30.0)
    for item in ("ingress-egress.whip-endpoint-accessible",
                 "ingress-egress.sdp-negotiation-successful",
                 "ingress-egress.media-streaming-working",
                 "ingress-egress.ice-candidate-handling"):
        found = CHECKS[item](ctx)
        assert found.status == "pass", f"{item}: {found}\n{stack.logs()}"


def _scripted(monkeypatch: pytest.MonkeyPatch, *stages: str | None) -> list[float]:
    """Make each publish of the RTMP checks return the next of ``stages`` (None: got
    through); the list returned fills with each publish's track bound."""
    from lkchaos.ingress import probes

    bounds: list[float] = []
    left = list(stages)

    def publish(_run: object, timeout: float) -> dict[str, object]:
        bounds.append(timeout)
        stage = left.pop(0)
        return {"kind": "rtmp", "room": f"room-{len(bounds)}", "endpoint": "rtmp://in/x",
                "stage": stage, "state": "ENDPOINT_BUFFERING" if stage else "ENDPOINT_PUBLISHING",
                "state_error": "", "time_to_participant_s": 0.3,
                "time_to_tracks_s": None if stage else 1.8, "deleted": True,
                "tracks": [] if stage else [{"type": "audio"}, {"type": "video"}],
                "reason": {None: "", "tracks": "no video track from x within 4 s",
                           "push": "gst-launch-1.0 exited with 1: connection refused"}[stage]}

    monkeypatch.setattr(probes, "_retrying", publish)
    monkeypatch.setattr(probes, "_check_pusher", lambda _name: "gst-launch-1.0")
    return bounds


def _ctx(timeout_s: float) -> Context:
    return Context(Settings(roles={"ingress": ("ingress",)}, livekit_api_key="key",
                            livekit_api_secret="secret-" * 4), timeout_s=timeout_s)


def test_a_stream_that_reaches_the_room_only_at_the_second_publish_is_a_warning(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    bounds = _scripted(monkeypatch, "tracks", None)
    ctx = _ctx(10.0)
    forwarded = CHECKS["ingress-egress.stream-forwarding-livekit"](ctx)
    assert forwarded.status == "warn", forwarded
    assert ("at the second publish only, the first publish failed at tracks: no video track "
            "from x within 4 s (the ingress was ENDPOINT_BUFFERING)") in forwarded.evidence
    assert forwarded.data["room"] == "room-2" and forwarded.data["earlier"]["room"] == "room-1"
    # The stream was accepted both times; the same two publishes judge every RTMP item.
    assert CHECKS["ingress-egress.rtmp-streams-accepted"](ctx).status == "pass"
    assert bounds == [4.0, 4.0]


def test_a_stream_that_never_reaches_the_room_fails_after_two_publishes(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    bounds = _scripted(monkeypatch, "tracks", "tracks")
    forwarded = CHECKS["ingress-egress.stream-forwarding-livekit"](_ctx(30.0))
    assert forwarded.status == "fail"
    assert forwarded.evidence.startswith("RTMP publish failed at tracks: no video track")
    assert bounds == [13.0, 13.0]


def test_a_whip_offer_failed_by_the_server_is_offered_again_and_warned_of(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A WHIP endpoint answering 503 once (a LiveKit node slow to answer the ingress) and
    then taking the offer: the items the first offer failed warn, naming the answer."""
    from lkchaos.ingress import probes, whip

    monkeypatch.setattr(whip, "aiortc_missing", lambda: False)
    answers = [{"stage": "push", "answered": 503, "state": "ENDPOINT_ERROR",
                "state_error": "no response from servers",
                "reason": "POST http://in/w/<key> answered 503: no response from servers"},
               {"stage": None, "state": "ENDPOINT_PUBLISHING", "state_error": "",
                "reason": "", "time_to_participant_s": 0.4, "time_to_tracks_s": 1.6,
                "tracks": [{"type": "audio"}, {"type": "video"}]}]  # fmt: skip

    def publish(_run: object, timeout: float) -> dict[str, object]:
        return {"kind": "whip", "endpoint": "http://in/w", "deleted": True,
                "time_to_participant_s": None, "time_to_tracks_s": None, "tracks": [],
                **answers.pop(0)}  # fmt: skip

    monkeypatch.setattr(probes, "_retrying", publish)
    ctx = _ctx(10.0)
    media = CHECKS["ingress-egress.media-streaming-working"](ctx)
    sdp = CHECKS["ingress-egress.sdp-negotiation-successful"](ctx)
    assert (media.status, sdp.status) == ("warn", "warn"), (media, sdp)
    assert ("the first publish failed at push: POST http://in/w/<key> answered 503: no "
            "response from servers (the ingress was ENDPOINT_ERROR)") in sdp.evidence
    # The endpoint was reached and the ingress created both times.
    assert CHECKS["ingress-egress.whip-endpoint-accessible"](ctx).status == "pass"
    assert answers == []


@pytest.mark.parametrize("stage", ["push", None])
def test_a_refused_or_whole_publish_is_not_repeated(
        monkeypatch: pytest.MonkeyPatch, stage: str | None) -> None:  # fmt: skip
    bounds = _scripted(monkeypatch, stage, None)
    forwarded = CHECKS["ingress-egress.stream-forwarding-livekit"](_ctx(10.0))
    assert forwarded.status == ("fail" if stage else "pass"), forwarded
    assert "earlier" not in forwarded.data and len(bounds) == 1
