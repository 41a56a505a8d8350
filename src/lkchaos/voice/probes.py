"""The voice round-trip probe: a caller asks a question out loud and checks the spoken answer.

``voice_round_trip`` returns (full shape in ``lkchaos.voice.roundtrip.run``)::

    {"ok": true, "stage": "ok", "reason": "heard '5'",
     "question": "What is two plus three?", "expected": ["5", "five"],
     "heard": "Two plus three is 5.", "latency_s": 1.42,
     "timings_ms": {"join": 120.3, "dispatch": 830.1, "end_of_speech_to_first_audio": 1420.0,
                    "end_of_speech_to_reply_end": 3350.2, "transcription": 310.5},
     "agent": {"outcome": "answered", "stt_ms": 760, "tool_ms": 48, "e2e_ms": 1390, ...},
     "room": "lkchaos-probe-1a2b3c4d5e"}

The question, when not given, is drawn per call: two operands from 2 to 12 and plus, minus
or times (``lkchaos.voice.questions``), so an agent stuck on one reply or replaying an old one
fails. On failure ``ok`` is false and ``stage`` names where: ``join``, ``dispatch``,
``no_reply`` (the agent stayed silent), ``misheard`` (the agent's own transcript of the
question, ``agent_heard``, asks something else: its speech recognition failed, not its
answer), ``apology`` (it heard right and apologised), ``reply_misheard`` (the agent reports
having said the answer, the caller heard the same sentence with another), ``wrong_reply``
(it heard right and answered wrong), ``extra_agent`` (right, but more than one agent spoke
in the caller's room, ``agents``: a duplicate dispatch answers twice),
``timeout``, or ``slow_reply`` (right, but over ``max_latency_s``), with the ``reason``.
``misheard`` is true, false, or null when the agent reported no transcript.
When a round trip failed after the agent's reply audio came, ``audio`` is the absolute path of
that audio as the caller heard it, a WAV file (16-bit mono, 16 kHz, at most 20 s) kept under
the state folder, ``<state_dir>/audio/<UTC date>/<uuid>.wav``; ``lkchaos report`` plays it.
A recording that cannot be written is left out (and logged); it never changes the verdict.
Tolerances::

    {"type": "jsonpath", "path": "$.ok", "expect": true}
    {"type": "range", "range": [0.0, 2.5], "target": "latency_s"}

``voice_round_trips`` makes several calls in a row and judges them together, for a steady
state that one slow call must not break: ``ok`` when at least ``min_answered`` were answered
right and the median latency of those is within ``max_median_latency_s``::

    {"ok": true, "calls": 3, "answered": 3, "min_answered": 3, "latency_median_s": 1.81,
     "latency_max_s": 3.02, "max_median_latency_s": 3.0, "failures": {}, "misheard": 0,
     "results": [{"ok": true, "stage": "ok", "reason": "heard '5'", "latency_s": 1.81,
                  "question": "What is two plus three?", "expected": ["5", "five"],
                  "heard": "2 plus 3 is 5."}, ...]}

Against the reference stack the round trip runs in the stack's prober container, so the
caller goes through the stack's DNS and Caddy's TLS like a real one; set
``voice_prober_url`` to ``""`` to run it from this machine instead (your own deployment, where
this machine resolves and trusts like your callers do), in the same prober started as a child
of this process (:mod:`lkchaos.voice.local_prober`: a crash of the LiveKit SDK's native
runtime ends the child, not the run); that needs the ``voice`` extra (``pip install
'lkchaos[voice]'``: Whisper on this machine), and is refused without it. Requests
to the prober carry the credential derived from the LiveKit API secret
(``lkchaos.voice.credential``).
"""

import base64
import datetime as dt
import logging
import math
import statistics
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.settings import Settings
from lkchaos.voice import prober_client

__all__ = ["voice_round_trip", "voice_round_trips", "held_call_turn", "end_held_call",
           "held_conversation"]

_SUMMARY_KEYS = ("ok", "stage", "reason", "latency_s", "question", "expected", "heard",
                 "misheard", "reply_paused_s")
_AUDIO_KEY = "reply_wav_b64"
log = logging.getLogger("lkchaos.voice")


