"""The ingress probes without a deployment: arguments, pushers, the publish flow and its
cleanup against a fake IngressService/RoomService, and their preflight and needs entries."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, cast

import pytest
from chaoslib.exceptions import ActivityFailed

from lkchaos.ingress import client, probes, push, whip
from lkchaos.livekit import client as lk_client
from lkchaos.preflight.rules import RULES, Context
from lkchaos.settings import Settings
from lkchaos.target.needs import NEEDS

KEY = "sEcReTkEy123"


def _fake_tools(folder: Path, *names: str) -> None:
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\nexit 0\n")
        (folder / name).chmod(0o755)


# --- pushers ---------------------------------------------------------------------------------


def test_gst_command_pushes_audio_and_video_for_the_duration_to_the_url() -> None:
    argv = push.command("gst-launch-1.0", "rtmp://h:1935/x/KEY", 4)
    assert argv[0] == "gst-launch-1.0" and "location=rtmp://h:1935/x/KEY" in argv
    assert "x264enc" in argv and "voaacenc" in argv and "flvmux" in argv
    assert f"num-buffers={4 * push.FPS}" in argv


def test_ffmpeg_command_pushes_flv_for_the_duration_to_the_url() -> None:
    argv = push.command("ffmpeg", "rtmp://h:1935/x/KEY", 4.5)
    assert argv[0] == "ffmpeg" and argv[-1] == "rtmp://h:1935/x/KEY"
    assert argv[argv.index("-t") + 1] == "4.5" and argv[-3:-1] == ["-f", "flv"]
    assert "libx264" in argv and "aac" in argv


def test_auto_takes_the_first_pusher_installed(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_tools(tmp_path / "bin", "ffmpeg")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    assert push.check_pusher("auto") == "ffmpeg"
    _fake_tools(tmp_path / "bin", "gst-launch-1.0")
    assert push.check_pusher("auto") == "gst-launch-1.0"


def test_a_missing_pusher_says_what_to_install(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ActivityFailed, match=r"gst-launch-1\.0 or ffmpeg on PATH.*apt-get install "
                                             r"gstreamer1\.0-tools.*apt-get install ffmpeg"):
        probes.rtmp_publish(room="r")
    with pytest.raises(ActivityFailed, match=r"needs ffmpeg on PATH.*apt-get install ffmpeg"):
        probes.rtmp_publish(room="r", pusher="ffmpeg")


def test_a_missing_aiortc_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(whip, "aiortc_missing", lambda: True)
    with pytest.raises(ActivityFailed, match=r"lkchaos\[ingress\]"):
        probes.whip_publish(room="r")


def test_a_pusher_that_fails_reports_its_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push, "command", lambda p, u, d: ["sh", "-c", "echo refused >&2; exit 3"])
    running = push.start("ffmpeg", "rtmp://h/x/KEY", 1)
    running.process.wait(10)
    assert not running.running() and running.error() == "refused"
    assert running.stop() == 3


#: What gst-launch-1.0 writes when an RTMP server refuses the publish and the sources stop
#: for it, in that order (as after a push to LiveKit Ingress with a wrong stream key, on a
#: busy host).
SINK = "/GstPipeline:pipeline0/GstRtmp2Sink:rtmp2sink0"
GST_REFUSED = "\n".join([
    f"ERROR: from element {SINK}: Failed to connect: 'publish' cmd failed: onStatus: "
    '{ "level": "error", "code": "NetStream.Publish.Failed", "description": "Publish failed." }',
    "Additional debug info:",
    f"../gst/rtmp2/gstrtmp2sink.c(1117): send_connect_error (): {SINK}:",
    "domain g-io-error-quark, code 0",
    *[line for source in ("GstAudioTestSrc:audiotestsrc0", "GstQueue:queue1") for line in (
        f"ERROR: from element /GstPipeline:pipeline0/{source}: Internal data stream error.",
        "Additional debug info:",
        f"../libs/gst/base/gstbasesrc.c(3132): gst_base_src_loop (): "
        f"/GstPipeline:pipeline0/{source}:",
        "streaming stopped, reason error (-5)")],
]) + "\n"


def failing_with(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, stderr: str) -> None:
    """Make every pusher started write ``stderr`` and exit 1."""
    said = tmp_path / "stderr.txt"
    said.write_text(stderr)
    monkeypatch.setattr(push, "command", lambda p, u, d: ["sh", "-c", f"cat {said} >&2; exit 1"])


def test_a_pusher_reports_its_first_error_not_the_ones_it_caused(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # fmt: skip
    """GStreamer's sources stop after the sink's error and say so at length: the sink's
    refusal, first, is the error, however much follows it."""
    failing_with(monkeypatch, tmp_path, "Setting pipeline to PAUSED ...\n" + GST_REFUSED)
    running = push.start("gst-launch-1.0", "rtmp://h/x/KEY", 1)
    running.process.wait(10)
    said = running.error()
    assert said.startswith("ERROR: from element /GstPipeline:pipeline0/GstRtmp2Sink:rtmp2sink0: "
                           "Failed to connect: 'publish' cmd failed")  # fmt: skip
    assert len(GST_REFUSED) > push.ERROR_CHARS == len(said)
    running.stop()


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize("args, blamed", [
    ({"room": ""}, "room"),
    ({"room": "r", "duration_s": -1}, "duration_s"),
    ({"room": "r", "duration_s": 601}, "duration_s"),
    ({"room": "r", "timeout": 0}, "timeout"),
    ({"room": "r", "endpoint": "127.0.0.1:1935"}, "endpoint"),
    ({"room": "r", "pusher": "obs"}, "pusher"),
    ({"room": "r", "publishes": 3}, "publishes"),
    ({"room": "r", "publishes": True}, "publishes"),
])  # fmt: skip
def test_bad_arguments_are_refused_before_anything_is_created(
    args: dict[str, Any], blamed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(client, "create", _never)
    with pytest.raises(ActivityFailed, match=blamed):
        probes.rtmp_publish(**args)
    rules = RULES["lkchaos.ingress.probes.rtmp_publish"]
    with pytest.raises(ActivityFailed, match=blamed):
        for rule in rules:
            rule.check(args, Context())


def test_preflight_accepts_the_defaults_and_knows_both_probes() -> None:
    for name in ("rtmp_publish", "whip_publish"):
        for rule in RULES[f"lkchaos.ingress.probes.{name}"]:
            rule.check({}, Context())
        assert NEEDS[f"lkchaos.ingress.probes.{name}"] == ("livekit", "ingress")


@pytest.mark.parametrize(("first", "answered", "publishes", "made"), [
    ("participant", None, 2, 2), ("tracks", None, 2, 2), ("held", None, 2, 2),
    ("state", None, 2, 2), ("push", 503, 2, 2), ("push", 500, 2, 2),
    ("tracks", None, 1, 1), ("push", 503, 1, 1), (None, None, 2, 1), ("push", None, 2, 1),
    ("push", 404, 2, 1), ("push", 401, 2, 1), ("create", None, 2, 1),
])  # fmt: skip
def test_a_second_publish_only_when_the_first_stopped_short_or_met_a_server_error(
    first: str | None, answered: int | None, publishes: int, made: int
) -> None:
    """An encoder reconnects when its stream did not reach the room whole or the WHIP
    endpoint failed on its offer (5xx); a refused push (a 4xx, a pusher's exit) or an
    ingress never created is the answer, not a reason to publish again."""
    results = [{"ok": first is None, "stage": first, "answered": answered, "n": 1},
               {"ok": True, "stage": None, "n": 2}]  # fmt: skip
    calls: list[int] = []

    def once() -> dict[str, Any]:
        calls.append(1)
        return dict(results[len(calls) - 1])

    got = probes._publishing(once, publishes)
    assert len(calls) == made
    if made == 2:
        assert got["n"] == 2 and got["ok"] and got["earlier"]["stage"] == first
    else:
        assert got["n"] == 1 and "earlier" not in got


def _never(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("nothing may be created for bad arguments")


# --- the publish flow, against a fake LiveKit ------------------------------------------------


class FakeLiveKit:
    """IngressService and RoomService as the probes see them (client module functions)."""

    def __init__(self, joins_after: int = 1, tracks_after: int = 2,
                 kinds: frozenset[str] = frozenset({"audio", "video"}),
                 create_fails: bool = False, status: str = "ENDPOINT_PUBLISHING") -> None:
        self.calls = 0
        self.joins_after, self.tracks_after, self.kinds = joins_after, tracks_after, kinds
        self.create_fails, self.status = create_fails, status
        self.ingresses: dict[str, str] = {}
        self.created_with: list[tuple[str, str, str]] = []

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(client, "create", self.create)
        monkeypatch.setattr(client, "participant", self.participant)
        monkeypatch.setattr(client, "state", self.state)
        monkeypatch.setattr(client, "delete", self.delete)

    def create(self, settings: Settings, kind: str, room: str, identity: str,
               timeout: float, enable_transcoding: bool | None = None) -> client.Created:
        if self.create_fails:
            raise client.IngressApiError("http://n1: ClientConnectorError: refused")
        self.created_with.append((kind, room, identity))
        self.ingresses["IN_1"] = self.status
        return client.Created("IN_1", f"{kind}://announced:1/x", KEY, "http://n1")

    def participant(self, settings: Settings, room: str, identity: str,
                    timeout: float) -> client.Seen:
        self.calls += 1
        if self.calls < self.joins_after:
            return client.Seen()
        kinds = set(self.kinds) if self.calls >= self.tracks_after else set()
        tracks: list[dict[str, object]] = [{"type": k, "mime_type": "", "muted": False}
                                           for k in sorted(kinds)]  # fmt: skip
        return client.Seen(True, kinds, tracks)

    def state(self, settings: Settings, ingress_id: str, timeout: float) -> dict[str, str]:
        return {"status": self.ingresses.get(ingress_id, "missing"), "error": ""}

    def delete(self, settings: Settings, ingress_id: str, timeout: float) -> None:
        self.ingresses.pop(ingress_id, None)


class FakePublisher:
    def __init__(self, url: str, alive: bool = True) -> None:
        self.url, self.alive, self.stopped = url, alive, False

    def running(self) -> bool:
        return self.alive

    def error(self) -> str:
        return f"refused at {self.url}"

    def stop(self) -> None:
        self.stopped = True


@pytest.fixture
def fast(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "POLL_S", 0.0)
    monkeypatch.setattr(time, "sleep", lambda s: None)


@pytest.fixture(autouse=True)
def _short_settle(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fakes never report the stream ended: the wait before a delete is cut short."""
    monkeypatch.setattr(probes, "SETTLE_S", 0.05)


# No push URL of its own: the probes push where CreateIngress says.
SETTINGS = Settings(livekit_node_urls=("http://n1",), livekit_api_key="k",
                    livekit_api_secret="s", ingress_rtmp_url="", ingress_whip_url="")  # fmt: skip


def _run(fake: FakeLiveKit, monkeypatch: pytest.MonkeyPatch, endpoint: str | None = None,
         publisher: type[FakePublisher] = FakePublisher, timeout: float = 5.0,
         settings: Settings = SETTINGS) -> tuple[dict[str, Any], list[FakePublisher]]:
    fake.install(monkeypatch)
    started: list[FakePublisher] = []

    def start(url: str) -> FakePublisher:
        started.append(publisher(url))
        return started[-1]

    result = probes._publish("rtmp", "room-a", 0.0, timeout, endpoint, settings, start, "fake")
    return result, started


def test_a_publish_that_reaches_the_room_is_ok_with_timings(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLiveKit(joins_after=2, tracks_after=3)
    result, started = _run(fake, monkeypatch)
    assert result["ok"] is True and result["stage"] is None and result["reason"] == ""
    assert result["state"] == "ENDPOINT_PUBLISHING"
    assert 0 <= result["time_to_participant_s"] <= result["time_to_tracks_s"]
    assert {t["type"] for t in result["tracks"]} == {"audio", "video"}
    assert fake.created_with == [("rtmp", "room-a", result["identity"])]
    # Pushed to the announced URL with the stream key; the key is never returned.
    assert started[0].url == f"rtmp://announced:1/x/{KEY}" and started[0].stopped
    assert result["endpoint"] == "rtmp://announced:1/x" and KEY not in repr(result)
    assert result["deleted"] is True and fake.ingresses == {}


def test_a_participant_without_video_fails_at_tracks_and_is_cleaned_up(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = iter(range(1000))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    fake = FakeLiveKit(kinds=frozenset({"audio"}))
    result, started = _run(fake, monkeypatch, timeout=5)
    assert result["ok"] is False and result["stage"] == "tracks"
    assert "no video track" in result["reason"]
    assert result["state"] == "ENDPOINT_PUBLISHING"  # read before the ingress was deleted
    assert started[0].stopped and result["deleted"] is True and fake.ingresses == {}


def test_nobody_joining_fails_at_participant(fast: None, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter(range(1000))
    monkeypatch.setattr(time, "monotonic", lambda: float(next(clock)))
    fake = FakeLiveKit(joins_after=10_000)
    result, _ = _run(fake, monkeypatch, timeout=3)
    assert result["stage"] == "participant" and "did not join room-a" in result["reason"]
    assert result["time_to_participant_s"] is None and result["deleted"] is True


def test_a_refused_push_fails_at_push_without_the_stream_key(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLiveKit(joins_after=10_000)
    result, started = _run(fake, monkeypatch,
                           publisher=lambda url: FakePublisher(url, alive=False))  # type: ignore[arg-type]
    assert result["stage"] == "push" and result["reason"] == "refused at rtmp://announced:1/x/<key>"
    assert started[0].stopped and result["deleted"] is True


@pytest.mark.parametrize("status", [None, 404, 503])
def test_a_publisher_that_cannot_start_still_deletes_the_ingress(
    monkeypatch: pytest.MonkeyPatch, status: int | None
) -> None:
    """Whatever refused the push, the ingress is deleted; the status a WHIP endpoint answered
    with is kept, and only a server error (5xx) is worth publishing again."""
    fake = FakeLiveKit()
    fake.install(monkeypatch)

    def start(url: str) -> FakePublisher:
        why = f"answered {status}: refused" if status else "ConnectError: refused"
        raise whip.WhipError(f"POST {url} {why}", status)

    result = probes._publish("whip", "room-a", 0.0, 5.0, None, SETTINGS, start, "aiortc")
    assert result["stage"] == "push" and "<key>" in result["reason"] and KEY not in result["reason"]
    assert result["deleted"] is True and fake.ingresses == {}
    assert result.get("answered") == status
    assert probes._again(result) is (status == 503)


def test_a_whip_endpoints_error_status_reaches_the_caller() -> None:
    """A real HTTP server refusing the offer: the status and body are in the error."""
    if whip.aiortc_missing():
        pytest.skip(whip.NEEDED)
    import http.server
    import threading

    class Busy(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the standard library's name)
            self.rfile.read(int(self.headers["Content-Length"]))
            body = b"no response from servers"
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Busy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/w/key"
    push = whip.WhipPush(url, timeout=5.0)
    try:
        with pytest.raises(whip.WhipError) as refused:
            push.start()
    finally:
        push.stop()
        server.shutdown()
        server.server_close()
    assert refused.value.status == 503
    assert str(refused.value) == f"POST {url} answered 503: no response from servers"


def test_an_ingress_left_by_a_crash_in_the_watch_is_still_deleted(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeLiveKit()

    def broken(*args: Any) -> client.Seen:
        raise KeyboardInterrupt

    fake.participant = broken  # type: ignore[method-assign,assignment]
    with pytest.raises(KeyboardInterrupt):
        _run(fake, monkeypatch)
    assert fake.ingresses == {}


def test_no_node_creating_the_ingress_fails_at_create(monkeypatch: pytest.MonkeyPatch) -> None:
    result, started = _run(FakeLiveKit(create_fails=True), monkeypatch)
    assert result["ok"] is False and result["stage"] == "create" and "refused" in result["reason"]
    assert started == [] and result["ingress_id"] is None


def test_an_ingress_not_publishing_at_the_end_fails_at_state(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, _ = _run(FakeLiveKit(status="ENDPOINT_BUFFERING"), monkeypatch)
    assert result["stage"] == "state" and result["state"] == "ENDPOINT_BUFFERING"


def test_the_endpoint_argument_then_the_setting_then_the_announced_url(
    fast: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    result, started = _run(FakeLiveKit(), monkeypatch, endpoint="rtmp://given:2/x/")
    assert started[0].url == f"rtmp://given:2/x/{KEY}"

    class WithSetting(Settings):
        ingress_rtmp_url = "rtmp://127.0.0.1:21935/x"

    configured = WithSetting(livekit_node_urls=("http://n1",), livekit_api_key="k",
                             livekit_api_secret="s")  # fmt: skip
    result, started = _run(FakeLiveKit(), monkeypatch, settings=configured)
    assert started[0].url == f"rtmp://127.0.0.1:21935/x/{KEY}"
    assert result["endpoint"] == "rtmp://127.0.0.1:21935/x"


def test_client_tries_the_next_node_when_one_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    async def with_api(url: str, settings: Settings, fn: Any, timeout: float) -> str:
        asked.append(url)
        if url == "http://down":
            raise OSError("connection refused")
        return "answer"

    monkeypatch.setattr(lk_client, "with_api", with_api)
    two = Settings(livekit_node_urls=("http://down", "http://up"), livekit_api_key="k",
                   livekit_api_secret="s")  # fmt: skip
    assert client.first_answer(two, lambda c: None, 1.0) == ("answer", "http://up")  # type: ignore[arg-type,return-value]
    assert asked == ["http://down", "http://up"]
    only_down = Settings(livekit_node_urls=("http://down",), livekit_api_key="k",
                         livekit_api_secret="s")  # fmt: skip
    with pytest.raises(client.IngressApiError, match="http://down: OSError: connection refused"):
        client.first_answer(only_down, lambda c: None, 1.0)  # type: ignore[arg-type,return-value]


def test_the_probes_are_discovered() -> None:
    import lkchaos

    activities = cast(list[dict[str, Any]], lkchaos.discover()["activities"])
    names = {a["name"] for a in activities if a["mod"] == "lkchaos.ingress.probes"}
    assert names == {"rtmp_publish", "whip_publish"}
    assert os.path.basename(probes.__file__) == "probes.py"


def test_a_stream_refused_for_capacity_is_published_again_within_the_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(probes, "CAPACITY_RETRY_S", 0.01)
    answers = [{"ok": False, "stage": "push", "state_error": "server capacity exceeded"},
               {"ok": False, "stage": "push", "state_error": "server capacity exceeded"},
               {"ok": True, "stage": None, "state_error": ""}]
    result = probes._retrying(lambda: answers.pop(0), timeout=5)
    assert result["ok"] and result["attempts"] == 3 and result["refused_for_capacity"] == 2


def test_other_failures_are_not_retried_and_capacity_stops_at_the_timeout() -> None:
    calls = []
    broken = probes._retrying(lambda: calls.append(1) or {"ok": False, "stage": "push",
                                                          "state_error": "bad stream"}, 5)
    assert broken["attempts"] == 1 and len(calls) == 1
    full = probes._retrying(lambda: {"ok": False, "stage": "push",
                                     "state_error": "server capacity exceeded"}, timeout=0)
    assert full["attempts"] == 1 and full["refused_for_capacity"] == 1
    assert "refused for capacity at all 1 attempts" in full["reason"]
    assert "free CPU on that host or lower those costs" in full["reason"]
    assert "refused for capacity" not in str(broken.get("reason"))


def test_a_stream_admitted_once_is_not_blamed_on_capacity(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probes, "CAPACITY_RETRY_S", 0.01)
    answers = [{"ok": False, "stage": "push", "state_error": "server capacity exceeded"},
               {"ok": False, "stage": "participant", "reason": "no participant within 4 s"}]
    result = probes._retrying(lambda: answers.pop(0), timeout=5)
    assert result["reason"] == "no participant within 4 s" and result["attempts"] == 2
