"""Offline text-to-speech for livekit-agents: runs ``espeak-ng`` and streams its PCM.

``espeak-ng --stdout`` writes a WAV stream (16-bit mono, 22050 Hz for the built-in voices)
as it synthesises; the 44-byte header is parsed and the samples are pushed to the
framework's audio emitter as they arrive, so the first audio frame leaves after the first
chunk, not after the whole sentence. Every synthesis is bounded by a timeout and the
process is killed when the synthesis is cancelled (e.g. the user interrupts).
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import struct
import uuid
from typing import Any

from livekit.agents import APIConnectionError, APIConnectOptions, tts
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

log = logging.getLogger("voicestack.tts")

ESPEAK_SAMPLE_RATE = 22050
WAV_HEADER_BYTES = 44
READ_CHUNK = 4096


def parse_wav_header(header: bytes) -> tuple[int, int, int]:
    """``(sample_rate, channels, bits_per_sample)`` of a canonical 44-byte WAV header."""
    if len(header) < WAV_HEADER_BYTES or header[:4] != b"RIFF" or header[8:12] != b"WAVE":
        raise ValueError("not a WAV stream")
    channels, sample_rate = struct.unpack_from("<HI", header, 22)
    (bits,) = struct.unpack_from("<H", header, 34)
    return sample_rate, channels, bits


class EspeakTTS(tts.TTS[Any]):
    """A non-streaming TTS (the framework feeds it sentence by sentence) backed by espeak-ng."""

    def __init__(
        self,
        *,
        voice: str = "en-us",
        words_per_minute: int = 150,
        word_gap: int = 2,
        timeout: float = 10.0,
        executable: str = "espeak-ng",
    ) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=ESPEAK_SAMPLE_RATE,
            num_channels=1,
        )
        path = shutil.which(executable)
        if path is None:
            raise RuntimeError(f"{executable} not found on PATH (apt-get install espeak-ng)")
        self._executable = path
        self._voice = voice
        self._wpm = words_per_minute
        self._gap = word_gap
        self._timeout = timeout

    @property
    def model(self) -> str:
        return f"espeak-ng/{self._voice}"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def command(self) -> list[str]:
        """The espeak-ng command line; the text goes to its standard input.

        ``word_gap`` is the pause between words in 10 ms units: at 150 words a minute with
        20 ms gaps the caller's Whisper mishears about 1 reply in 80, against 1 in 25 at
        170 words a minute without (``bench/mishearing.py --replies``)."""
        return [self._executable, "--stdout", "-v", self._voice, "-s", str(self._wpm),
                "-g", str(self._gap)]  # fmt: skip

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> EspeakChunkedStream:
        return EspeakChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class EspeakChunkedStream(tts.ChunkedStream):
    """One espeak-ng run for one piece of text."""

    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        proc = await asyncio.create_subprocess_exec(
            *self._espeak.command(),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert proc.stdin is not None and proc.stdout is not None
        try:
            async with asyncio.timeout(self._espeak._timeout):
                proc.stdin.write(self.input_text.encode("utf-8"))
                await proc.stdin.drain()
                proc.stdin.close()
                header = await proc.stdout.readexactly(WAV_HEADER_BYTES)
                sample_rate, channels, bits = parse_wav_header(header)
                if bits != 16:
                    raise ValueError(f"unexpected {bits}-bit output")
                output_emitter.initialize(
                    request_id=uuid.uuid4().hex[:12],
                    sample_rate=sample_rate,
                    num_channels=channels,
                    mime_type="audio/pcm",
                )
                leftover = b""
                while chunk := await proc.stdout.read(READ_CHUNK):
                    data = leftover + chunk
                    usable = len(data) - len(data) % (2 * channels)
                    if usable:
                        output_emitter.push(data[:usable])
                    leftover = data[usable:]
                output_emitter.flush()
                code = await proc.wait()
                if code != 0:
                    err = (await proc.stderr.read()).decode(errors="replace") if proc.stderr else ""
                    raise RuntimeError(f"espeak-ng exited with {code}: {err.strip()}")
        except (TimeoutError, asyncio.IncompleteReadError, ValueError, RuntimeError) as exc:
            raise APIConnectionError(f"espeak-ng failed: {exc!r}", retryable=False) from exc
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
