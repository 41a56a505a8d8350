"""Early recognition: a non-streaming STT sent the caller's speech on a short pause, while
the end of the turn is still being waited for.

The framework's own adapter (``stt.StreamAdapter``) sends an utterance to the STT only once
the VAD has heard ``min_silence_duration`` of silence (0.5 s here), so the transcript is
ready that long plus the whole STT request after the caller stopped speaking. This adapter
listens to the same VAD's per-window events: once ``early_silence_s`` of silence has
followed speech, it starts recognising the speech so far in the background. If the caller
speaks again before the turn ends, that recognition is cancelled and the utterance goes on;
when the VAD ends the turn, the early recognition's transcript is used (the audio it was
given differs from the whole utterance only by the silence after ``early_silence_s``), or
the whole utterance is recognised as the framework would.

The events emitted are the framework adapter's: ``START_OF_SPEECH``, ``END_OF_SPEECH``
(with ``speech_end_time``) and one ``FINAL_TRANSCRIPT`` per utterance.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from livekit import rtc
from livekit.agents import APIConnectOptions, stt, utils, vad
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, NotGivenOr

#: The wrapped STT retries by itself (see :class:`voicestack.resilience.ResilientSTT`).
_STREAM_OPTIONS = APIConnectOptions(max_retry=0, timeout=DEFAULT_API_CONNECT_OPTIONS.timeout)


class EarlySTT(stt.STT[Any]):
    """A streaming STT built from a non-streaming one, a VAD, and ``early_silence_s``
    (seconds of silence after speech before recognition starts; under the VAD's
    ``min_silence_duration`` to gain anything)."""

    def __init__(self, *, stt_: stt.STT[Any], vad_: vad.VAD, early_silence_s: float) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(streaming=True, interim_results=False)
        )
        if stt_.capabilities.streaming:
            raise ValueError("EarlySTT wraps a non-streaming STT")
        if early_silence_s <= 0:
            raise ValueError("early_silence_s must be positive")
        self._stt = stt_
        self._vad = vad_
        self._early_silence_s = early_silence_s

    @property
    def model(self) -> str:
        return self._stt.model

    @property
    def provider(self) -> str:
        return self._stt.provider

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.SpeechEvent:
        return await self._stt.recognize(buffer=buffer, language=language,
                                         conn_options=conn_options)  # fmt: skip

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _EarlyStream(self, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        await self._stt.aclose()


class _EarlyStream(stt.RecognizeStream):
    def __init__(self, owner: EarlySTT, *, language: NotGivenOr[str],
                 conn_options: APIConnectOptions) -> None:  # fmt: skip
        super().__init__(stt=owner, conn_options=_STREAM_OPTIONS)
        self._owner = owner
        self._language = language
        self._wrapped_options = conn_options

    async def _metrics_monitor_task(self, event_aiter: Any) -> None:
        async for _ in event_aiter:
            pass

    def _recognize(self, frames: list[rtc.AudioFrame]) -> asyncio.Task[stt.SpeechEvent]:
        return asyncio.create_task(self._owner._stt.recognize(
            buffer=utils.merge_frames(frames), language=self._language,
            conn_options=self._wrapped_options), name="early_stt_recognize")  # fmt: skip

    async def _run(self) -> None:
        vad_stream = self._owner._vad.stream()

        async def _forward_input() -> None:
            async for frame in self._input_ch:
                if isinstance(frame, self._FlushSentinel):
                    vad_stream.flush()
                else:
                    vad_stream.push_frame(frame)
            vad_stream.end_input()

        async def _listen() -> None:
            speech: list[rtc.AudioFrame] = []  # the utterance so far, with its padding
            early: asyncio.Task[stt.SpeechEvent] | None = None

            async def _drop_early() -> None:
                nonlocal early
                if early is not None:
                    early.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await early
                    early = None

            try:
                async for event in vad_stream:
                    if event.type == vad.VADEventType.START_OF_SPEECH:
                        await _drop_early()
                        speech = list(event.frames)
                        self._event_ch.send_nowait(
                            stt.SpeechEvent(type=stt.SpeechEventType.START_OF_SPEECH))
                    elif event.type == vad.VADEventType.INFERENCE_DONE:
                        if not event.speaking:
                            continue
                        speech.extend(event.frames)
                        silence = event.raw_accumulated_silence
                        if silence == 0 and early is not None:
                            await _drop_early()  # the caller speaks again
                        elif early is None and silence >= self._owner._early_silence_s:
                            early = self._recognize(speech)
                    elif event.type == vad.VADEventType.END_OF_SPEECH:
                        speech_end_time = (time.time() - event.silence_duration
                                           - event.inference_duration)  # fmt: skip
                        self._event_ch.send_nowait(stt.SpeechEvent(
                            type=stt.SpeechEventType.END_OF_SPEECH,
                            speech_end_time=speech_end_time))  # fmt: skip
                        task, early = early or self._recognize(list(event.frames)), None
                        speech = []
                        result = await task
                        if not result.alternatives or not result.alternatives[0].text:
                            continue
                        if result.speech_end_time is not None:
                            speech_end_time = result.speech_end_time
                        self._event_ch.send_nowait(stt.SpeechEvent(
                            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                            alternatives=[result.alternatives[0]],
                            speech_end_time=speech_end_time))  # fmt: skip
            finally:
                await _drop_early()

        tasks = [asyncio.create_task(_forward_input(), name="early_stt_input"),
                 asyncio.create_task(_listen(), name="early_stt_listen")]  # fmt: skip
        try:
            await asyncio.gather(*tasks)
        finally:
            await utils.aio.cancel_and_wait(*tasks)
            await vad_stream.aclose()
