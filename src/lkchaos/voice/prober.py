"""The prober: runs voice round trips from inside the stack's network, on request.

A caller's client resolves names with the system resolver and trusts the system's CAs, so a
probe that must go through the stack's own DNS and Caddy has to run where those are the
system's: in a container on the stack network (``dns:`` set to the stack's resolver,
``SSL_CERT_FILE`` naming the stack's CA). This small HTTP server is that container's job.

    POST /round-trip  {"question": str?, "expected": [str]?, "timeouts": {...}?,
                       "agent_name": str?}
                      -> the round trip's result (see lkchaos.voice.roundtrip.run), with
                      the ``livekit_url`` dialed and the ``agent_name`` dispatched
    POST /hold        {"room": str, "count": int, "duration_s": float}
                      -> participants held connected in the room (lkchaos.livekit.hold)
    GET  /hold        -> the held rooms and how many of their participants are connected
    DELETE /hold/{room} -> release them
    POST /calls       {held-call options (lkchaos.voice.session.Options), "agent_name": str?}
                      -> {"id", "room", "livekit_url", "agent_name"}: a held conversation
                      started (a caller asking turn after turn)
    GET  /calls/{id}?after=N&wait_s=W -> its turns numbered above N (waiting up to W s for
                      one), its state and summary (lkchaos.voice.calls.Registry.turns)
    DELETE /calls/{id}[?at_once=1] -> end it (after its turn under way, or at once, that
                      turn dropped); its summary
    GET  /calls       -> the held calls
    GET  /health      -> {"status": "ok"}

Every endpoint but ``/health`` answers only requests whose ``Authorization: Bearer`` header
carries the credential derived from the LiveKit API secret (``lkchaos.voice.credential``);
any other gets 401 before its body is read, and no call is placed. It listens on 127.0.0.1
unless told otherwise (``--host``); in the reference stack it listens on the container's
network so that Docker can publish it, and the port is published on the host's 127.0.0.1
only. A question is at most 300 printable
characters on one line and reaches espeak-ng on its standard input, never as an option.

Environment: ``LIVEKIT_URL`` (the public URL, e.g. ``wss://lk.chaos.test``),
``LIVEKIT_API_KEY``, ``LIVEKIT_API_SECRET``, ``AGENT_NAME`` (the agent dispatched when a
request names none: lkchaos names the target's ``voice.agent_name``). One round trip runs at a time:
concurrent requests wait their turn, so they never compete for the two CPU cores the agent
and Whisper also need. Held calls run side by side (a load test holds many); one nobody read
for ``lkchaos.voice.calls.IDLE_S`` seconds is ended.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from aiohttp import web

from lkchaos.livekit import hold as holding
from lkchaos.voice import audio, calls, roundtrip, session
from lkchaos.voice.credential import is_authorized
from lkchaos.voice.questions import QuestionError, random_question

log = logging.getLogger("lkchaos.prober")
CONFIG = web.AppKey("config", dict[str, str])
HOLDS = web.AppKey("holds", holding.Holds)
CALLS = web.AppKey("calls", calls.Registry)
_lock = asyncio.Lock()
#: Round trips leaving their rooms after their result was sent (a join the SDK was still
#: retrying): kept here so that they run to the end, and waited for when the prober stops.
_leaving: set[asyncio.Task[None]] = set()
MAX_EXPECTED = 10
MAX_EXPECTED_CHARS = 100


def _env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"the prober needs {name} in its environment")
    return value


#: Longest agent name a request may give.
MAX_AGENT_NAME = 128


def agent_name(body: dict[str, Any], default: str) -> str:
    """The agent a request dispatches: its ``agent_name`` (``""``: automatic dispatch), else
    ``default`` (``AGENT_NAME``); ValueError says what is wrong."""
    name = body.get("agent_name", default)
    if not isinstance(name, str) or len(name) > MAX_AGENT_NAME or not name.isprintable():
        raise ValueError(f"agent_name must be a printable string of at most {MAX_AGENT_NAME} "
                         f"characters, not {name!r}")
    return name


def parse_request(body: Any) -> tuple[str, list[str] | None, roundtrip.Timeouts]:
    """Validate a request body (its ``agent_name``: :func:`agent_name`); ValueError says
    what is wrong."""
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    unknown_keys = set(body) - {"question", "expected", "timeouts", "agent_name"}
    if unknown_keys:
        raise ValueError(f"unknown field(s): {', '.join(sorted(map(str, unknown_keys)))}")
    question = body.get("question") or random_question()
    if not isinstance(question, str):
        raise ValueError("question must be a string")
    try:
        audio.check_text(question)
    except ValueError as exc:
        raise ValueError(f"question: {exc}") from exc
    expected = body.get("expected")
    if expected is not None and (
        not isinstance(expected, list) or not all(isinstance(e, str) and e for e in expected)
    ):
        raise ValueError("expected must be a list of non-empty strings")
    if expected is not None and (
        len(expected) > MAX_EXPECTED or any(len(e) > MAX_EXPECTED_CHARS for e in expected)
    ):
        raise ValueError(
            f"expected must hold at most {MAX_EXPECTED} answers of at most "
            f"{MAX_EXPECTED_CHARS} characters"
        )
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


UNAUTHORIZED = (
    "this prober answers only requests carrying the stack's credential: send "
    "'Authorization: Bearer <token>' with the token from lkchaos.voice.credential.prober_token"
    "(LIVEKIT_API_SECRET), as the lkchaos voice probe does"
)


@web.middleware
async def require_credential(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Refuse every request but ``GET /health`` without the credential, before reading it."""
    if request.method == "GET" and request.path == "/health":
        return await handler(request)
    secret = request.app[CONFIG]["secret"]
    if not is_authorized(request.headers.get("Authorization"), secret):
        log.warning("refused an unauthenticated %s %s", request.method, request.path)
        return web.json_response(
            {"error": UNAUTHORIZED}, status=401, headers={"WWW-Authenticate": "Bearer"}
        )
    return await handler(request)


