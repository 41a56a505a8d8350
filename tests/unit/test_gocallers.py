"""The Go held callers (``stack/tools/heldcallers`` driven by :mod:`lkchaos.load.gocallers`).

The process is run for real against a livekit-server (``--dev`` on loopback) with no agent:
every turn must be judged ``no_agent``, calls must end when told and leave their rooms, and the
process must exit when its input closes. Turns an agent answers are in the integration tests
(tests/integration/test_load.py). How a caller tells the agent's reply from its packets is
tested in Go (``stack/tools/heldcallers/main_test.go``, run here). The judging of a reported
turn, the Opus round trip and the choice of URL are tested on their own.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from lkchaos.errors import ConfigError, PrerequisiteError
from lkchaos.load import gocallers, ramp
from lkchaos.settings import Settings
from lkchaos.stack import build
from lkchaos.voice import audio, batch
from lkchaos.voice.session import Options
from tests.unit.livekit_dev import KEY, SECRET, dev_server

QUESTION = "What is, seven times eight?"


def reported(**changes: Any) -> dict[str, Any]:
    """A turn as the Go process reports it: answered, 0.6 s after the end of speech."""
    raw: dict[str, Any] = {
        "id": "c1", "event": "turn", "t": 9.0, "started": 3.0, "question": QUESTION,
        "end_of_speech": 5.0, "first_reply": 5.6, "last_reply": 7.4,
        "report": {"turn": 2, "heard": "What is 7 times 8?", "reply": "7 times 8 is 56.",
                   "stt_ms": 410.0, "e2e_ms": 700.0},
    }  # fmt: skip
    raw.update(changes)
    return raw


def test_a_turn_is_judged_by_the_agents_report_when_no_audio_came_back() -> None:
    turn = gocallers.judge_turn(reported())
    assert turn["ok"] and turn["stage"] == "ok" and turn["checked_by"] == "agent"
    assert turn["latency_s"] == 0.6 and turn["reply_s"] == 1.8
    assert turn["misheard"] is False and turn["agent_ms"]["stt_ms"] == 410.0


def test_a_wrong_answer_in_the_report_fails_the_turn() -> None:
    turn = gocallers.judge_turn(reported(report={"turn": 2, "heard": "What is 7 times 8?",
                                                 "reply": "7 times 8 is 54."}))  # fmt: skip
    assert not turn["ok"] and turn["stage"] == "wrong_reply"


def test_a_turn_two_agents_spoke_in_fails_though_answered_right() -> None:
    turn = gocallers.judge_turn(reported(agents=["agent-AJ_1", "agent-AJ_2"]))
    assert not turn["ok"] and turn["stage"] == "extra_agent"
    assert "agent-AJ_1, agent-AJ_2" in turn["reason"]
    assert gocallers.judge_turn(reported(agents=["agent-AJ_1"]))["ok"]


def test_a_question_the_agent_answered_a_part_of_fails_as_misheard() -> None:
    raw = {"id": "c1", "event": "turn", "t": 6.0, "started": 3.0, "question": QUESTION,
           "cut_short": True, "report": {"turn": 2, "heard": "What is 7", "reply": "7?"}}
    turn = gocallers.judge_turn(raw)
    assert not turn["ok"] and turn["stage"] == "misheard" and turn["misheard"] is True
    assert turn["reason"].startswith("the agent answered before the question ended")
    # asked again after a greeting: said in the turn
    assert gocallers.judge_turn(reported(asked_twice=True))["asked_twice"] is True


def test_a_turn_without_a_report_or_audio_is_not_answered() -> None:
    turn = gocallers.judge_turn(reported(report={}))
    assert not turn["ok"] and turn["checked_by"] == "agent"


def test_a_failure_before_the_reply_keeps_its_stage_and_reason() -> None:
    raw = {"id": "c1", "event": "turn", "t": 12.0, "started": 3.0, "question": QUESTION,
           "stage": "no_reply", "reason": "no reply audio within 8 s"}  # fmt: skip
    turn = gocallers.judge_turn(raw)
    assert turn == {"question": QUESTION, "ok": False, "stage": "no_reply",
                    "reason": "no reply audio within 8 s", "latency_s": None}  # fmt: skip


def test_kept_reply_audio_is_decoded_and_judged_by_what_was_heard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    packets = gocallers.opus_packets(audio.speech("seven times eight is fifty four"))
    heard: list[int] = []

    def transcribe(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT) -> str:
        heard.append(len(samples))
        return "7 times 8 is 54."  # what the audio says, whatever the agent claims

    monkeypatch.setattr(audio, "transcribe", transcribe)
    raw = reported(audio=[base64.b64encode(p).decode() for p in packets])
    turn = gocallers.judge_turn(raw)
    assert turn["checked_by"] == "audio" and not turn["ok"] and turn["heard"] == "7 times 8 is 54."
    assert heard and heard[0] >= len(packets) * gocallers.FRAME - gocallers.FRAME
    assert gocallers.judge_turn(raw, transcribe=False)["checked_by"] == "agent"


def _sent(text: str) -> list[str]:
    """``text`` spoken, as a Go caller sends a reply's packets back: Opus, base64."""
    return [base64.b64encode(p).decode() for p in gocallers.opus_packets(audio.speech(text))]


