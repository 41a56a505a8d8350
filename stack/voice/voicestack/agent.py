"""The voice agent of the system under test: a livekit-agents 1.8 worker, fully offline.

Pipeline: silero VAD -> Whisper (OpenAI plugin STT against the Whisper service, wrapped
by :class:`voicestack.early_stt.EarlySTT`, which starts recognition on a short pause)
-> rule-based LLM (:mod:`voicestack.rule_llm`)
calling the MCP tools through the framework -> espeak-ng TTS. Turn detection is VAD
(the default turn detector would load a model or use a cloud gateway). The agent never
speaks first. Dispatch is explicit, by agent name.

Run: ``python -m voicestack.agent start``.

Environment:

- ``LIVEKIT_URL``, ``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``: the LiveKit server.
- ``WHISPER_BASE_URL`` (e.g. ``http://toxiproxy:18000/v1``), ``WHISPER_MODEL``
  (default ``tiny.en``), ``WHISPER_TIMEOUT`` (s, default 6, covers 2 attempts),
  ``WHISPER_PROMPT`` (vocabulary hint sent with every request; empty to disable).
- ``MCP_URL`` (e.g. ``http://toxiproxy:18100/mcp``), ``MCP_TIMEOUT`` (s per call and for
  connecting, default 5).
- ``AGENT_NAME`` (default ``lkchaos-agent``).
- ``AGENT_HTTP_HOST``/``AGENT_HTTP_PORT``: worker health server (default 0.0.0.0:8081).
- ``AGENT_READY_FILE``: a file written with the worker's id once it has registered with
  LiveKit, removed at start-up (default ``/tmp/lkchaos-agent-registered``; empty: none).
  livekit-agents' health server answers 200 about four seconds before the worker can take a
  job; the container's health check (``health.sh``) also requires this file, so that
  "healthy" means "can be dispatched". Not written ``AGENT_START_REPORT_S`` seconds after
  start-up (default 45; 0: never), the agent logs a warning with where each of its threads
  is (a start that hangs is then diagnosed from the container's log).
- ``AGENT_METRICS_PORT``: the framework's Prometheus metrics at ``/metrics`` on that port of
  ``AGENT_HTTP_HOST`` (default 9464; 0 turns them off).
- ``AGENT_IDLE_PROCESSES`` (default 1).
- ``AGENT_REDISPATCH_WINDOW_S`` (default 90; 0 turns it off): for that long after each
  registration of the worker, rooms a caller is still in with no agent (a job that lost its
  room for good while the link to LiveKit was cut, a room created meanwhile) get this agent
  dispatched again (:mod:`voicestack.stranded`): LiveKit never dispatches an agent twice.
  The same window opens when a job's process dies (its caller is left alone too).
- ``AGENT_LOAD`` (``jobs`` default, or ``cpu``), ``AGENT_MAX_JOBS`` (default 3),
  ``AGENT_LOAD_THRESHOLD`` (``cpu`` only, default 0.7). The LiveKit server only hands a job
  to a worker whose reported load is under its target load (0.7 by default), and the
  framework reports the CPU use of the whole host or container: on a small machine that
  also runs Whisper (and, in tests, the caller) that refuses dispatches ("no servers
  available") with the agent idle. ``jobs`` reports ``0.7 * active_jobs / AGENT_MAX_JOBS``
  instead, so the worker takes up to ``AGENT_MAX_JOBS`` concurrent sessions; ``cpu``
  restores the framework's CPU-based load (for CPU-saturation experiments).
- ``LLM_BASE_URL``, ``LLM_MODEL``, ``LLM_API_KEY``, ``LLM_TIMEOUT``: when ``LLM_BASE_URL``
  is set, an OpenAI-compatible LLM replaces the rule-based one (same MCP tools).
- ``TTS_VOICE`` (default ``en-us``), ``TTS_WPM`` (default 150), ``TTS_GAP`` (pause between
  words, 10 ms units, default 2), ``VAD_MIN_SILENCE``
  (s, default 0.5: the silence that ends the caller's turn).
- ``STT_EARLY_SILENCE`` (s, default 0.2): the silence after which the speech so far is
  sent to Whisper, while the turn's end is still being waited for (cancelled if the caller
  speaks again); 0, or a value not under ``VAD_MIN_SILENCE``, sends each utterance once
  the turn has ended, as the framework's own adapter does.

Degradation: a Whisper failure or timeout makes the agent say "Sorry, I can't reach my
speech recognition right now."; an MCP failure, timeout or absence (and a failing external
LLM) "Sorry, I can't reach my tools right now."; the MCP connection is retried on the next
turn. Nothing here raises into the session, so it stays in the room. Bounds: Whisper
``WHISPER_TIMEOUT`` per utterance; MCP ``MCP_TIMEOUT`` per call, connecting in the
background and holding a turn at most 1.5 s; espeak-ng 10 s; external LLM ``LLM_TIMEOUT``.

Per-turn report: after each reply the agent participant's attribute ``lkchaos.turn`` is
set to a JSON object with these keys (times are unix seconds, durations milliseconds,
``null`` when not measured):

``turn`` (1, 2, ...), ``heard`` (transcript, "" when STT failed), ``reply`` (text spoken),
``outcome`` (``answered`` | ``declined`` | ``tools_unavailable`` | ``stt_unavailable`` |
``llm_unavailable``),
``tools`` (tool names called), ``tool_errors`` (count), ``end_of_speech_at`` (user stopped
speaking, by the VAD), ``reply_started_at``/``reply_ended_at`` (agent audio played out),
``stt_ms`` (Whisper request time, including retries), ``stt_attempts``,
``transcription_delay_ms`` (end of speech -> transcript), ``end_of_turn_delay_ms`` (end of
speech -> turn committed), ``tool_ms`` (sum of the tool calls), ``llm_ttft_ms`` (LLM node to
first token, last step), ``tts_first_audio_ms`` (TTS node to first audio), ``e2e_ms`` (end of
speech -> agent audio started), ``interrupted`` (bool).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from livekit.agents import (
    Agent,
    AgentServer,
    AgentSession,
    APIConnectOptions,
    JobContext,
    JobProcess,
    ModelSettings,
    cli,
    llm,
    room_io,
)
from livekit.agents import stt as agents_stt
from livekit.agents.llm import mcp
from livekit.agents.types import FlushSentinel
from livekit.agents.voice.agent_session import SessionConnectOptions
from livekit.agents.voice.events import (
    CloseEvent,
    FunctionToolsExecutedEvent,
)
from livekit.plugins import openai, silero

from . import dialogue
from .early_stt import EarlySTT
from .espeak_tts import EspeakTTS
from .resilience import STT_FAILURE_MARKER, BoundedMCPToolset, ResilientSTT
from .rule_llm import RuleBasedLLM
from .start_report import report_if_unregistered
from .stranded import StrandedRooms, watch_job_processes
from .turn_report import TurnReporter
from .vocabulary import DEFAULT_STT_PROMPT

# The job processes never use the framework's local end-of-turn model: skip preloading it.
os.environ.setdefault("LIVEKIT_AGENTS_PRELOAD_LOCAL_INFERENCE", "0")

log = logging.getLogger("voicestack.agent")

SERVER_TARGET_LOAD = 0.7  # livekit-server's default agent target load
INSTRUCTIONS = (
    "You are a voice assistant. Answer in one short spoken sentence. Use the tools for "
    "arithmetic, the current time and capitals, and state numbers in digits. If a tool "
    f"fails, say: {dialogue.TOOL_APOLOGY}"
)


def _env_float(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)


@dataclass(frozen=True)
class Settings:
    """Agent configuration from the environment (see the module docstring)."""

    whisper_base_url: str
    whisper_model: str
    whisper_timeout: float
    whisper_prompt: str
    mcp_url: str
    mcp_timeout: float
    agent_name: str
    http_host: str
    http_port: int
    ready_file: str
    start_report_s: float
    metrics_port: int
    idle_processes: int
    load_mode: str
    max_jobs: int
    load_threshold: float
    llm_base_url: str
    llm_model: str
    llm_api_key: str
    llm_timeout: float
    tts_voice: str
    tts_wpm: int
    tts_gap: int
    vad_min_silence: float
    stt_early_silence: float
    redispatch_window_s: float

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ.get
        return cls(
            whisper_base_url=env("WHISPER_BASE_URL", "http://127.0.0.1:8000/v1"),
            whisper_model=env("WHISPER_MODEL", "tiny.en"),
            whisper_timeout=_env_float("WHISPER_TIMEOUT", 6.0),
            whisper_prompt=env("WHISPER_PROMPT", DEFAULT_STT_PROMPT),
            mcp_url=env("MCP_URL", "http://127.0.0.1:8100/mcp"),
            mcp_timeout=_env_float("MCP_TIMEOUT", 5.0),
            agent_name=env("AGENT_NAME", "lkchaos-agent"),
            http_host=env("AGENT_HTTP_HOST", "0.0.0.0"),
            http_port=int(env("AGENT_HTTP_PORT", "8081")),
            ready_file=env("AGENT_READY_FILE", "/tmp/lkchaos-agent-registered"),
            start_report_s=_env_float("AGENT_START_REPORT_S", 45.0),
            metrics_port=int(env("AGENT_METRICS_PORT", "9464")),
            idle_processes=int(env("AGENT_IDLE_PROCESSES", "1")),
            load_mode=env("AGENT_LOAD", "jobs"),
            max_jobs=int(env("AGENT_MAX_JOBS", "3")),
            load_threshold=_env_float("AGENT_LOAD_THRESHOLD", SERVER_TARGET_LOAD),
            llm_base_url=env("LLM_BASE_URL", ""),
            llm_model=env("LLM_MODEL", "gpt-4o-mini"),
            llm_api_key=env("LLM_API_KEY", "unused"),
            llm_timeout=_env_float("LLM_TIMEOUT", 10.0),
            tts_voice=env("TTS_VOICE", "en-us"),
            tts_wpm=int(env("TTS_WPM", "150")),
            tts_gap=int(env("TTS_GAP", "2")),
            vad_min_silence=_env_float("VAD_MIN_SILENCE", 0.5),
            stt_early_silence=_env_float("STT_EARLY_SILENCE", 0.2),
            redispatch_window_s=float(env("AGENT_REDISPATCH_WINDOW_S") or 90.0),
        )

    @property
    def early_stt(self) -> bool:
        """Whether Whisper gets the speech on a shorter silence than the turn's end."""
        return 0 < self.stt_early_silence < self.vad_min_silence


