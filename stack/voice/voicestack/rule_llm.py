"""A deterministic, rule-based ``llm.LLM`` for livekit-agents, driven by :mod:`dialogue`.

It behaves like a function-calling LLM: given the chat context it either emits a function
call for one of the tools the session offers (the MCP tools, which the framework then
executes exactly as it would for a real model) or, once the tool outputs are in the
context, the final answer text. Arithmetic with several operations takes one tool call per
operation, so the session's ``max_tool_steps`` must be at least
:data:`dialogue.MAX_OPERANDS`.

When the transcript is the STT failure marker, a needed tool is not offered (MCP down at
session start) or a tool call failed, the answer is a short spoken apology instead.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from livekit.agents import APIConnectOptions, llm
from livekit.agents.llm.tool_context import get_fnc_tool_names
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

from . import dialogue
from .resilience import STT_FAILURE_MARKER

log = logging.getLogger("voicestack.llm")


@dataclass
class Decision:
    """What the rule-based LLM did for one step of a turn."""

    heard: str
    text: str = ""
    tool_call: dialogue.ToolCall | None = None
    outcome: str = "answered"  # answered|declined|tool_call|tools_unavailable|stt_unavailable
    tools_called: list[str] = field(default_factory=list)


def tool_output_text(output: str) -> str:
    """The text inside a tool output; MCP outputs arrive as JSON text-content objects."""
    try:
        data: Any = json.loads(output)
    except ValueError:
        return output
    if isinstance(data, dict) and isinstance(data.get("text"), str):
        return str(data["text"])
    if isinstance(data, list):
        return "".join(str(p.get("text", "")) for p in data if isinstance(p, dict))
    return output


def _outcome_of(reply: dialogue.Reply) -> str:
    if reply.text == dialogue.TOOL_APOLOGY:
        return "tools_unavailable"
    if reply.text == dialogue.STT_APOLOGY:
        return "stt_unavailable"
    return "answered" if reply.ok else "declined"


def decide(items: Sequence[llm.ChatItem], available: set[str], tools_allowed: bool) -> Decision:
    """The next step for the conversation in ``items`` (the chat context)."""
    last_user = next(
        (
            i
            for i in range(len(items) - 1, -1, -1)
            if isinstance(items[i], llm.ChatMessage) and items[i].role == "user"  # type: ignore[union-attr]
        ),
        None,
    )
    if last_user is None:
        return Decision("", dialogue.HELP, outcome="declined")
    message = items[last_user]
    assert isinstance(message, llm.ChatMessage)
    heard = (message.text_content or "").strip()
    if heard == STT_FAILURE_MARKER:
        return Decision("", dialogue.STT_APOLOGY, outcome="stt_unavailable")

    intent = dialogue.parse(heard)
    called = [it.name for it in items[last_user + 1 :] if isinstance(it, llm.FunctionCall)]
    outputs: list[str] = []
    for item in items[last_user + 1 :]:
        if not isinstance(item, llm.FunctionCallOutput):
            continue
        if item.is_error:
            reply = dialogue.error_reply(intent, item.name, tool_output_text(item.output))
            return Decision(heard, reply.text, outcome=_outcome_of(reply), tools_called=called)
        outputs.append(tool_output_text(item.output))

    step = dialogue.plan(intent, outputs)
    if isinstance(step, dialogue.Reply):
        return Decision(heard, step.text, outcome=_outcome_of(step), tools_called=called)
    if not tools_allowed:
        return Decision(heard, dialogue.TOO_LONG_REPLY, outcome="declined", tools_called=called)
    if step.name not in available:
        return Decision(
            heard, dialogue.TOOL_APOLOGY, outcome="tools_unavailable", tools_called=called
        )
    return Decision(heard, tool_call=step, outcome="tool_call", tools_called=called)


class RuleBasedLLM(llm.LLM[Any]):
    """Deterministic stand-in for a function-calling LLM (see the module docstring)."""

    def __init__(self, on_decision: Callable[[Decision], None] | None = None) -> None:
        super().__init__()
        self._on_decision = on_decision

    @property
    def model(self) -> str:
        return "rule-based"

    @property
    def provider(self) -> str:
        return "voicestack"

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> RuleBasedStream:
        return RuleBasedStream(
            self,
            chat_ctx=chat_ctx,
            tools=tools or [],
            conn_options=conn_options,
            tools_allowed=tool_choice != "none",
        )

    def _decided(self, decision: Decision) -> None:
        if self._on_decision is not None:
            self._on_decision(decision)


class RuleBasedStream(llm.LLMStream):
    """One step: a single chunk holding either a tool call or the answer text."""

    def __init__(
        self,
        rule_llm: RuleBasedLLM,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool],
        conn_options: APIConnectOptions,
        tools_allowed: bool,
    ) -> None:
        super().__init__(rule_llm, chat_ctx=chat_ctx, tools=tools, conn_options=conn_options)
        self._rule_llm = rule_llm
        self._tools_allowed = tools_allowed

    async def _run(self) -> None:
        available = set(get_fnc_tool_names(self._tools))
        decision = decide(self._chat_ctx.items, available, self._tools_allowed)
        self._rule_llm._decided(decision)
        chunk_id = f"rule_{uuid.uuid4().hex[:12]}"
        if decision.tool_call is not None:
            call = llm.FunctionToolCall(
                name=decision.tool_call.name,
                arguments=json.dumps(decision.tool_call.arguments),
                call_id=f"call_{uuid.uuid4().hex[:12]}",
            )
            log.info("tool call %s(%s)", call.name, call.arguments)
            delta = llm.ChoiceDelta(role="assistant", tool_calls=[call])
        else:
            log.info("reply %r (%s) to %r", decision.text, decision.outcome, decision.heard)
            delta = llm.ChoiceDelta(role="assistant", content=decision.text)
        self._event_ch.send_nowait(llm.ChatChunk(id=chunk_id, delta=delta))