def test_an_answer_after_a_filler_is_judged_with_it() -> None:
    # "let me check", then (the agent listening while its tool runs) the answer, which the
    # Go caller heard before its next question ended and sent with the turn
    raw = reported(report={}, audio=_sent("Let me check that."),
                   after=_sent("Seven times eight is fifty six."), after_first=9.9,
                   after_last=11.6)  # fmt: skip
    turn = gocallers.judge_turn(raw)
    assert turn["ok"] and turn["checked_by"] == "audio", turn
    assert turn["reply_paused_s"] == 2.5 and turn["reply_s"] == 6.0
    assert "56" in turn["heard"]


def test_a_wrong_answer_is_not_put_right_by_what_came_after() -> None:
    raw = reported(report={}, audio=_sent("Seven times eight is fifty four."),
                   after=_sent("Is there anything else?"), after_first=9.9, after_last=11.0)
    turn = gocallers.judge_turn(raw)
    assert not turn["ok"] and turn["stage"] == "wrong_reply" and "reply_paused_s" in turn
    # a right reply is judged alone: what came after it is not listened to
    right = gocallers.judge_turn(reported(report={}, audio=_sent("Seven times eight is fifty six."),
                                          after=["not even audio"], after_first=9.9,
                                          after_last=11.0))  # fmt: skip
    assert right["ok"] and "reply_paused_s" not in right


def test_speech_survives_the_opus_round_trip() -> None:
    speech = audio.speech(QUESTION)
    packets = gocallers.opus_packets(speech)
    assert len(packets) >= len(speech) // gocallers.FRAME
    assert all(0 < len(p) < 400 for p in packets)  # 20 ms at 24 kbit/s: about 60 bytes
    back = gocallers.decode_opus(packets)
    assert abs(len(back) - len(packets) * gocallers.FRAME) <= gocallers.FRAME
    rms = float(np.sqrt(np.mean(back.astype(np.float64) ** 2)))
    assert rms > 0.3 * float(np.sqrt(np.mean(speech.astype(np.float64) ** 2)))


def test_the_whisper_model_is_loaded_once_whichever_threads_ask_first() -> None:
    from concurrent.futures import ThreadPoolExecutor

    audio._load_whisper_model.cache_clear()
    with ThreadPoolExecutor(4) as pool:  # as the judges do on their first sampled turns
        models = list(pool.map(lambda _: audio.whisper_model(), range(4)))
    assert all(m is models[0] for m in models)
    assert audio._load_whisper_model.cache_info().misses == 1