class VoiceAgent(Agent):
    """Reconnects the MCP tools when needed and turns LLM/STT failures into apologies."""

    def __init__(
        self,
        *,
        toolset: BoundedMCPToolset,
        reporter: TurnReporter,
        rule_based: bool,
        llm_timeout: float,
    ) -> None:
        super().__init__(instructions=INSTRUCTIONS, tools=[toolset])
        self._toolset = toolset
        self._reporter = reporter
        self._rule_based = rule_based
        self._llm_timeout = llm_timeout

    async def on_user_turn_completed(
        self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage
    ) -> None:
        if (new_message.text_content or "").strip() != STT_FAILURE_MARKER:
            await self._toolset.ensure_ready()

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterable[llm.ChatChunk | str | FlushSentinel]:
        last_user = next(
            (m for m in reversed(chat_ctx.items) if isinstance(m, llm.ChatMessage)
             and m.role == "user"),
            None,
        )  # fmt: skip
        if last_user is not None and (last_user.text_content or "").strip() == STT_FAILURE_MARKER:
            yield dialogue.STT_APOLOGY
            return
        stream = Agent.default.llm_node(self, chat_ctx, tools, model_settings)
        if self._rule_based:
            async for chunk in stream:
                yield chunk
            return
        produced = False
        try:
            async with asyncio.timeout(self._llm_timeout):
                async for chunk in stream:
                    produced = True
                    yield chunk
        except Exception as exc:  # noqa: BLE001 - a failing LLM must not silence the agent
            log.warning("LLM failed: %r", exc)
            self._reporter.note_outcome("llm_unavailable")
            if not produced:
                yield dialogue.TOOL_APOLOGY


