"""Held conversations, behind the probes ``held_call_turn``, ``end_held_call`` and
``held_conversation`` of :mod:`lkchaos.voice.probes`: a caller that joins once and keeps
talking.

``held_call_turn`` is made for the sampling control (``lkchaos.controls.sampling``, with
``interval_s`` 0): its first call starts a held call named ``caller``, and each call returns
the call's next turn, so the series has one sample per turn (a few seconds apart) and a
session that stops answering keeps failing in the same room::

    {"ok": true, "stage": "ok", "reason": "heard '12'", "turn": 7, "t": 31.2,
     "latency_s": 1.12, "question": "What is, three times four?", "heard": "3 times 4 is 12.",
     "checked_by": "audio", "caller": "caller", "room": "lkchaos-held-1a2b3c4d5e",
     "calls": 1, "reconnects": 0, "agents_seen": 1}

A turn fails with the stages of a round trip (``no_reply``, ``misheard``, ``apology``,
``reply_misheard``, ``wrong_reply``, ``extra_agent``; ``slow_reply``, answered right over
``max_latency_s`` where one is given), ``no_agent`` (no agent in the room to ask), ``no_turn``
(no turn finished within ``timeout``) or ``call_ended`` (the call ended by itself: its room was
lost; the next sample starts a new call, ``calls`` counts them). With ``callers`` above 1, that
many calls are held side by side, their starts staggered, and each sample is the next turn any
of them finished: a sample every few seconds. They are also kept apart: a call's question
waits until ``stagger_s`` has passed since one of the others began (after a fault every call
is ready at the same moment, and would otherwise stay in step, asking in pairs). With
``overdue_s``, while no turn finishes and a session has waited longer than ``overdue_s`` (to
join, for the agent, or for its reply), a failed sample comes every ``every_s`` seconds, so
that replies that hang through a fault are seen at that pace, not only when each turn gives
up (never an ok sample between turns: only an answered turn says the agent answers)::

    {"ok": false, "stage": "overdue", "reason": "waiting 5.4 s for its reply, over 4 s",
     "waited_s": 5.4, "latency_s": null, "room": "lkchaos-held-1a2b3c4d5e", "caller": "caller",
     "calls": 3, "reconnects": 0, "agents_seen": 3}

``end_held_call`` ends it and returns its
summary (turns, answered %, latency p50/p95, reconnects, agents seen, room events, the media
path); a held call is also ended when this process exits, and by the prober when nobody read
it for 45 s. ``held_conversation`` holds one call for ``turns`` turns and judges them
together (a steady state: "a held conversation passes").

Against the reference stack the call runs in the stack's prober (like the round trip); with
``voice_prober_url`` set to ``""`` it runs in the same prober started as a child of this
process (:mod:`lkchaos.voice.local_prober`; needs ``lkchaos[voice]``).
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.settings import Settings
from lkchaos.voice import local_prober, prober_client
from lkchaos.voice.session import Options

__all__ = ["turn", "end", "conversation"]

#: Longest a held-call probe waits for a turn (seconds).
MAX_WAIT_S = 120.0
#: Seconds between the samples taken between turns (``overdue_s``), unless told.
EVERY_S = 2.0
#: Most held calls one name may hold side by side.
MAX_CALLERS = 8


class Backend(Protocol):
    def start(self, options: Options) -> tuple[str, str]: ...
    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]: ...
    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]: ...


class _Prober:
    """Held calls in the voice prober (``lkchaos.voice.prober``)."""

    def __init__(self, url: str, secret: str, agent_name: str | None = None) -> None:
        self.url, self.secret, self.agent_name = url, secret, agent_name

    def start(self, options: Options) -> tuple[str, str]:
        body: dict[str, Any] = {k: getattr(options, k) for k in Options.__dataclass_fields__}
        if self.agent_name is not None:  # the target's, not the prober's own AGENT_NAME
            body["agent_name"] = self.agent_name
        out = prober_client.call(self.url, self.secret, "POST", "/calls", body, timeout=30)
        return str(out["id"]), str(out["room"])

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        return prober_client.call(self.url, self.secret, "GET",
                                  f"/calls/{call_id}?after={after}&wait_s={wait_s:g}",
                                  timeout=wait_s + 15)  # fmt: skip

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        return prober_client.call(self.url, self.secret, "DELETE",
                                  f"/calls/{call_id}?at_once={int(at_once)}",
                                  timeout=45)  # fmt: skip


class _Local:
    """Held calls in lkchaos's own prober, a child of this process
    (:mod:`lkchaos.voice.local_prober`). A call whose child died (the LiveKit SDK's native
    runtime crashed) has ended: its turns say so, and the next sample starts a new call in a
    new child."""

    def __init__(self, settings: Settings) -> None:
        from lkchaos.voice import extra

        absent = extra.missing()
        if absent:
            raise ActivityFailed(f"{extra.NEEDED} (not installed: {', '.join(absent)})")
        self.prober = local_prober.local(settings)
        self._born: dict[str, int] = {}  # call id -> the generation of the child holding it

    @staticmethod
    def _end_reason(how: str) -> str:
        return (f"lkchaos's local voice prober {how} (the LiveKit SDK's native runtime "
                "crashed; not the deployment)")

    def _holder(self, call_id: str) -> int:
        """The generation of the child holding ``call_id`` (the running one if not known)."""
        return self._born.get(call_id, self.prober.generation)

    def start(self, options: Options) -> tuple[str, str]:
        url = self.prober.url()
        generation = self.prober.generation
        call_id, room = _Prober(url, self.prober.secret).start(options)
        self._born[call_id] = generation
        return call_id, room

    def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
        result = self.prober.attempt(
            lambda url: _Prober(url, self.prober.secret).turns(call_id, after, wait_s),
            self._holder(call_id))  # fmt: skip
        if isinstance(result, local_prober.Died):
            return {"turns": [], "state": "ended", "summary": {},
                    "end_reason": self._end_reason(result.how)}
        return result

    def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
        result = self.prober.attempt(
            lambda url: _Prober(url, self.prober.secret).end(call_id, at_once),
            self._holder(call_id))  # fmt: skip
        self._born.pop(call_id, None)
        if isinstance(result, local_prober.Died):
            return {"state": "ended", "end_reason": self._end_reason(result.how)}
        return result


@dataclass
class _Call:
    call_id: str
    room: str
    seen: int = 0
    reconnects: int = 0
    agents_seen: int = 0


@dataclass
class _Handle:
    backend: Backend
    options: Options
    calls: list[_Call]
    started: int = 0  # calls started under this name, replacements included
    closed: bool = False  # ended (``end``, or this process exiting): start no call for it
    # Held while ``closed`` is set or read and a replacement call started: ``end`` ends the
    # replacement too, or it is never started. The handle's own, so that a start (a request
    # to the prober, up to 30 s) holds up no other name's samples.
    lock: threading.Lock = field(default_factory=threading.Lock)


_handles: dict[str, _Handle] = {}
_lock = threading.Lock()
_exiting = False  # set at exit, once every held call is being ended


def backend(settings: Settings) -> Backend:
    """Where held calls run: the prober (``voice_prober_url``) or lkchaos's own prober, a
    child of this process."""
    if settings.voice_prober_url:
        _key, secret = settings.require_keys()
        return _Prober(settings.voice_prober_url, secret, settings.agent_name)
    return _Local(settings)


def _options(**values: Any) -> Options:
    try:
        return Options.from_dict({k: v for k, v in values.items() if v is not None})
    except ValueError as exc:
        raise ActivityFailed(f"held call: {exc}") from exc


def _check_name(caller: Any) -> str:
    if not isinstance(caller, str) or not caller.strip() or len(caller) > 64:
        raise ActivityFailed(f"caller must be a short name (1-64 characters), not {caller!r}")
    return caller


def _check_wait(timeout: Any) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise ActivityFailed(f"timeout must be a number of seconds, not {timeout!r}")
    if not 0 < timeout <= MAX_WAIT_S:
        raise ActivityFailed(f"timeout must be more than 0 and at most {MAX_WAIT_S:g} s")
    return float(timeout)


def _check_overdue(overdue_s: Any, every_s: Any) -> tuple[float | None, float | None]:
    """``(overdue_s, every_s)`` checked: both None, or every_s defaults to ``EVERY_S``."""
    if overdue_s is None:
        if every_s is not None:
            raise ActivityFailed("every_s needs overdue_s: a sample between turns says "
                                 "whether any session has waited longer than overdue_s")
        return None, None
    overdue = _seconds("overdue_s", overdue_s, MAX_WAIT_S)
    return overdue, EVERY_S if every_s is None else _seconds("every_s", every_s, 60.0)


def _seconds(name: str, value: Any, top: float) -> float:
    """``value`` as seconds, more than 0 and at most ``top``, else ``ActivityFailed``."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= top:
        raise ActivityFailed(f"{name} must be more than 0 and at most {top:g} s, "
                             f"not {value!r}")
    return float(value)