def test_the_callers_load_whisper_at_start_not_in_a_measured_step(
    livekit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []
    monkeypatch.setattr(audio, "whisper_model", lambda: loads.append("loaded"))
    with gocallers.GoCallers(dev_settings(livekit), questions=1):
        assert loads == ["loaded"]  # before any call has started
    with gocallers.GoCallers(dev_settings(livekit), questions=1, transcribe=False):
        assert loads == ["loaded"]  # nothing to transcribe: nothing loaded


def test_sampled_replies_are_transcribed_in_one_window_and_judged_by_what_was_heard(
    livekit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = gocallers.opus_packets(audio.speech("seven times eight is fifty six"))
    seconds = len(gocallers.decode_opus(packets)) / audio.RATE
    heard = [" 7 times 8 is 56.", " 7 times 8 is 54.", " 7 times 8 is 56."]
    windows: list[float] = []
    alone: list[str | None] = []

    def words(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT,
              until_s: float | None = None) -> list[Any]:  # fmt: skip
        windows.append(len(samples) / audio.RATE)
        step = seconds + batch.GAP_S  # where each reply lies in the window
        return [(i * step + 0.1, i * step + seconds - 0.1, text) for i, text in enumerate(heard)]

    def one(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT) -> str:
        alone.append(prompt)
        return "7 times 8 is 54."

    monkeypatch.setattr(audio, "whisper_model", lambda: None)
    monkeypatch.setattr(audio, "transcribe_words", words)
    monkeypatch.setattr(audio, "transcribe", one)
    # No CPU budget: this is about the window (a budget's reservations could refuse the
    # third reply on a busy machine; test_judge_budget and the test below are about that).
    with gocallers.GoCallers(dev_settings(livekit), questions=1, judge_cpu=0) as callers:
        call = gocallers._Call("lkchaos-held-test", Options())
        callers.calls["c1"] = call
        for _ in heard:
            callers._receive(call, reported(audio=[base64.b64encode(p).decode()
                                                   for p in packets]))  # fmt: skip
        callers.settle(20)  # as a ramp's step does at its end
        turns = callers.turns("c1", 0, 0)["turns"]
    closing = len(audio.speech(gocallers.CLOSING_WORD)) / audio.RATE  # after the last reply
    assert windows == [pytest.approx(3 * seconds + 3 * batch.GAP_S + closing, abs=0.01)]
    assert [t["checked_by"] for t in turns] == ["audio"] * 3 and call.pending == 0
    assert sorted(t["heard"] for t in turns) == ["7 times 8 is 54.", "7 times 8 is 56.",
                                                  "7 times 8 is 56."]  # fmt: skip
    assert sorted(t["stage"] for t in turns) == ["ok", "ok", "reply_misheard"]
    # Only the reply the agent claimed and the window lacked was listened to again, alone.
    assert alone == [None]


def test_a_reply_still_being_decoded_when_a_step_settles_joins_the_batch(
    livekit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = gocallers.opus_packets(audio.speech("seven times eight is fifty six"))
    decode = gocallers.decode_opus
    decoded: list[int] = []
    windows: list[int] = []

    def slow_decode(frames: list[bytes]) -> np.ndarray:
        decoded.append(1)
        if len(decoded) == 3:  # the last reply is still being decoded when settle begins
            time.sleep(0.8)
        return decode(frames)

    def words(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT,
              until_s: float | None = None) -> list[Any]:  # fmt: skip
        windows.append(len(samples))
        return []  # nothing told apart: each reply is heard alone afterwards

    monkeypatch.setattr(gocallers, "decode_opus", slow_decode)
    monkeypatch.setattr(audio, "whisper_model", lambda: None)
    monkeypatch.setattr(audio, "transcribe_words", words)
    monkeypatch.setattr(audio, "transcribe", lambda *_a, **_k: "7 times 8 is 56.")
    with gocallers.GoCallers(dev_settings(livekit), questions=1, judge_cpu=0) as callers:
        call = gocallers._Call("lkchaos-held-test", Options())
        callers.calls["c1"] = call
        for _ in range(3):
            callers._receive(call, reported(audio=[base64.b64encode(p).decode()
                                                   for p in packets]))  # fmt: skip
        callers.settle(20)
        turns = callers.turns("c1", 0, 0)["turns"]
        counts = dict(callers.batcher.counts) if callers.batcher else {}
    seconds = len(decode(packets)) / audio.RATE
    closing = len(audio.speech(gocallers.CLOSING_WORD)) / audio.RATE
    assert len(turns) == 3 and call.pending == 0
    # One window holding the three replies: none was left to be transcribed on its own.
    assert [n / audio.RATE for n in windows] == [
        pytest.approx(3 * seconds + 3 * batch.GAP_S + closing, abs=0.01)]
    assert counts["batches"] == 1 and counts["replies"] == 3


def test_past_its_budget_a_sample_is_judged_by_the_report_but_an_unreported_reply_is_heard(
    livekit: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    packets = [base64.b64encode(p).decode()
               for p in gocallers.opus_packets(audio.speech("seven times eight is fifty six"))]
    listened: list[int] = []

    def words(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT,
              until_s: float | None = None) -> list[Any]:  # fmt: skip
        listened.append(len(samples))
        return [(0.1, 1.0, " 7 times 8 is 56.")]

    monkeypatch.setattr(audio, "whisper_model", lambda: None)
    monkeypatch.setattr(audio, "transcribe_words", words)
    def alone(samples: np.ndarray, prompt: str | None = audio.REPLY_PROMPT) -> str:
        listened.append(len(samples))  # a window of one reply is read alone
        return "7 times 8 is 56."

    monkeypatch.setattr(audio, "transcribe", alone)
    with gocallers.GoCallers(dev_settings(livekit), questions=1, judge_cpu=0.001) as callers:
        callers.budget.spend(5.0)  # the credit gone: earlier replies' transcriptions
        call = gocallers._Call("lkchaos-held-test", Options())
        callers.calls["c1"] = call
        callers._receive(call, reported(audio=packets))  # a sample: the agent reported it
        callers._receive(call, reported(audio=packets, report={}))  # not reported: heard
        callers.settle(20)
        turns = callers.turns("c1", 0, 0)["turns"]
        summary = callers.budget.summary()
    by = {t["checked_by"]: t for t in turns}
    assert set(by) == {"agent", "audio"} and len(turns) == 2
    assert by["agent"]["sample"] == "over budget" and by["agent"]["ok"]  # the report's verdict
    assert "sample" not in by["audio"] and by["audio"]["heard"] == "7 times 8 is 56."
    assert len(listened) == 1  # only the unreported reply was transcribed
    assert summary["skipped"] == 1 and summary["transcribed"] == 0
    assert summary["spent_cpu_s"] > 5.0  # its decoding and transcription were spent too


def test_the_callers_join_the_public_url_when_it_resolves_else_the_first_node(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = Settings(livekit_url="wss://lk.example.test",
                        livekit_node_urls=("http://127.0.0.1:27880", "http://127.0.0.1:27890"))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *_a, **_k: [])
    assert gocallers.caller_url(settings) == "wss://lk.example.test"

    def unknown(*_args: Any, **_kwargs: Any) -> Any:
        raise socket.gaierror("Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", unknown)
    assert gocallers.caller_url(settings) == "ws://127.0.0.1:27880"
    with pytest.raises(ConfigError, match="does not resolve from this machine"):
        gocallers.caller_url(Settings(livekit_url="wss://lk.example.test", livekit_node_urls=()))


def test_the_generators_cpu_is_given_per_part_and_per_caller() -> None:
    figures = ramp.generator_cpu({"media": 1.0, "judging": 5.0}, {"media": 3.0, "judging": 6.0},
                                 10.0, 4)  # fmt: skip
    assert figures == {"cpu_cores": {"media": 0.2, "judging": 0.1},
                       "cpu_cores_per_caller": {"media": 0.05, "judging": 0.025}}


def dev_settings(url: str, nodes: bool = True) -> Settings:
    """The target: a LiveKit at ``url`` (HTTP) with the test keys, an agent nobody runs, no
    prober, Prometheus, container engine or CA; with ``nodes``, ``url`` is its node too."""
    return Settings(livekit_url=url.replace("http", "ws"),
                    livekit_node_urls=(url,) if nodes else (), livekit_api_key=KEY,
                    livekit_api_secret=SECRET, voice_prober_url="", prometheus_url="",
                    agent_name="nobody", ca_file="")  # fmt: skip


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    need_go()
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


def need_go() -> None:
    """Skip where Go is missing (CI, with LKCHAOS_NO_SKIPS, fails the test instead)."""
    if shutil.which("go") is None:
        pytest.skip("the Go callers are built with Go, which is not on PATH")


def test_the_callers_reply_detection_passes_its_go_tests() -> None:
    """The listener's own tests: a reply's start and end from its packets, the first speech
    waking the wait, the agent's state ending it, its bounds, a stopped call."""
    need_go()
    source = Path(__file__).resolve().parents[2] / "stack" / "tools" / "heldcallers"
    done = subprocess.run(  # the build's flags, so its cached packages serve the test
        ["go", "test", "-trimpath", "-count=1", "."], cwd=source, capture_output=True,
        text=True, timeout=600, env={**os.environ, **build.TOOL_GO_ENV})
    assert done.returncode == 0, done.stdout + done.stderr


def test_go_callers_without_an_agent_judge_each_turn_and_leave(livekit: str,
                                                               tmp_path: Path) -> None:
    from livekit import api

    from lkchaos.livekit import client as lk

    settings = dev_settings(livekit)
    options = Options(duration_s=30, max_turns=50, dispatch_s=0.5, turn_gap_s=0.05, join_s=5)
    with gocallers.GoCallers(settings, questions=2) as callers:
        call_id, room = callers.start(options)
        first = callers.turns(call_id, 0, wait_s=15)
        assert first["turns"], "no turn within 15 s"

        async def members(lkapi: api.LiveKitAPI) -> list[str]:
            found = await lkapi.room.list_participants(api.ListParticipantsRequest(room=room))
            return [p.identity for p in found.participants]

        during = lk.call(livekit, settings, members)
        summary = callers.end(call_id)
        with pytest.raises(KeyError):
            callers.turns("nope", 0, 0)
    assert callers.process.returncode == 0  # exited by itself once its input closed
    assert during == [f"caller-{room[-10:]}"]  # joined, and held between turns
    assert summary["state"] == "ended" and summary["end_reason"] == "stopped"
    assert summary["turns"] >= 1 and set(summary["stages"]) == {"no_agent"}
    assert all(t["reason"] == "no agent with audio in the room within 0.5 s"
               for t in callers.turns(call_id, 0, 0)["turns"])  # fmt: skip
    assert [e["event"] for e in summary["events"]][0] == "joined"
    assert [e["event"] for e in summary["events"]][-1] == "ended"  # always the last


def test_a_ramp_of_go_callers_without_an_agent_breaks_and_leaves_nothing(
    livekit: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    settings = dev_settings(livekit)
    said: list[str] = []
    plan = ramp.Plan(steps=(1, 2), step_s=5, warmup_s=0, stagger_s=0.1)
    with gocallers.GoCallers(settings, questions=2) as callers:
        result = ramp.Ramp(settings, plan, said.append, callers).run()
        assert callers.process.poll() is None  # the Go process did the calling, and serves on
    # Its CPU is read from the kernel in clock ticks (10 ms): a caller that joined and waits
    # for an agent uses about one in its whole life on a fast machine (measured: 0.01 s with
    # the join), so a step's share may be none at all. The figure is checked above zero where
    # there is work to measure: real calls over 20 s steps (tests/integration/test_load.py).
    assert [s["callers"] for s in result["steps"]] == [1] and result["knee"] == 1
    step = result["steps"][0]
    # No agent: the caller joined, and waits up to its dispatch bound (15 s) for one.
    assert step["connected"] == 1 and step["breaks"] == ["no turn finished"]
    assert set(step["generator"]["cpu_cores"]) == {"media", "judging"}
    assert step["generator"]["cpu_cores"]["media"] >= 0
    assert result["leftover"] == {}
    assert "(media) + " in said[-1] and "BREAKS" in said[-1]


def test_a_call_that_runs_out_of_turns_ends_by_itself_and_says_so_last(livekit: str) -> None:
    settings = dev_settings(livekit)
    with gocallers.GoCallers(settings, questions=1) as callers:
        call_id, _room = callers.start(Options(duration_s=30, max_turns=2, dispatch_s=0.3,
                                               turn_gap_s=0.05, join_s=5))  # fmt: skip
        deadline = time.monotonic() + 20
        while callers.turns(call_id, 0, 1)["state"] != "ended" and time.monotonic() < deadline:
            pass
        summary = callers.end(call_id)
    assert summary["end_reason"] == "2 turns" and summary["turns"] == 2
    assert [e["event"] for e in summary["events"]][-1] == "ended"


def test_refused_commands_name_their_call_and_the_process_keeps_serving() -> None:
    need_go()
    binary = build.build_tool("heldcallers", lambda _line: None)
    lines = [
        json.dumps({"url": "ws://127.0.0.1:9", "questions": [{"text": "x", "packets": []}]}),
        json.dumps({"op": "start", "id": "a"}),  # no token
        '{"op": "start", "id": "b", "options": {"max_turns": "many"}}',  # not a command
        json.dumps({"op": "dance", "id": "c"}),
        json.dumps({"op": "end", "id": "nobody"}),
    ]
    done = subprocess.run([str(binary)], input="\n".join(lines) + "\n", capture_output=True,
                          text=True, timeout=30, check=False)  # fmt: skip
    replies = [json.loads(line) for line in done.stdout.splitlines()]
    assert done.returncode == 0, done.stderr
    assert [(r["id"], r.get("op"), r["event"]) for r in replies] == [
        ("a", "start", "error"), ("b", "start", "error"), ("c", "dance", "error"),
        ("nobody", "end", "error")]  # fmt: skip
    assert "not a command" in replies[1]["error"] and "unknown op" in replies[2]["error"]


def test_the_go_callers_need_the_voice_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from lkchaos.voice import extra

    monkeypatch.setattr(extra, "missing", lambda: ["faster_whisper"])
    settings = Settings(livekit_url="ws://127.0.0.1:9", livekit_api_key=KEY,
                        livekit_api_secret=SECRET)  # fmt: skip
    with pytest.raises(PrerequisiteError, match=r"need lkchaos\[voice\].*--engine python"):
        gocallers.GoCallers(settings)


def test_a_ramp_whose_callers_cannot_join_stops_with_why(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    need_go()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    settings = dev_settings("http://127.0.0.1:9", nodes=False)
    plan = ramp.Plan(steps=(1, 2), step_s=5, warmup_s=0)
    with gocallers.GoCallers(settings, questions=1) as callers, \
            pytest.raises(ConfigError, match=r"no caller of the 1-caller step joined LiveKit "
                                             r"\(could not join ws://127.0.0.1:9: .*refused"):
        ramp.Ramp(settings, plan, lambda _line: None, callers).run()