#: Imported once in the forkserver (``AgentServer(preload_modules=...)``); the job process
#: re-runs this module as its ``__mp_main__``, with everything it imports already loaded.
PRELOAD_MODULES = ("voicestack.agent", "mcp.client.streamable_http", "anyio.abc")


def prewarm(proc: JobProcess) -> None:
    """Loads the VAD once per job process (the model ships in livekit-plugins-silero) and
    imports what the first session would otherwise import on its event loop."""
    import anyio.abc  # noqa: F401
    import mcp.client.streamable_http  # noqa: F401

    settings = Settings.from_env()
    proc.userdata["vad"] = silero.VAD.load(min_silence_duration=settings.vad_min_silence)


def build_llm(settings: Settings, reporter: TurnReporter) -> llm.LLM[Any]:
    """The rule-based LLM, or an OpenAI-compatible one when ``LLM_BASE_URL`` is set."""
    if settings.llm_base_url:
        return openai.LLM(
            model=settings.llm_model, base_url=settings.llm_base_url, api_key=settings.llm_api_key
        )
    return RuleBasedLLM(on_decision=reporter.on_decision)


async def entrypoint(ctx: JobContext) -> None:
    """One job: join the room, run the voice pipeline until the caller leaves."""
    settings = Settings.from_env()
    started = time.perf_counter()
    await ctx.connect()
    reporter = TurnReporter(ctx.room)

    whisper = openai.STT(
        model=settings.whisper_model,
        base_url=settings.whisper_base_url,
        api_key="unused",
        language="en",
        prompt=settings.whisper_prompt,
    )
    resilient = ResilientSTT(
        whisper, timeout=settings.whisper_timeout, attempts=2, on_result=reporter.on_stt_result
    )
    # Otherwise the framework wraps the STT in its own adapter, with the session's VAD.
    stt: agents_stt.STT[Any] = (
        EarlySTT(stt_=resilient, vad_=ctx.proc.userdata["vad"],
                 early_silence_s=settings.stt_early_silence)
        if settings.early_stt else resilient
    )  # fmt: skip
    mcp_server = mcp.MCPServerHTTP(
        url=settings.mcp_url,
        transport_type="streamable_http",
        timeout=settings.mcp_timeout,
        sse_read_timeout=30.0,
        client_session_timeout_seconds=settings.mcp_timeout,
    )
    toolset = BoundedMCPToolset(
        id="mcp", mcp_server=mcp_server, connect_timeout=settings.mcp_timeout
    )
    step_options = APIConnectOptions(max_retry=0, timeout=settings.llm_timeout)
    session: AgentSession[None] = AgentSession(
        stt=stt,
        vad=ctx.proc.userdata["vad"],
        llm=build_llm(settings, reporter),
        tts=EspeakTTS(
            voice=settings.tts_voice, words_per_minute=settings.tts_wpm, word_gap=settings.tts_gap
        ),
        turn_handling={
            "turn_detection": "vad",
            "endpointing": {"min_delay": 0.4, "max_delay": 3.0},
            "interruption": {"mode": "vad"},
            "preemptive_generation": {"enabled": False},
        },
        max_tool_steps=dialogue.MAX_OPERANDS + 1,
        user_away_timeout=None,
        conn_options=SessionConnectOptions(
            llm_conn_options=step_options,
            tts_conn_options=APIConnectOptions(max_retry=1, timeout=10.0),
        ),
    )
    reporter.attach(session)

    def _on_tools(ev: FunctionToolsExecutedEvent) -> None:
        for out in ev.function_call_outputs:
            # errors raised by the tool itself come back as "Error executing tool ..."
            if out.is_error and "error executing tool" not in out.output.lower():
                toolset.note_failure(out.output)

    session.on("function_tools_executed", _on_tools)

    def _on_close(ev: CloseEvent) -> None:
        ctx.shutdown(reason=f"session closed: {ev.reason}")

    session.on("close", _on_close)
    agent = VoiceAgent(
        toolset=toolset,
        reporter=reporter,
        rule_based=not settings.llm_base_url,
        llm_timeout=settings.llm_timeout,
    )
    await session.start(
        agent=agent,
        room=ctx.room,
        room_options=room_io.RoomOptions(close_on_disconnect=True),
        record=False,
    )
    log.info(
        "session started in %.0f ms (tools %s)",
        (time.perf_counter() - started) * 1000,
        "ready" if toolset.ready else "unavailable",
    )