async def round_trip(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        body = await request.json()
        question, expected, timeouts = parse_request(body)
        agent = agent_name(body, config["agent"])
    except ValueError as exc:  # includes malformed JSON
        return web.json_response({"error": str(exc)}, status=400)
    async with _lock:
        try:
            result = await roundtrip.run(
                config["url"], config["key"], config["secret"], question, expected,
                agent, timeouts, leave_later=_leave_later,
            )
        except QuestionError as exc:
            return web.json_response({"error": str(exc)}, status=400)
    log.info("%s %s %s", result["stage"], result["question"], result["timings_ms"])
    return web.json_response({**result, "livekit_url": config["url"], "agent_name": agent})


async def hold(request: web.Request) -> web.Response:
    try:
        body = await request.json()
        if not isinstance(body, dict) or set(body) - {"room", "count", "duration_s"}:
            raise ValueError("the body must be an object with room, count and duration_s")
        room, count, duration_s = holding.check(
            body.get("room"), body.get("count", 2), body.get("duration_s", 600)
        )
    except (ValueError, holding.HoldError) as exc:  # includes malformed JSON
        return web.json_response({"error": str(exc)}, status=400)
    config = request.app[CONFIG]
    try:
        result = await request.app[HOLDS].hold(
            config["url"], config["key"], config["secret"], room, count, duration_s
        )
    except holding.HoldError as exc:
        return web.json_response({"error": str(exc)}, status=502)
    log.info("holding %s participants in %s", count, room)
    return web.json_response(result)


async def release(request: web.Request) -> web.Response:
    return web.json_response(await request.app[HOLDS].release(request.match_info["room"]))


async def held(request: web.Request) -> web.Response:
    return web.json_response(request.app[HOLDS].status())


async def start_call(request: web.Request) -> web.Response:
    config = request.app[CONFIG]
    try:
        body = await request.json()
        if not isinstance(body, dict):
            raise ValueError("the body must be an object of held-call options")
        agent = agent_name(body, config["agent"])
        options = session.Options.from_dict(
            {k: v for k, v in body.items() if k != "agent_name"})
    except ValueError as exc:  # includes malformed JSON
        return web.json_response({"error": str(exc)}, status=400)
    registry = request.app[CALLS]
    try:
        call_id = registry.start(config["url"], config["key"], config["secret"],
                                 agent, options)  # fmt: skip
    except calls.CallError as exc:
        return web.json_response({"error": str(exc)}, status=429)
    room = next(c["room"] for c in registry.status() if c["id"] == call_id)
    log.info("held call %s started in %s for %r", call_id, room, agent)
    return web.json_response({"id": call_id, "room": room, "livekit_url": config["url"],
                              "agent_name": agent})


def _query_number(request: web.Request, name: str, default: float, top: float) -> float:
    raw = request.query.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, not {raw!r}") from exc
    if not 0 <= value <= top:
        raise ValueError(f"{name} must be from 0 to {top:g}")
    return value


async def call_turns(request: web.Request) -> web.Response:
    try:
        after = int(_query_number(request, "after", 0, session.MAX_TURNS))
        wait_s = _query_number(request, "wait_s", 0.0, 120.0)
        return web.json_response(
            await request.app[CALLS].turns(request.match_info["id"], after, wait_s))
    except ValueError as exc:
        return web.json_response({"error": str(exc)}, status=400)
    except calls.CallError as exc:
        return web.json_response({"error": str(exc)}, status=404)


async def end_call(request: web.Request) -> web.Response:
    at_once = request.query.get("at_once", "0")
    if at_once not in ("0", "1"):
        return web.json_response({"error": f"at_once must be 0 or 1, not {at_once!r}"},
                                 status=400)  # fmt: skip
    try:
        return web.json_response(await request.app[CALLS].end(request.match_info["id"],
                                                              at_once=at_once == "1"))
    except calls.CallError as exc:
        return web.json_response({"error": str(exc)}, status=404)


async def list_calls(request: web.Request) -> web.Response:
    return web.json_response({"calls": request.app[CALLS].status()})


def _leave_later(leaving: Coroutine[Any, Any, None]) -> None:
    task = asyncio.ensure_future(leaving)
    _leaving.add(task)
    task.add_done_callback(_leaving.discard)


async def _release_all(app: web.Application) -> None:
    await app[HOLDS].release_all()
    await app[CALLS].end_all()
    if _leaving:
        await asyncio.wait(set(_leaving), timeout=60)


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def make_app(config: dict[str, str] | None = None) -> web.Application:
    """The prober's application; ``config`` (``url``, ``key``, ``secret``, ``agent``)
    defaults to the environment."""
    app = web.Application(middlewares=[require_credential], client_max_size=64 * 1024)
    app[CONFIG] = config or {
        "url": _env("LIVEKIT_URL"),
        "key": _env("LIVEKIT_API_KEY"),
        "secret": _env("LIVEKIT_API_SECRET"),
        "agent": os.environ.get("AGENT_NAME", "lkchaos-agent"),
    }
    app[HOLDS] = holding.Holds()
    app[CALLS] = calls.Registry()
    app.on_cleanup.append(_release_all)
    app.router.add_post("/round-trip", round_trip)
    app.router.add_post("/hold", hold)
    app.router.add_get("/hold", held)
    app.router.add_delete("/hold/{room}", release)
    app.router.add_post("/calls", start_call)
    app.router.add_get("/calls", list_calls)
    app.router.add_get("/calls/{id}", call_turns)
    app.router.add_delete("/calls/{id}", end_call)
    app.router.add_get("/health", health)
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve voice round trips over HTTP.")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (0.0.0.0 only inside a container whose "
                             "port is published on the host's loopback)")
    parser.add_argument("--port", type=int, default=8090,
                        help="port to listen on (0: one the system chooses)")
    parser.add_argument("--with-parent", action="store_true",
                        help="stop when standard input closes (run by another process: "
                             "lkchaos.voice.local_prober), and print the URL listened on")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    app = make_app()
    from lkchaos.voice import extra

    if not extra.missing():  # without Whisper it still holds participants
        audio.whisper_model()  # load before the first request, not during it
    if not args.with_parent:
        web.run_app(app, host=args.host, port=args.port, print=None)
        return
    asyncio.run(_serve_child(app, args.host, args.port))


async def _serve_child(app: web.Application, host: str, port: int) -> None:
    """Serve ``app`` until standard input closes (the parent exited or let go) or a
    SIGTERM/SIGINT, then leave every room (the app's cleanup) and return."""
    from lkchaos.voice.local_prober import READY

    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    def watch_parent() -> None:
        sys.stdin.read()  # returns at end of input: the parent is gone or let go
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=watch_parent, name="parent", daemon=True).start()
    print(f"{READY} http://{host}:{bound}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    main()
