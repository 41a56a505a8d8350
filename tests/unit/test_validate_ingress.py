"""The Ingress/Egress checks: n/a without Ingress or Egress, and real RTMP and WHIP publishes
through the loopback LiveKit + Ingress of test_ingress_live's fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from lkchaos.ingress import whip
from lkchaos.settings import Settings
from lkchaos.validate.checks import ingress
from lkchaos.validate.model import CHECKS, Context
from tests.unit.test_ingress import GST_REFUSED, failing_with
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


# --- an Ingress that cannot be reached is no refusal ---------------------------------------


@pytest.mark.skipif(NO_PUSHER, reason="apt-get install gstreamer1.0-tools or ffmpeg")
def test_authentication_is_not_judged_when_the_rtmp_endpoint_cannot_be_reached(
        stack: Stack) -> None:  # noqa: F811  # fmt: skip
    """LiveKit creates the ingress, but nothing listens at the RTMP URL: every push ends at
    once, the wrong key's as the right key's, and no refusal was heard."""
    from dataclasses import replace

    from tests.unit.livekit_dev import free_port

    closed = f"rtmp://127.0.0.1:{free_port()}/x"
    ctx = Context(replace(stack.settings(), ingress_rtmp_url=closed), timeout_s=20.0)
    auth = CHECKS["ingress-egress.authentication-working"](ctx)
    assert auth.status == "error", auth
    assert auth.evidence.startswith("nothing learned of authentication: the push with the "
                                    "right stream key was not accepted either (RTMP publish "
                                    "failed at push: ")  # fmt: skip
    assert "Connection refused" in auth.evidence and auth.data["refused"] is False
    assert CHECKS["ingress-egress.rtmp-streams-accepted"](ctx).status == "fail"


@pytest.mark.skipif(whip.aiortc_missing(), reason="pip install lkchaos[ingress] (aiortc)")
def test_a_whip_endpoint_that_cannot_be_reached_is_not_accessible(
        stack: Stack) -> None:  # noqa: F811  # fmt: skip
    """LiveKit creates the ingress, but nothing listens at the WHIP URL: the POST gets no
    answer, so the endpoint is not accessible (nor anything after it)."""
    from dataclasses import replace

    from tests.unit.livekit_dev import free_port

    closed = f"http://127.0.0.1:{free_port()}/w"
    ctx = Context(replace(stack.settings(), ingress_whip_url=closed), timeout_s=20.0)
    for item in ("ingress-egress.whip-endpoint-accessible",
                 "ingress-egress.sdp-negotiation-successful",
                 "ingress-egress.media-streaming-working"):
        found = CHECKS[item](ctx)
        assert found.status == "fail", (item, found)
        assert found.evidence.startswith(
            "Ingress's WHIP endpoint could not be reached (its POST got no answer): WHIP "
            f"publish failed at push: POST {closed}/<key>: ConnectError"), found.evidence
        assert found.data["deleted"] is True


def _accepted_at(monkeypatch: pytest.MonkeyPatch, endpoint: str) -> None:
    """Make the RTMP publish of the checks one the ingress at ``endpoint`` took whole."""
    from lkchaos.ingress import probes

    def publish(_run: object, timeout: float) -> dict[str, object]:
        return {"kind": "rtmp", "room": "room-1", "endpoint": endpoint, "stage": None,
                "state": "ENDPOINT_PUBLISHING", "state_error": "", "reason": "",
                "time_to_participant_s": 0.3, "time_to_tracks_s": 1.8, "deleted": True,
                "tracks": [{"type": "audio"}, {"type": "video"}]}  # fmt: skip

    monkeypatch.setattr(probes, "_retrying", publish)


@pytest.mark.skipif(NO_PUSHER, reason="apt-get install gstreamer1.0-tools or ffmpeg")
def test_a_wrong_key_push_to_an_endpoint_gone_since_is_no_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The right key's push got through, then Ingress went away: the wrong key's push is
    refused a connection, not its key."""
    from tests.unit.livekit_dev import free_port

    closed = f"rtmp://127.0.0.1:{free_port()}/x"
    _accepted_at(monkeypatch, closed)
    auth = CHECKS["ingress-egress.authentication-working"](_ctx(10.0))
    assert auth.status == "error", auth
    assert auth.evidence == (f"Ingress's RTMP endpoint {closed} could not be reached "
                             "(ConnectionRefusedError: [Errno 111] Connection refused): "
                             "nothing learned of authentication")  # fmt: skip
    assert auth.data["refused"] is False


