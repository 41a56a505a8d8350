"""The reference stack's Whisper server (stack/voice/voicestack/whisper_server.py): who gets a
transcription slot, and how much a transcription may decode. The real server and model; a
transcription can be held mid-run, so that "the server is busy" is a state of the test, not a
race."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import threading
import wave
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import FormData
from aiohttp.test_utils import TestClient, TestServer
from voicestack import whisper_server
from voicestack.whisper_server import Transcriber, TranscriptionRequest

from tests.unit.whisper_windows import record_windows


class HeldTranscriber(Transcriber):
    """The server's transcriber, whose transcriptions wait for :attr:`release` once started."""

    def __init__(self) -> None:
        super().__init__(whisper_server.default_model_path(), threads=1)
        self.started = threading.Event()
        self.release = threading.Event()

    def _run(self, req: TranscriptionRequest) -> whisper_server.Transcript:
        self.started.set()
        assert self.release.wait(30), "the test never released the transcription"
        return super()._run(req)


def silence_wav(seconds: float = 1.0) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(bytes(int(16000 * seconds) * 2))
    return out.getvalue()


def form() -> FormData:
    data = FormData()
    data.add_field("file", silence_wav(), filename="a.wav", content_type="audio/wav")
    data.add_field("model", "tiny.en")
    return data


@pytest.fixture
def transcriber() -> HeldTranscriber:
    """A transcriber of its own per test: the server's cleanup shuts down its thread pool."""
    return HeldTranscriber()


@contextlib.asynccontextmanager
async def serving(transcriber: Transcriber) -> AsyncIterator[TestClient[Any, Any]]:
    """The server on a free port, and a client of it."""
    async with TestClient(TestServer(whisper_server.build_app(transcriber))) as client:
        yield client


async def post(client: TestClient[Any, Any], path: str) -> tuple[int, Any]:
    """The status and JSON body of a transcription request, its connection released."""
    async with client.post(path, data=form()) as response:
        return response.status, await response.json()


ORDINARY = "/v1/audio/transcriptions"


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_request_waits_for_the_slot_while_another_runs(transcriber: HeldTranscriber) -> None:
    async def go() -> tuple[int, int, bool]:
        async with serving(transcriber) as client:
            transcriber.release.clear()
            transcriber.started.clear()
            first = asyncio.create_task(post(client, ORDINARY))
            assert await asyncio.to_thread(transcriber.started.wait, 30)
            second = asyncio.create_task(post(client, ORDINARY))
            await asyncio.sleep(0.5)
            waited = not second.done()
            transcriber.release.set()
            return (await first)[0], (await second)[0], waited

    first, second, waited = run(go())
    assert waited, "the second request was answered while the slot was held"
    assert (first, second) == (200, 200)


@pytest.mark.parametrize(("duration_s", "per_s", "expected"), [
    (3.0, 8.0, 40), (0.0, 8.0, 16), (0.4, 8.0, 20), (60.0, 8.0, 224), (3.0, 0.0, None),
])  # fmt: skip
def test_the_token_budget_grows_with_the_audio_up_to_whispers_own(
    duration_s: float, per_s: float, expected: int | None
) -> None:
    assert whisper_server.token_budget(duration_s, per_s) == expected


def test_a_spoken_question_fits_its_token_budget(tmp_path: Path) -> None:
    # The bound must never cut real speech short: a fast question, as the probes ask it.
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is not installed: run scripts/bootstrap.sh"
    wav = tmp_path / "q.wav"
    subprocess.run([espeak, "-s", "190", "-w", str(wav),
                    "What is seventeen times three, and what is twelve plus nineteen?"],
                   check=True, timeout=30)  # fmt: skip
    transcriber = Transcriber(whisper_server.default_model_path(), threads=1)
    try:
        result = transcriber._run(TranscriptionRequest(audio=wav.read_bytes(), filename="q.wav"))
    finally:
        transcriber.close()
    # All of it, to the last word (Whisper writes the numbers as digits or words).
    assert result.text.lower().rstrip(" ?.").endswith(("plus 19", "plus nineteen")), result


@pytest.mark.parametrize(("duration_s", "window_s", "expected"), [
    (2.5, 10.0, 1000), (10.0, 10.0, 1000), (10.01, 10.0, 3000), (0.0, 10.0, 1000),
    (2.5, 30.0, 3000), (2.5, 45.0, 3000), (29.0, 15.0, 3000), (4.0, 6.5, 650),
])  # fmt: skip
def test_a_clip_that_fits_the_window_is_padded_to_it_not_to_30_s(
    duration_s: float, window_s: float, expected: int
) -> None:
    assert whisper_server.window_frames(duration_s, window_s) == expected


def test_a_window_under_a_second_is_refused() -> None:
    with pytest.raises(ValueError, match="WHISPER_WINDOW_S must be at least 1"):
        Transcriber(whisper_server.default_model_path(), threads=1, window_s=0.5)


@pytest.mark.parametrize(("window_s", "frames"), [(None, 2000), (10.0, 1000), (30.0, 3000)])
def test_the_encoder_reads_the_window_and_hears_the_question_in_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, window_s: float | None, frames: int
) -> None:
    espeak = shutil.which("espeak-ng")
    assert espeak, "espeak-ng is not installed: run scripts/bootstrap.sh"
    wav = tmp_path / "q.wav"
    subprocess.run([espeak, "-v", "en-us", "-s", "150", "-w", str(wav),
                    "What is, nine minus four?"], check=True, timeout=30)  # fmt: skip
    windows = {} if window_s is None else {"window_s": window_s}  # None: the default, 20 s
    transcriber = Transcriber(whisper_server.default_model_path(), threads=1, **windows)
    seen = record_windows(monkeypatch)
    try:
        result = transcriber._run(TranscriptionRequest(audio=wav.read_bytes(), filename="q.wav",
                                                       prompt="What is 2 plus 9?"))  # fmt: skip
    finally:
        transcriber.close()
    assert seen and set(seen) == {frames}, seen
    assert result.text.lower().rstrip(" ?.").endswith(("9 minus 4", "nine minus four")), result
    assert not hasattr(whisper_server._window, "frames")  # nothing left for the next request