def _check_budget(max_latency_s: Any) -> float | None:
    """``max_latency_s`` (a reply's latency budget) checked: None, or seconds above 0 and at
    most :data:`MAX_WAIT_S`."""
    return None if max_latency_s is None else _seconds("max_latency_s", max_latency_s,
                                                        MAX_WAIT_S)  # fmt: skip


def _overdue(waits: list[tuple[dict[str, Any], _Call]], overdue_s: float,
             budget_s: float | None = None) -> dict[str, Any] | None:  # fmt: skip
    """The sample taken between turns when a session has waited longer than ``overdue_s``
    (to join, for the agent, or for its reply; the longest wait named), or longer than
    ``budget_s`` for its reply's first audio (that reply can only be slow now), else None."""
    late = []
    for wait, call in waits:
        waited, kind = float(wait["s"]), str(wait["for"])
        bound = min(overdue_s, budget_s) if kind == "reply" and budget_s else overdue_s
        if waited > bound:
            late.append((waited, kind, bound, call))
    if not late:
        return None
    waited, kind, bound, call = max(late, key=lambda item: item[0])
    what = {"reply": "its reply", "join": "its room to be joined"}.get(
        kind, "the agent to be there and listen")
    over = f"the {bound:g} s latency budget" if bound != overdue_s else f"{overdue_s:g} s"
    return {"ok": False, "stage": "overdue", "latency_s": None, "waited_s": waited,
            "reason": f"waiting {waited:.1f} s for {what}, over {over}",
            "room": call.room}  # fmt: skip


