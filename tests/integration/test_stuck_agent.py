"""A voice probe against an agent that always gives the same answer fails.

The reference agent, started as a second worker under the same agent name while the real
one is stopped, with its LLM replaced through its own ``LLM_BASE_URL`` by a server stuck on
"The answer is five." (fixtures/stuck_llm.py): it hears every question and answers every one
the same. The probe's questions vary per call, so the steady state's three calls cannot all
be answered right, and each wrong one is reported as a wrong reply to a question heard right.
"""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lkchaos.docker.client import project_containers
from lkchaos.settings import Settings
from lkchaos.voice import probes
from tests.integration.conftest import wait_baseline

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "stuck_llm.py"
NAME = "lkchaos-it-stuck-agent"


@pytest.fixture
def stuck_agent(settings: Settings, docker: Any) -> Iterator[None]:
    agent = project_containers(docker, settings.compose_project)["agent"]
    env = [e for e in agent.attrs["Config"]["Env"] if not e.startswith("LLM_BASE_URL=")]
    network = next(iter(agent.attrs["NetworkSettings"]["Networks"]))
    agent.stop(timeout=5)
    stuck = docker.containers.run(  # type: ignore[attr-defined]
        agent.attrs["Config"]["Image"], name=NAME, detach=True,
        command=["sh", "-c", "python /stuck_llm.py 8199 & exec python -m voicestack.agent start"],
        environment=[*env, "LLM_BASE_URL=http://127.0.0.1:8199/v1", "AGENT_HTTP_PORT=8082"],
        network=network, dns=agent.attrs["HostConfig"]["Dns"],
        volumes={str(FIXTURE): {"bind": "/stuck_llm.py", "mode": "ro"}},
        working_dir=agent.attrs["Config"]["WorkingDir"],
    )
    try:
        yield
    finally:
        stuck.remove(force=True)
        agent.start()
        assert wait_baseline()["ok"]


#: A wrong reply is listened to on for this long (the probe's ``reply_pause``, 8 s by
#: default), in case the agent goes on to answer: this agent never does.
PAUSE = {"reply_pause": 1.5}


def _answering() -> dict[str, Any]:
    """A first call that reaches the stuck agent (it registers within seconds)."""
    deadline = time.monotonic() + 90
    while True:
        result = probes.voice_round_trip(timeout=30, stage_timeouts=PAUSE)
        if result["stage"] not in ("dispatch", "join", "timeout") or time.monotonic() > deadline:
            return result


#: Most calls the test makes to find three wrong replies (each has a one in ten chance or so
#: of a question whose answer is five).
MAX_CALLS = 8


def _answer_is_five(call: dict[str, Any]) -> bool:
    return any(str(e).strip().lower() in ("5", "five") for e in call.get("expected") or [])


def _wrong(calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The calls judged wrong replies to questions whose answer is not five."""
    return [c for c in calls if c["stage"] == "wrong_reply" and not _answer_is_five(c)]


@pytest.mark.usefixtures("stuck_agent")
def test_an_agent_stuck_on_one_answer_fails_the_voice_steady_state() -> None:
    first = _answering()
    assert first["stage"] in ("ok", "wrong_reply"), first
    result = probes.voice_round_trips(calls=3, timeout=30, stage_timeouts=PAUSE)
    assert result["ok"] is False, result  # the steady state's check fails at its first miss
    # More calls, until three whose answer is not five were judged wrong (a question drawn at
    # random may have five for its answer, and one reply in many is misheard: bounded).
    calls = list(result["results"])
    while len(calls) < MAX_CALLS and len(_wrong(calls)) < 3:
        calls.append(probes.voice_round_trip(timeout=30, stage_timeouts=PAUSE))
    questions = [call["question"] for call in calls]
    assert len(set(questions)) >= 3, questions  # drawn at random per call
    # Only a question whose answer is five is ever answered right.
    assert not [c for c in calls if c["ok"] and not _answer_is_five(c)], calls
    wrong = _wrong(calls)
    assert len(wrong) >= 3, calls
    assert all("five" in call["heard"].lower() or "5" in call["heard"] for call in wrong), wrong
    assert all(call["reply_paused_s"] is None for call in wrong), wrong  # nothing more came
    # Each wrong reply keeps what the caller heard, for the report: a WAV of the reply.
    for call in wrong:
        with wave.open(call["audio"]) as heard:
            assert heard.getnchannels() == 1 and heard.getsampwidth() == 2
            assert heard.getnframes() / heard.getframerate() > 0.3, call["audio"]
