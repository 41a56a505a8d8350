"""Bounded, never-raising wrappers around the agent's remote dependencies.

- :class:`ResilientSTT` wraps a non-streaming STT (the OpenAI plugin pointed at the Whisper
  service). Each recognition gets at most ``attempts`` tries within one overall deadline
  (so a failed attempt is retried only while time remains: refused or reset connections
  are retried, a hung one uses up the deadline).
  A failure does not raise (in livekit-agents an STT error kills the VAD stream adapter
  and, repeated, closes the whole session); it returns a final transcript holding
  :data:`STT_FAILURE_MARKER`, which the agent answers with a spoken apology.
- :class:`BoundedMCPToolset` is ``MCPToolset`` whose connection attempts run in the
  background with a timeout and never raise (the framework awaits toolset setup before
  the session starts), and which reconnects on a later turn after the MCP server was
  unreachable or a call failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from livekit.agents import APIConnectOptions, LanguageCode, stt, utils
from livekit.agents.llm import mcp
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

log = logging.getLogger("voicestack.resilience")

STT_FAILURE_MARKER = "(speech recognition unavailable)"


@dataclass
class STTResult:
    """What one recognition took and how it ended (read by the turn reporter)."""

    ms: float
    ok: bool
    attempts: int
    error: str = ""


class ResilientSTT(stt.STT[Any]):
    """Bounded retries and a deadline around a non-streaming STT; never raises."""

    def __init__(
        self,
        inner: stt.STT[Any],
        *,
        timeout: float = 6.0,
        attempts: int = 2,
        on_result: Callable[[STTResult], None] | None = None,
    ) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        if inner.capabilities.streaming:
            raise ValueError("ResilientSTT wraps a non-streaming STT")
        self._inner = inner
        self._timeout = timeout
        self._attempts = max(1, attempts)
        self._on_result = on_result

    @property
    def model(self) -> str:
        return self._inner.model

    @property
    def provider(self) -> str:
        return self._inner.provider

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        started = time.perf_counter()
        deadline = started + self._timeout
        error = ""
        made = 0
        for attempt in range(1, self._attempts + 1):
            remaining = deadline - time.perf_counter()
            if remaining <= 0.05:
                break
            budget = remaining  # a slow attempt may use it all; fast failures get retried
            made = attempt
            try:
                event = await asyncio.wait_for(
                    self._inner.recognize(
                        buffer,
                        language=language,
                        conn_options=APIConnectOptions(max_retry=0, timeout=budget),
                    ),
                    timeout=budget,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure is reported, not raised
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                log.warning("STT attempt %d failed: %s", attempt, error)
                continue
            self._report(STTResult(_ms_since(started), True, attempt))
            return event
        self._report(STTResult(_ms_since(started), False, made, error or "deadline exceeded"))
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            alternatives=[stt.SpeechData(language=LanguageCode("en"), text=STT_FAILURE_MARKER)],
        )

    def _report(self, result: STTResult) -> None:
        if self._on_result is not None:
            self._on_result(result)

    async def aclose(self) -> None:
        await self._inner.aclose()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


class BoundedMCPToolset(mcp.MCPToolset):
    """An MCP toolset that never blocks a turn for long and reconnects after failures.

    Connecting runs in a background task bounded by ``connect_timeout``; ``setup()`` (which
    the framework awaits before the session starts) and :meth:`ensure_ready` (called at
    the start of each user turn) wait for it at most ``wait`` seconds. Tools that connect
    later are picked up by the next reply, which reads the toolset's tools afresh.
    """

    def __init__(
        self,
        *,
        id: str,
        mcp_server: mcp.MCPServer,
        connect_timeout: float = 5.0,
        wait: float = 1.5,
    ) -> None:
        super().__init__(id=id, mcp_server=mcp_server)
        self._server = mcp_server
        self._connect_timeout = connect_timeout
        self._wait = wait
        self._connect_task: asyncio.Task[None] | None = None
        self._broken = False

    @property
    def ready(self) -> bool:
        """True when connected, the tool list is loaded and no call failed since."""
        return self._server.initialized and bool(self.tools) and not self._broken

    async def setup(self, *, reload: bool = False) -> BoundedMCPToolset:
        await self._attempt(reconnect=reload)
        return self

    async def ensure_ready(self) -> bool:
        """Reconnect if needed (waiting at most ``wait`` s); True when tools are available."""
        if not self.ready:
            await self._attempt(reconnect=True)
        return self.ready

    def note_failure(self, message: str) -> None:
        """A tool call failed for a reason other than the tool itself: reconnect next turn."""
        log.info("MCP tool call failed (%s); will reconnect", message[:120])
        self._broken = True

    async def _attempt(self, *, reconnect: bool) -> None:
        if self._connect_task is None or self._connect_task.done():
            self._connect_task = asyncio.create_task(self._connect(reconnect))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._connect_task), self._wait)

    async def _connect(self, reconnect: bool) -> None:
        started = time.perf_counter()
        try:
            if reconnect and (self._server.initialized or self._broken):
                # Close only the client session: MCPToolset.aclose() would also close
                # the toolset's tool executor, which the framework keeps using.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._server.aclose(), self._connect_timeout)
            self._initialized = False  # MCPToolset's flag: makes setup() connect again
            await asyncio.wait_for(super().setup(), self._connect_timeout)
            self._broken = False
            log.info("MCP tools ready in %.0f ms", _ms_since(started))
        except Exception as exc:  # noqa: BLE001 - includes ExceptionGroups from anyio
            log.warning("MCP unavailable: %s", _describe(exc))

    async def aclose(self) -> None:
        if self._connect_task is not None:
            await utils.aio.cancel_and_wait(self._connect_task)
        await super().aclose()


def _describe(exc: BaseException) -> str:
    """The innermost cause of ``exc``, unwrapping exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
