"""The prober: runs voice round trips from inside the stack's network, on request.

A caller's client resolves names with the system resolver and trusts the system's CAs, so a
probe that must go through the stack's own DNS and Caddy has to run where those are the
system's: in a container on the stack network (``dns:`` set to the stack's resolver,
``SSL_CERT_FILE`` naming the stack's CA). This small HTTP server is that container's job.

    POST /round-trip  {"question": str?, "expected": [str]?, "timeouts": {...}?}
                      -> the round trip's result (see lkchaos.voice.roundtrip.run)
    GET  /health      -> {"status": "ok"}

Environment: ``LIVEKIT_URL`` (the public URL, e.g. ``wss://lk.chaos.test``),
``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``, ``AGENT_NAME``. One round trip runs at a time:
concurrent requests wait their turn, so they never compete for the two CPU cores the agent
and Whisper also need.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
from typing import Any

from aiohttp import web

from lkchaos.voice import audio, roundtrip
from lkchaos.voice.questions import DEFAULT_QUESTIONS, QuestionError

log = logging.getLogger("lkchaos.prober")
_questions = itertools.cycle(DEFAULT_QUESTIONS)
_lock = asyncio.Lock()


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"the prober needs {name} in its environment")
    return value


def parse_request(body: Any) -> tuple[str, list[str] | None, roundtrip.Timeouts]:
    """Validate a request body; ValueError says what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    question = body.get("question") or next(_questions)
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    expected = body.get("expected")
    if expected is not None and (
        not isinstance(expected, list) or not all(isinstance(e, str) and e for e in expected)
    ):
        raise ValueError("expected must be a list of non-empty strings")
    raw = body.get("timeouts") or {}
    if not isinstance(raw, dict):
        raise ValueError("timeouts must be an object of stage: seconds")
    unknown = set(raw) - set(vars(roundtrip.Timeouts()))
    if unknown:
        raise ValueError(f"unknown timeout(s): {', '.join(sorted(unknown))}")
    try:
        timeouts = roundtrip.Timeouts(**{k: float(v) for k, v in raw.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"bad timeouts: {exc}") from exc
    return question, expected, timeouts


async def round_trip(request: web.Request) -> web.Response:
    try:
        question, expected, timeouts = parse_request(await request.json())
    except ValueError as exc:  # includes malformed JSON
        return web.json_response({"error": str(exc)}, status=400)
    config = request.app["config"]
    async with _lock:
        try:
            result = await roundtrip.run(
                config["url"], config["key"], config["secret"], question, expected,
                config["agent"], timeouts,
            )
        except QuestionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
    log.info("%s %s %s", result["stage"], result["question"], result["timings_ms"])
    return web.json_response(result)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app() -> web.Application:
    app = web.Application()
    app["config"] = {
        "url": _env("LIVEKIT_URL"),
        "key": _env("LIVEKIT_API_KEY"),
        "secret": _env("LIVEKIT_API_SECRET"),
        "agent": os.environ.get("AGENT_NAME", "lkchaos-agent"),
    }
    app.router.add_post("/round-trip", round_trip)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve voice round trips over HTTP.")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = make_app()
    audio.whisper_model()  # load before the first request, not during it
    web.run_app(app, host=args.host, port=args.port, print=None)


if __name__ == "__main__":
    main()
