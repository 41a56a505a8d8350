"""The per-turn report the voice agent publishes for the chaos probe.

After each reply the agent participant's attribute ``lkchaos.turn`` is set to a JSON
object; the keys are documented in :mod:`voicestack.agent`. The report is assembled from
the session's ``conversation_item_added`` and ``function_tools_executed`` events (the
framework's per-message metrics) plus what the STT wrapper and the rule-based LLM report.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from livekit import rtc
from livekit.agents import AgentSession, llm
from livekit.agents.voice.events import ConversationItemAddedEvent, FunctionToolsExecutedEvent

from .resilience import STT_FAILURE_MARKER, STTResult
from .rule_llm import Decision

log = logging.getLogger("voicestack.agent")

TURN_ATTRIBUTE = "lkchaos.turn"


def _ms(seconds: Any) -> float | None:
    return round(float(seconds) * 1000, 1) if isinstance(seconds, int | float) else None


class TurnReporter:
    """Collects one turn's timings from session events; publishes them as an attribute."""

    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        self._turn = 0
        self._pending: set[asyncio.Task[None]] = set()
        self._latest_stt: STTResult | None = None
        # The LLM may decide before the framework adds the user's message to the history,
        # so the decision belongs to the turn until its reply is published, not until the
        # next user message.
        self._decision: Decision | None = None
        self._outcome: str | None = None
        self._new_turn()

    def _new_turn(self) -> None:
        self._data: dict[str, Any] = {"tools": [], "tool_errors": 0, "tool_ms": None}
        self._stt = self._latest_stt  # the recognition that produced this turn's transcript
        self._latest_stt = None

    def attach(self, session: AgentSession[None]) -> None:
        session.on("conversation_item_added", self._on_item)
        session.on("function_tools_executed", self._on_tools)

    def on_stt_result(self, result: STTResult) -> None:
        self._latest_stt = result

    def on_decision(self, decision: Decision) -> None:
        self._decision = decision

    def note_outcome(self, outcome: str) -> None:
        """Overrides the turn's outcome (e.g. ``llm_unavailable``)."""
        self._outcome = outcome

    def _on_tools(self, ev: FunctionToolsExecutedEvent) -> None:
        total = self._data["tool_ms"] or 0.0
        for call, out in ev.zipped():
            self._data["tools"].append(call.name)
            self._data["tool_errors"] += int(out.is_error)
            total += max(0.0, out.created_at - call.created_at) * 1000
        self._data["tool_ms"] = round(total, 1)

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if not isinstance(item, llm.ChatMessage):
            return
        metrics: dict[str, Any] = dict(item.metrics)
        if item.role == "user":
            self._new_turn()
            heard = (item.text_content or "").strip()
            self._data.update(
                heard="" if heard == STT_FAILURE_MARKER else heard,
                end_of_speech_at=metrics.get("stopped_speaking_at"),
                transcription_delay_ms=_ms(metrics.get("transcription_delay")),
                end_of_turn_delay_ms=_ms(metrics.get("end_of_turn_delay")),
            )
        elif item.role == "assistant":
            self._publish(item, metrics)

    def _publish(self, item: llm.ChatMessage, metrics: dict[str, Any]) -> None:
        self._turn += 1
        reply = item.text_content or ""
        decision = self._decision
        report: dict[str, Any] = {
            "turn": self._turn,
            "heard": self._data.get("heard", ""),
            "reply": reply,
            "outcome": decision.outcome if decision else "answered",
            "tools": self._data["tools"],
            "tool_errors": self._data["tool_errors"],
            "end_of_speech_at": self._data.get("end_of_speech_at"),
            "reply_started_at": metrics.get("started_speaking_at"),
            "reply_ended_at": metrics.get("stopped_speaking_at"),
            "stt_ms": self._stt.ms if self._stt else None,
            "stt_attempts": self._stt.attempts if self._stt else None,
            "transcription_delay_ms": self._data.get("transcription_delay_ms"),
            "end_of_turn_delay_ms": self._data.get("end_of_turn_delay_ms"),
            "tool_ms": self._data["tool_ms"],
            "llm_ttft_ms": _ms(metrics.get("llm_node_ttft")),
            "tts_first_audio_ms": _ms(metrics.get("tts_node_ttfb")),
            "e2e_ms": _ms(metrics.get("e2e_latency")),
            "interrupted": item.interrupted,
        }
        if self._outcome is not None:
            report["outcome"] = self._outcome
        if self._stt is not None and not self._stt.ok:
            report["outcome"] = "stt_unavailable"
        log.info("turn report %s", json.dumps(report))
        self._data = {"tools": [], "tool_errors": 0, "tool_ms": None}
        self._decision, self._outcome = None, None
        task = asyncio.create_task(self._set_attribute(json.dumps(report)))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _set_attribute(self, value: str) -> None:
        try:
            await asyncio.wait_for(
                self._room.local_participant.set_attributes({TURN_ATTRIBUTE: value}), 5.0
            )
        except Exception as exc:  # noqa: BLE001 - reporting must never break the session
            log.warning("could not publish %s: %r", TURN_ATTRIBUTE, exc)