def job_count_load(max_jobs: int) -> Callable[[AgentServer], float]:
    """A load function that reaches the server's target load with ``max_jobs`` active jobs."""

    def load(server: AgentServer) -> float:
        return min(1.0, SERVER_TARGET_LOAD * len(server.active_jobs) / max(1, max_jobs))

    return load


def build_server(settings: Settings | None = None) -> AgentServer:
    """The worker: explicit dispatch by name, health server on ``AGENT_HTTP_HOST:PORT``."""
    settings = settings or Settings.from_env()
    by_jobs = settings.load_mode != "cpu"
    server = AgentServer(
        host=settings.http_host,
        port=settings.http_port,
        prometheus_port=settings.metrics_port or None,
        num_idle_processes=settings.idle_processes,
        load_threshold=SERVER_TARGET_LOAD if by_jobs else settings.load_threshold,
        load_fnc=job_count_load(settings.max_jobs) if by_jobs else None,
        setup_fnc=prewarm,
        # Every job runs in a process of its own, forked from the framework's forkserver:
        # importing the pipeline's modules there once spares each job process that import
        # (about a second of CPU per call on two cores, before the session can start).
        preload_modules=list(PRELOAD_MODULES),
    )
    server.rtc_session(entrypoint, agent_name=settings.agent_name)
    if settings.ready_file:
        mark_registration(server, Path(settings.ready_file))
        if settings.start_report_s > 0:
            report_if_unregistered(Path(settings.ready_file), settings.start_report_s)
    url, key, secret = (os.environ.get(k, "") for k in
                        ("LIVEKIT_URL", "LIVEKIT_API_KEY", "LIVEKIT_API_SECRET"))  # fmt: skip
    if settings.redispatch_window_s > 0 and url and key and secret:
        stranded = StrandedRooms(url, key, secret, settings.agent_name,
                                 window_s=settings.redispatch_window_s)  # fmt: skip
        server.on("worker_registered", lambda *_: stranded.watch())
        # The process pool exists once the worker started (livekit-agents 1.8).
        server.on("worker_started",
                  lambda *_: watch_job_processes(getattr(server, "_proc_pool", None), stranded))
    return server


def mark_registration(server: AgentServer, ready_file: Path) -> None:
    """Remove ``ready_file`` (a restarted container keeps its files) and write the worker's
    id to it each time the worker registers with LiveKit."""
    ready_file.unlink(missing_ok=True)

    def registered(worker_id: str, _info: Any) -> None:
        ready_file.write_text(f"{worker_id}\n")
        log.info("worker %s registered: ready for jobs", worker_id)

    server.on("worker_registered", registered)


if __name__ == "__main__":
    cli.run_app(build_server())