@pytest.mark.skipif(NO_PUSHER, reason="apt-get install gstreamer1.0-tools or ffmpeg")
def test_a_wrong_key_push_the_server_hangs_up_on_is_no_refusal(
        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Something takes the connection and closes it before any RTMP answer (a proxy whose
    Ingress is down): the push ends at once, but no publish was refused."""
    import socket
    import threading

    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10.0)

    def hang_up() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:  # closed, or no push came
                return
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        endpoint = f"rtmp://127.0.0.1:{server.getsockname()[1]}/x"
        _accepted_at(monkeypatch, endpoint)
        auth = CHECKS["ingress-egress.authentication-working"](_ctx(10.0))
    finally:
        server.close()
        thread.join(10.0)
    assert auth.status == "error", auth
    assert auth.evidence.startswith(f"a push to {endpoint} with a wrong stream key ended after ")
    assert ("without the server answering its publish (Ingress could not be reached, or the "
            "connection failed first: ") in auth.evidence  # fmt: skip
    assert auth.evidence.endswith("): nothing learned of authentication")
    assert auth.data["refused"] is False and auth.data["ended"] is True


def test_a_refusal_the_pushers_sources_talk_over_is_a_refusal(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    """On a busy host gst-launch's sources report their own stop after the sink's refusal, at
    such length that the refusal fell out of the message's end: the key was refused all the
    same."""
    import socket

    from lkchaos.ingress import push

    failing_with(monkeypatch, tmp_path, GST_REFUSED)
    monkeypatch.setattr(push, "check_pusher", lambda _p: "gst-launch-1.0")
    with socket.create_server(("127.0.0.1", 0)) as listening:
        endpoint = f"rtmp://127.0.0.1:{listening.getsockname()[1]}/x"
        _accepted_at(monkeypatch, endpoint)
        auth = CHECKS["ingress-egress.authentication-working"](_ctx(10.0))
    assert auth.status == "pass", auth
    assert auth.data["refused"] is True and "lkchaos-wrong-key" not in auth.evidence
    assert auth.evidence.endswith(
        "exited with 1: Failed to connect: 'publish' cmd failed: onStatus: { \"level\": "
        '"error", "code": "NetStream.Publish.Failed", "description": "Publish failed." })')


@pytest.mark.parametrize(("state", "status"), [("ENDPOINT_INACTIVE", "fail"),
                                               ("ENDPOINT_BUFFERING", "pass")])
def test_an_rtmp_push_the_ingress_never_took_is_not_accepted(
        monkeypatch: pytest.MonkeyPatch, state: str, status: str) -> None:  # fmt: skip
    """A push still running when no participant came (connecting to an endpoint that drops
    its packets) was accepted only if the ingress took its stream (buffering it)."""
    from lkchaos.ingress import probes

    def publish(_run: object, timeout: float) -> dict[str, object]:
        return {"kind": "rtmp", "room": "room-1", "endpoint": "rtmp://in/x",
                "stage": "participant", "state": state, "state_error": "",
                "reason": "lkchaos-rtmp-1 did not join room-1 within 4 s",
                "time_to_participant_s": None, "time_to_tracks_s": None, "deleted": True,
                "tracks": []}  # fmt: skip

    monkeypatch.setattr(probes, "_retrying", publish)
    monkeypatch.setattr(probes, "_check_pusher", lambda _name: "gst-launch-1.0")
    from dataclasses import replace

    ctx = _ctx(10.0)
    accepted = CHECKS["ingress-egress.rtmp-streams-accepted"](ctx)
    assert accepted.status == status, accepted
    assert f"(the ingress was {state})" in accepted.evidence
    if status == "fail":  # and no stream, so no webhooks to look for
        ctx.settings = replace(ctx.settings, receiver_url="http://127.0.0.1:9/")
        webhooks = CHECKS["ingress-egress.webhook-notifications-sent"](ctx)
        assert webhooks.status == "error" and webhooks.evidence.startswith(
            "no stream to get webhooks for: RTMP publish failed at participant"), webhooks


@pytest.mark.parametrize(("failure", "status"), [
    ({"reason": "POST http://in/w/<key>: ConnectError: [Errno 111] Connection refused"},
     "fail"),
    ({"reason": "POST http://in/w/<key>: ConnectTimeout: timed out"}, "fail"),
    ({"reason": "POST https://in/w/<key>: ConnectError: [SSL: CERTIFICATE_VERIFY_FAILED]"},
     "fail"),
    ({"reason": ""}, "fail"),  # the offer or its answer timed out: no answer seen
    ({"reason": "POST http://in/w/<key> answered 404: not found", "answered": 404}, "pass"),
    ({"reason": "the WebRTC connection is failed"}, "pass"),
])  # fmt: skip
def test_a_whip_endpoint_is_accessible_only_when_its_post_was_answered(
    monkeypatch: pytest.MonkeyPatch, failure: dict[str, object], status: str,
) -> None:
    from lkchaos.ingress import probes, whip

    monkeypatch.setattr(whip, "aiortc_missing", lambda: False)

    def publish(_run: object, timeout: float) -> dict[str, object]:
        return {"kind": "whip", "room": "room-1", "endpoint": "http://in/w", "stage": "push",
                "state": "ENDPOINT_INACTIVE", "state_error": "", "deleted": True,
                "time_to_participant_s": None, "time_to_tracks_s": None, "tracks": [],
                **failure}  # fmt: skip

    monkeypatch.setattr(probes, "_retrying", publish)
    ctx = _ctx(10.0)
    found = CHECKS["ingress-egress.whip-endpoint-accessible"](ctx)
    assert found.status == status, found
    unreached = found.evidence.startswith("Ingress's WHIP endpoint could not be reached")
    assert unreached is (status == "fail")
    assert CHECKS["ingress-egress.sdp-negotiation-successful"](ctx).status == "fail"