def _start(handle: _Handle, delay_s: float) -> _Call:
    options = dataclasses.replace(handle.options, start_delay_s=delay_s)
    call_id, room = handle.backend.start(options)
    handle.started += 1
    return _Call(call_id, room)


def turn(
    caller: str = "caller",
    timeout: float = 30.0,
    duration_s: float = 900.0,
    turn_gap_s: float = 0.3,
    transcribe_every: int = 1,
    callers: int = 1,
    stagger_s: float = 2.5,
    overdue_s: float | None = None,
    every_s: float | None = None,
    max_latency_s: float | None = None,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """The next turn of the held calls named ``caller`` (``callers`` of them side by side,
    their starts ``stagger_s`` apart so that their turns interleave), started on first use
    with ``duration_s``, ``turn_gap_s`` and ``transcribe_every`` (see
    :class:`lkchaos.voice.session.Options`); waits up to ``timeout`` seconds for a turn.
    With ``overdue_s``, a call that finds no turn within ``every_s`` seconds (default 2)
    returns as soon as a session has waited longer than ``overdue_s`` (to join, for the
    agent, or for its reply): a failed sample, stage ``overdue``. With ``max_latency_s``, a
    turn answered right but later than that is failed (stage ``slow_reply``), and a session
    waiting longer than that for its reply's first audio is overdue then, not at
    ``overdue_s``. Shape in the module docstring; ``calls`` counts the calls started under
    the name."""
    from lkchaos.voice.probes import apply_latency_budget

    name, wait_s = _check_name(caller), _check_wait(timeout)
    overdue, every = _check_overdue(overdue_s, every_s)
    budget = _check_budget(max_latency_s)
    if isinstance(callers, bool) or not isinstance(callers, int) or \
            not 1 <= callers <= MAX_CALLERS:
        raise ActivityFailed(f"callers must be a whole number from 1 to {MAX_CALLERS}")
    options = _options(duration_s=duration_s, turn_gap_s=turn_gap_s,
                       transcribe_every=transcribe_every, max_turns=2000,
                       start_delay_s=stagger_s,
                       group=f"{name}-{uuid.uuid4().hex[:8]}" if callers > 1 else "",
                       spacing_s=stagger_s if callers > 1 else 0.0)  # fmt: skip
    settings = Settings.load(configuration, secrets)
    with _lock:
        if _exiting:
            raise ActivityFailed("held calls are being ended: this process is exiting")
        handle = _handles.get(name)
        if handle is None:
            handle = _Handle(backend(settings), options, [])
            handle.calls = [_start(handle, k * options.start_delay_s) for k in range(callers)]
            _handles[name] = handle
    deadline = time.monotonic() + wait_s
    between = None if every is None else time.monotonic() + min(every, wait_s)
    while True:
        found: list[tuple[dict[str, Any], _Call]] = []
        waits: list[tuple[dict[str, Any], _Call]] = []
        single = len(handle.calls) == 1 and between is None
        for index, call in enumerate(list(handle.calls)):
            left = max(0.0, deadline - time.monotonic())
            data = handle.backend.turns(call.call_id, call.seen, left if single else 0.0)
            if isinstance(data.get("waiting"), dict):
                waits.append((data["waiting"], call))
            summary = data.get("summary") or {}
            call.reconnects = int(summary.get("reconnects") or 0)
            call.agents_seen = int(summary.get("agents_seen") or 0)
            if data.get("turns"):
                found.append((dict(data["turns"][0]), call))
            elif data.get("state") == "ended":
                with handle.lock:
                    if handle.closed:  # ended by ``end`` (or at exit) while this call waited
                        return {"ok": False, "stage": "call_ended", "latency_s": None,
                                "reason": "the held call was ended (end_held_call)",
                                **_about(name, handle, call)}  # fmt: skip
                with contextlib.suppress(ActivityFailed):  # already gone: the verdict stands
                    handle.backend.end(call.call_id)
                # The next sample asks the new one. Started under the handle's lock, so that
                # ``end`` ends it too, or it is not started: a call started after its name was
                # ended would be left in the room, with its agent, until the prober's idle end.
                with handle.lock:
                    if not handle.closed:
                        handle.calls[index] = _start(handle, 0.0)
                return {"ok": False, "stage": "call_ended", "latency_s": None,
                        "reason": f"the held call ended by itself: {data.get('end_reason')}",
                        **_about(name, handle, call)}  # fmt: skip
        if found:
            result, call = min(found, key=lambda pair: pair[0].get("ended_at") or 0.0)
            call.seen = int(result["turn"])
            return {**apply_latency_budget(result, budget), **_about(name, handle, call)}
        # Between turns, a session waiting too long (a backend that does not say what its
        # calls wait for gives turns only).
        if between is not None and overdue is not None and time.monotonic() >= between:
            late = _overdue(waits, overdue, budget)
            if late is not None:  # placed when seen, not when this call began
                seen_at = time.time()
                return {**_about(name, handle, None), **late, "started_at": seen_at,
                        "ended_at": seen_at}  # fmt: skip
        if time.monotonic() >= deadline:
            return {"ok": False, "stage": "no_turn", "latency_s": None,
                    "reason": f"no turn finished within {wait_s:g} s",
                    **_about(name, handle, None)}  # fmt: skip
        time.sleep(0.2)


def _about(name: str, handle: _Handle, call: _Call | None) -> dict[str, Any]:
    return {
        "caller": name, "room": call.room if call else None, "calls": handle.started,
        "reconnects": sum(c.reconnects for c in handle.calls),
        "agents_seen": sum(c.agents_seen for c in handle.calls),
    }  # fmt: skip


def end(
    caller: str = "caller", configuration: Configuration = None, secrets: Secrets = None
) -> dict[str, Any]:
    """End the held calls named ``caller``; returns their summaries (``{"ended": false}``
    when there are none): per call turns, answered, answered_pct, latency_p50_s/p95_s,
    reconnects, agents_seen, stages, events, media_path; and their totals."""
    name = _check_name(caller)
    with _lock:
        handle = _handles.pop(name, None)
    if handle is None:
        return {"ended": False, "caller": name, "reason": "no held call by that name"}
    with handle.lock:
        handle.closed = True
        calls = list(handle.calls)
    summaries = [handle.backend.end(call.call_id) for call in calls]
    turns = sum(int(s.get("turns") or 0) for s in summaries)
    answered = sum(int(s.get("answered") or 0) for s in summaries)
    return {
        "ended": True, "caller": name, "calls": handle.started, "turns": turns,
        "answered": answered,
        "answered_pct": round(100.0 * answered / turns, 2) if turns else None,
        "reconnects": sum(int(s.get("reconnects") or 0) for s in summaries),
        "agents_seen": sum(int(s.get("agents_seen") or 0) for s in summaries),
        "summaries": summaries,
    }  # fmt: skip


def conversation(
    turns: int = 10,
    min_answered_pct: float = 100.0,
    max_latency_p95_s: float = None,  # type: ignore[assignment]
    turn_gap_s: float = 0.3,
    timeout: float = 300.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Hold one call for ``turns`` turns (within ``timeout`` seconds) and judge them: ``ok``
    when at least ``min_answered_pct`` % were answered right and, with
    ``max_latency_p95_s``, their p95 latency is within it. Returns the call's summary (see
    :func:`end`) with ``ok`` and ``turn_results`` (each turn's stage and latency)."""
    if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= 500:
        raise ActivityFailed(f"turns must be a whole number from 1 to 500, not {turns!r}")
    if not isinstance(min_answered_pct, int | float) or not 0 <= min_answered_pct <= 100:
        raise ActivityFailed("min_answered_pct must be a percentage from 0 to 100")
    if max_latency_p95_s is not None and not (isinstance(max_latency_p95_s, int | float)
                                              and max_latency_p95_s > 0):  # fmt: skip
        raise ActivityFailed("max_latency_p95_s must be a positive number of seconds")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0:
        raise ActivityFailed(f"timeout must be a positive number of seconds, not {timeout!r}")
    options = _options(max_turns=turns, duration_s=min(float(timeout), 3600.0),
                       turn_gap_s=turn_gap_s)  # fmt: skip
    where = backend(Settings.load(configuration, secrets))
    call_id, _room = where.start(options)
    results: list[dict[str, Any]] = []
    try:
        while True:
            data = where.turns(call_id, len(results), min(30.0, float(timeout)))
            results.extend(data.get("turns") or [])
            if data.get("state") == "ended" and not data.get("turns"):
                break
    finally:
        summary = where.end(call_id)
    pct = summary.get("answered_pct") or 0.0
    p95 = summary.get("latency_p95_s")
    ok = len(results) >= turns and pct >= min_answered_pct
    if max_latency_p95_s is not None:
        ok = ok and p95 is not None and p95 <= max_latency_p95_s
    return {
        "ok": ok, **summary, "min_answered_pct": min_answered_pct,
        "max_latency_p95_s": max_latency_p95_s,
        "turn_results": [{k: t.get(k) for k in ("turn", "ok", "stage", "latency_s", "reason")}
                         for t in results],
    }  # fmt: skip



@atexit.register
def _end_all() -> None:
    """End every held call this process started, at once: a turn under way is dropped, as
    nobody is left to read it (the prober would end them after 45 s anyway)."""
    global _exiting
    with _lock:
        _exiting = True
        handles = list(_handles.values())
        _handles.clear()
    calls = []
    for handle in handles:
        with handle.lock:
            handle.closed = True
            calls.append((handle, list(handle.calls)))
    for handle, started in calls:
        for call in started:
            try:
                handle.backend.end(call.call_id, at_once=True)
            except Exception:  # the process is exiting: the prober's idle end is the backstop
                pass