def voice_round_trip(
    question: str = None,  # type: ignore[assignment]
    expected: List[str] = None,  # type: ignore[assignment]
    timeout: float = 45.0,
    stage_timeouts: Dict[str, float] = None,  # type: ignore[assignment]
    max_latency_s: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Ask a question by voice through the whole stack and check the agent's spoken answer.

    ``question`` defaults to one drawn at random per call (operands 2 to 12; plus, minus
    or times); any "What is A plus|minus|times|divided by B?" works without ``expected``.
    ``timeout`` bounds the whole round trip (a voice prober that gives no answer at all,
    paused or hung, is given up on 15 s after it: the time it takes to leave the room and
    transcribe the reply); ``stage_timeouts`` may set ``join``,
    ``dispatch``, ``first_reply_audio``, ``reply`` and ``reply_pause`` (seconds: how long a
    reply judged wrong is listened to on, for an agent that says "let me check", reports
    ``listening`` while its tool runs, then answers; default 8, 0 for not at all). With
    ``max_latency_s``, a right answer that came later than that (end of speech to first
    reply audio) fails too, at stage ``slow_reply``. ``stage`` tells a silent agent
    (``no_reply``) from one that misheard the question (``misheard``), apologised
    (``apology``), was misheard by the caller (``reply_misheard``) or answered wrong
    (``wrong_reply``). The probe always leaves its room.
    """
    if not timeout > 0:
        raise ActivityFailed(f"timeout must be a positive number of seconds, not {timeout!r}")
    if max_latency_s is not None and not max_latency_s > 0:
        raise ActivityFailed(f"max_latency_s must be positive, not {max_latency_s!r}")
    settings = Settings.load(configuration, secrets)
    timeouts = {**(stage_timeouts or {}), "total": float(timeout)}
    if settings.voice_prober_url:
        _key, secret = settings.require_keys()
        result = _via_prober(settings.voice_prober_url, secret, question, expected, timeouts,
                             settings.agent_name)
    else:
        result = _in_local_prober(settings, question, expected, timeouts)
    result = keep_reply_audio(result, Path(settings.state_dir))
    return apply_latency_budget(result, max_latency_s)


def voice_round_trips(
    calls: int = 3,
    min_answered: int = None,  # type: ignore[assignment]
    max_median_latency_s: float = None,  # type: ignore[assignment]
    question: str = None,  # type: ignore[assignment]
    expected: List[str] = None,  # type: ignore[assignment]
    timeout: float = 45.0,
    stage_timeouts: Dict[str, float] = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Make ``calls`` voice round trips one after the other and judge them together.

    ``ok`` when at least ``min_answered`` (default: all) were answered right and, with
    ``max_median_latency_s``, the median latency of the answered calls is within it. One slow
    call among fast ones does not fail a steady state; a slow service does. The calls stop
    early once the verdict is decided, whatever the calls left would give: ``min_answered``
    can no longer be reached, or it is reached and the median stays within (or over) the
    budget even if every call left were answered as slowly (or as fast) as can be.
    ``calls=2, min_answered=1`` is "a caller is answered", not failed by the one call in fifty
    whose question the agent's Whisper mishears, yet a second call is made only after a
    failed one; ``calls=3, min_answered=2`` with a budget stops after two calls answered
    within it. The other arguments are those of ``voice_round_trip``, for every call.
    """
    if isinstance(calls, bool) or not isinstance(calls, int) or not 1 <= calls <= 20:
        raise ActivityFailed(f"calls must be a whole number from 1 to 20, not {calls!r}")
    needed = calls if min_answered is None else min_answered
    if isinstance(needed, bool) or not isinstance(needed, int) or not 1 <= needed <= calls:
        raise ActivityFailed(
            f"min_answered must be a whole number from 1 to calls ({calls}), not {needed!r}"
        )
    if max_median_latency_s is not None and not max_median_latency_s > 0:
        raise ActivityFailed(
            f"max_median_latency_s must be positive, not {max_median_latency_s!r}"
        )
    results: List[Dict[str, Any]] = []
    for _ in range(calls):
        results.append(
            voice_round_trip(
                question=question, expected=expected, timeout=timeout,
                stage_timeouts=stage_timeouts, configuration=configuration, secrets=secrets,
            )
        )  # fmt: skip
        if round_trips_decided(results, calls, needed, max_median_latency_s):
            break
    return summarize_round_trips(results, needed, max_median_latency_s)


def round_trips_decided(
    results: List[Dict[str, Any]], calls: int, min_answered: int,
    max_median_latency_s: float | None,
) -> bool:  # fmt: skip
    """Whether ``summarize_round_trips`` gives the same verdict whatever the ``calls`` not
    yet made return: each may fail, or be answered in any time."""
    latencies = answered_latencies(results)
    left = calls - len(results)
    if len(latencies) + left < min_answered:
        return True  # too few can still be answered: failed
    if max_median_latency_s is None:
        return len(latencies) >= min_answered
    if statistics.median(latencies + [0.0] * left) > max_median_latency_s:
        return True  # over the budget even if every call left were answered at once: failed
    return len(latencies) >= min_answered and (
        statistics.median(latencies + [math.inf] * left) <= max_median_latency_s
    )


def answered_latencies(results: List[Dict[str, Any]]) -> List[float]:
    """The latencies (seconds) of the round trips answered right, in call order."""
    return [
        float(r["latency_s"]) for r in results if r.get("ok") and r.get("latency_s") is not None
    ]


def summarize_round_trips(
    results: List[Dict[str, Any]], min_answered: int, max_median_latency_s: float | None
) -> Dict[str, Any]:
    """The verdict on several round trips (see ``voice_round_trips``)."""
    latencies = answered_latencies(results)
    median = statistics.median(latencies) if latencies else None
    fast = max_median_latency_s is None or (median is not None and median <= max_median_latency_s)
    failures = dict(Counter(str(r.get("stage")) for r in results if not r.get("ok")))
    # Answered calls over the median's budget, slowest first: what made the median late.
    slow = sorted((round(x, 3) for x in latencies
                   if max_median_latency_s is not None and x > max_median_latency_s),
                  reverse=True)  # fmt: skip
    reasons = []
    if len(latencies) < min_answered:
        why = ", ".join(f"{stage} {n}" for stage, n in sorted(failures.items()))
        reasons.append(f"{len(latencies)} of {len(results)} calls answered, fewer than "
                       f"{min_answered}" + (f" ({why})" if why else ""))  # fmt: skip
    if not fast and median is not None:
        reasons.append(f"median latency {median:.2f} s over the {max_median_latency_s:g} s "
                       f"budget ({len(slow)} of {len(latencies)} answered calls over it, up "
                       f"to {slow[0]:.2f} s)" if slow else
                       f"median latency {median:.2f} s over {max_median_latency_s:g} s")
    return {
        "ok": len(latencies) >= min_answered and fast,
        "reason": "; ".join(reasons),
        "slow_latencies_s": slow,
        "calls": len(results),
        "answered": len(latencies),
        "min_answered": min_answered,
        "latency_median_s": None if median is None else round(median, 3),
        "latency_max_s": max(latencies) if latencies else None,
        "max_median_latency_s": max_median_latency_s,
        "failures": failures,
        "misheard": sum(1 for r in results if r.get("stage") == "misheard"),
        "results": [_summary(r) for r in results],
    }


def _summary(result: Dict[str, Any]) -> Dict[str, Any]:
    """One call's entry in ``voice_round_trips``' results; ``audio`` only when it was kept."""
    summary = {k: result.get(k) for k in _SUMMARY_KEYS}
    if "audio" in result:
        summary["audio"] = result["audio"]
    return summary


def keep_reply_audio(result: Dict[str, Any], state_dir: Path) -> Dict[str, Any]:
    """``result`` without its ``reply_wav_b64`` (base64 WAV, see ``lkchaos.voice.roundtrip``)
    and, when there was one, with ``audio``: the absolute path of the WAV file it was written
    to, ``<state_dir>/audio/<UTC date>/<uuid>.wav``. A recording that cannot be decoded or
    written is logged and left out; nothing else of the result changes."""
    if _AUDIO_KEY not in result:
        return result
    kept = {k: v for k, v in result.items() if k != _AUDIO_KEY}
    try:
        wav = base64.b64decode(str(result[_AUDIO_KEY]), validate=True)
        folder = state_dir / "audio" / dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{uuid.uuid4().hex}.wav"
        path.write_bytes(wav)
    except (OSError, ValueError) as exc:  # binascii.Error is a ValueError
        log.warning("could not keep the reply audio of a failed voice round trip: %s", exc)
        return kept
    kept["audio"] = str(path.resolve())
    return kept


def apply_latency_budget(result: dict[str, Any], max_latency_s: float | None) -> dict[str, Any]:
    """Fail a correct but late answer: ``ok`` false, ``stage`` ``slow_reply``."""
    latency = result.get("latency_s")
    if max_latency_s is None or not result.get("ok") or latency is None:
        return result
    if latency > max_latency_s:
        return {
            **result, "ok": False, "stage": "slow_reply",
            "reason": f"answered right but in {latency:.2f} s, over {max_latency_s:g} s",
        }
    return result


def _via_prober(
    url: str, secret: str, question: str | None, expected: list[str] | None,
    timeouts: dict[str, float], agent_name: str | None = None,
) -> dict[str, Any]:  # fmt: skip
    """A round trip made by the prober at ``url``; ``agent_name`` (the target's) is the agent
    it dispatches, where None leaves the prober's own ``AGENT_NAME``."""
    body: dict[str, Any] = {"question": question, "expected": expected, "timeouts": timeouts}
    if agent_name is not None:
        body["agent_name"] = agent_name
    return prober_client.call(url, secret, "POST", "/round-trip", body,
                              timeout=timeouts["total"] + 15)


def _in_local_prober(
    settings: Settings, question: str | None, expected: list[str] | None,
    timeouts: dict[str, float],
) -> dict[str, Any]:  # fmt: skip
    """The round trip in lkchaos's own prober, a child of this process
    (:mod:`lkchaos.voice.local_prober`): a crash of the LiveKit SDK's native runtime ends that
    child, not this run. A round trip cut short by such a crash is made again once, in a new
    child (the crash is the client's, not the deployment's)."""
    from lkchaos.voice import extra, local_prober

    absent = extra.missing()
    if absent:
        raise ActivityFailed(f"{extra.NEEDED} (not installed: {', '.join(absent)})")
    prober = local_prober.local(settings)
    for attempt in (1, 2):
        result = prober.attempt(
            lambda url: _via_prober(url, prober.secret, question, expected, timeouts))
        if not isinstance(result, local_prober.Died):
            return result
        if attempt == 2:
            raise ActivityFailed(
                f"lkchaos's local voice prober {result.how} during the round trip, twice: the "
                "LiveKit SDK's native runtime crashed, not the deployment (its log: "
                f"{prober.log_path})"
            )
        log.warning("lkchaos's local voice prober %s during a round trip; making it again",
                    result.how)  # fmt: skip
    raise AssertionError("unreachable")


def held_call_turn(
    caller: str = "caller",
    timeout: float = 30.0,
    duration_s: float = 900.0,
    turn_gap_s: float = 0.3,
    transcribe_every: int = 1,
    callers: int = 1,
    stagger_s: float = 2.5,
    overdue_s: float = None,  # type: ignore[assignment]
    every_s: float = None,  # type: ignore[assignment]
    max_latency_s: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The next turn of a held conversation (one caller that joined once and keeps asking),
    for the sampling control: its first call starts the held call named ``caller``
    (bounded by ``duration_s``; ``turn_gap_s`` between turns; every ``transcribe_every``-th
    reply transcribed, the others checked by the agent's own report; ``callers`` calls side
    by side, started ``stagger_s`` apart, for a sample every few seconds), each call returns
    the next turn any of them finished, within ``timeout`` seconds: ``{"ok", "stage",
    "reason", "turn", "t", "latency_s", "question", "heard", "checked_by", "caller", "room",
    "calls", "reconnects", "agents_seen"}``. Stages: those of a round trip, ``no_agent``,
    ``no_turn``, ``call_ended`` (see :mod:`lkchaos.voice.held`). With ``overdue_s``
    (seconds), a call that finds no turn finished within ``every_s`` (seconds, default 2)
    returns as soon as a session has waited longer than ``overdue_s`` to join, for the
    agent, or for the first audio of its reply: a failed sample, stage ``overdue``, the
    longest wait in ``waited_s`` and its room; so the series keeps a sample every
    ``every_s`` while replies hang. With ``max_latency_s`` (seconds, the reply's latency
    budget), a turn answered right later than that fails (stage ``slow_reply``), and a
    session waiting longer than that for its reply's first audio is overdue at once (its
    reply can only be slow). End with ``end_held_call``."""
    from lkchaos.voice import held

    return held.turn(caller, timeout, duration_s, turn_gap_s, transcribe_every, callers,
                     stagger_s, overdue_s, every_s, max_latency_s, configuration,
                     secrets)  # fmt: skip


def end_held_call(
    caller: str = "caller", configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """End the held call ``caller`` and return its summary: ``{"ended", "turns", "answered",
    "answered_pct", "latency_p50_s", "latency_p95_s", "reconnects", "agents_seen", "stages",
    "events", "media_path", ...}`` (``ended`` false when there was none)."""
    from lkchaos.voice import held

    return held.end(caller, configuration, secrets)


def held_conversation(
    turns: int = 10,
    min_answered_pct: float = 100.0,
    max_latency_p95_s: float = None,  # type: ignore[assignment]
    turn_gap_s: float = 0.3,
    timeout: float = 300.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Hold one call for ``turns`` turns in the same room (within ``timeout`` s) and judge
    them together: ``ok`` when at least ``min_answered_pct`` % were answered right (and,
    with ``max_latency_p95_s``, the p95 latency is within it). Returns the call's summary
    (see ``end_held_call``) with ``ok`` and ``turn_results``."""
    from lkchaos.voice import held

    return held.conversation(turns, min_answered_pct, max_latency_p95_s, turn_gap_s, timeout,
                             configuration, secrets)  # fmt: skip
