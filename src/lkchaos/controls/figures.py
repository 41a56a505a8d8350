"""Figures derived from a probe's samples and the run's marks: availability, time to detect,
time to recover (RTO), longest outage, achieved sampling interval.

A sample is ``{"t", "at", "ok", "latency_ms", "value"}``, ``t`` being when the probe call
started (seconds since the control started). Figures use when each result was *known*,
``t + latency_ms / 1000``, called the sample's observation time below.

- ``availability``: share of ok samples (of those counted: see mishearings below);
  ``availability_during_fault`` the same over the samples observed between the fault's start
  and end (to now while it lasts).
- ``time_to_detect_s``: from the start of the first fault action to the first failed sample
  observed after it; null when no sample failed after the fault started.
- ``rto_s``: from the end of the fault to the observation of the first ok sample after the
  last failed one (0.0 if that came before the end of the fault, or the probe never failed).
  While ``recovered`` is false (the latest sample failed, or there is none, or no sample
  *started* after the fault's end has been ok since the last failure: a call begun before
  the fault that ended well says nothing of the deployment after it) it is the time from the
  end of the fault to the end of sampling (or now): a lower bound. Null when no fault has
  ended.
- Samples are taken in the order their results were known: held sessions' turns, placed
  where their reply became due, interleave, and one session's slow failure can be known
  after another's later success; recovery is the first ok result known after the last
  failure known.
- ``longest_outage_s``: longest run of failed samples, from the first failed observation to
  the next ok one (or the end of sampling); 0.0 when the probe never failed.
- ``interval_median_s``, ``interval_p95_s``: between consecutive sample starts; null with
  fewer than two samples.
- ``before_fault``: ``{"samples", "ok"}``, the samples observed before the fault started and
  how many were ok; null when no fault started. A probe that failed every one of several
  (:func:`not_steady_before_fault`) was not measuring a steady deployment.

Mishearings are set apart. A failed sample whose probe says an utterance was misheard (the
voice probes' ``stage`` ``misheard``, the question by the agent, or ``reply_misheard``, the
reply by the caller; recorded as the sample's ``"misheard": true``) is a failure of speech
recognition on one utterance, not of the service: alone (no misheard sample
right before or after it) it counts in ``misheard`` and ``misheard_set_apart`` and in none of
the figures above, which are derived from the other samples. Two or more misheard samples in a
row count as failures like any other: a deployment that mishears every caller is down for
them, and an agent that always reports a stale transcript cannot hide an outage that way.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

Sample = Mapping[str, Any]
Mark = Mapping[str, Any]

_TEXT_LIMIT = 160
_PREFERRED_KEYS = ("ok", "status", "stage", "reason", "healthy", "latency_s", "error", "audio")
_MAX_KEYS = 6


@dataclass(frozen=True)
class Fault:
    """When the fault started and ended, in seconds since the control started."""

    start_t: float | None = None
    end_t: float | None = None
    end_from: str | None = None
    actions: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        return {
            "start_t": _round(self.start_t), "end_t": _round(self.end_t),
            "end_from": self.end_from, "actions": list(self.actions),
        }  # fmt: skip


def fault_window(
    marks: Sequence[Mark], fault_end: str, fault_actions: Sequence[str] | None
) -> Fault:
    """The fault: from the first fault action's start to the last one's end, or to the start
    of the rollbacks (``fault_end="rollbacks"``; the last action's end until they start).

    Fault actions are the method's actions, or only those named in ``fault_actions``. Their
    calls count, not their ``pauses``: an action's end mark carries when its call started and
    ended (``call_start_t``, ``call_end_t``).
    """

    def is_fault(mark: Mark, event: str) -> bool:
        return is_method_action(mark, event) and (
            not fault_actions or mark.get("name") in fault_actions)

    starts = [m for m in marks if is_fault(m, "activity_start")]
    if not starts:
        return Fault()
    ends = [m for m in marks if is_fault(m, "activity_end")]
    start_t = (
        min(call_t(m, "call_start_t") for m in ends) if ends
        else min(float(m["t"]) for m in starts)
    )  # fmt: skip
    last_end = (
        max(call_t(m, "call_end_t") for m in ends) if ends and len(ends) >= len(starts)
        else None
    )  # fmt: skip
    end_t, end_from = last_end, "last_action_end" if last_end is not None else None
    if fault_end == "rollbacks":
        rollbacks = [float(m["t"]) for m in marks if m.get("event") == "rollbacks_start"]
        if rollbacks:
            end_t, end_from = rollbacks[0], "rollbacks_start"
    return Fault(
        start_t=start_t, end_t=end_t, end_from=end_from,
        actions=[str(m.get("name")) for m in starts],
    )  # fmt: skip


def is_method_action(mark: Mark, event: str) -> bool:
    """Whether ``mark`` is the ``event`` (``activity_start``, ``activity_end``) of an action
    of the method."""
    return (mark.get("event") == event and mark.get("phase") == "method"
            and mark.get("type") == "action")  # fmt: skip


def call_t(mark: Mark, key: str) -> float:
    """When the action's call itself started or ended (its pauses excluded), if known."""
    value = mark.get(key)
    return float(value) if value is not None else float(mark["t"])


def observed(sample: Sample) -> float:
    """When the sample's result was known: its start plus its latency."""
    return float(sample["t"]) + float(sample["latency_ms"]) / 1000.0


def is_misheard(sample: Sample) -> bool:
    """Whether a sample failed because the question was misheard."""
    return bool(sample.get("misheard")) and not sample["ok"]


def counted(samples: Sequence[Sample]) -> list[Sample]:
    """The samples the figures count: all but each misheard one with no misheard neighbour."""
    flags = [is_misheard(s) for s in samples]
    return [
        s for i, s in enumerate(samples)
        if not flags[i] or (i > 0 and flags[i - 1]) or (i + 1 < len(flags) and flags[i + 1])
    ]  # fmt: skip


def derive(samples: Sequence[Sample], fault: Fault, end_t: float) -> dict[str, Any]:
    """The figures of one probe (see the module docstring); ``end_t`` is the end of sampling,
    or now while it runs."""
    every, taken = samples, len(samples)
    misheard = sum(1 for s in samples if is_misheard(s))
    samples = counted(samples)
    set_apart = taken - len(samples)
    n = len(samples)
    # In the order their results were known: held sessions' turns, placed at their start,
    # interleave (one session's slow failure is known after another's later success).
    samples = sorted(samples, key=observed)
    failed = [i for i, s in enumerate(samples) if not s["ok"]]
    recovered, recovered_at = _recovery(samples, fault)

    during: float | None = None
    detect: float | None = None
    if fault.start_t is not None:
        stop = fault.end_t if fault.end_t is not None else end_t
        window = [s for s in samples if fault.start_t <= observed(s) <= stop]
        during = sum(1 for s in window if s["ok"]) / len(window) if window else None
        # The earliest failure observed: a sample placed at its start (a held turn) may be
        # observed after one placed later (a session seen overdue while that turn ran).
        first = min((observed(s) for s in samples
                     if not s["ok"] and observed(s) >= fault.start_t), default=None)  # fmt: skip
        detect = first - fault.start_t if first is not None else None

    before: dict[str, int] | None = None
    if fault.start_t is not None:
        earlier = [s for s in samples if observed(s) < fault.start_t]
        before = {"samples": len(earlier), "ok": sum(1 for s in earlier if s["ok"])}

    rto: float | None = None
    if fault.end_t is not None:
        if recovered and not failed:
            rto = 0.0
        elif recovered and recovered_at is not None:
            rto = max(0.0, recovered_at - fault.end_t)
        else:
            rto = max(0.0, end_t - fault.end_t)

    starts = [float(s["t"]) for s in every]
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    return {
        "samples": taken,
        "failures": len(failed),
        "misheard": misheard,
        "misheard_set_apart": set_apart,
        "availability": _round(1 - len(failed) / n if n else None, 4),
        "availability_during_fault": _round(during, 4),
        "time_to_detect_s": _round(detect),
        "rto_s": _round(rto),
        "recovered": recovered,
        "recovered_at_t": _round(recovered_at) if failed else None,
        "first_failure_t": _round(observed(samples[failed[0]])) if failed else None,
        "last_failure_t": _round(observed(samples[failed[-1]])) if failed else None,
        "longest_outage_s": _round(_longest_outage(samples, end_t)),
        "interval_median_s": _round(statistics.median(gaps) if gaps else None),
        "interval_p95_s": _round(_percentile(gaps, 0.95) if gaps else None),
        "before_fault": before,
    }


#: Fewest samples before the fault, all failed, that say a probe was not measuring a steady
#: deployment (one or two failures can be a blip as the run starts).
MIN_BEFORE_FAULT = 3


def not_steady_before_fault(probes: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Of a sampling section's ``probes``, those with a tolerance that failed every one of
    at least :data:`MIN_BEFORE_FAULT` samples before the fault: name -> ``before_fault``.
    Their time to detect and RTO say nothing of the fault: the deployment was already down
    for them, or they cannot reach what they ask (a wrong URL or port in the target)."""
    found = {}
    for name, probe in probes.items():
        if not isinstance(probe, Mapping) or probe.get("tolerance") is None:
            continue
        before = (probe.get("figures") or {}).get("before_fault") or {}
        if before.get("samples", 0) >= MIN_BEFORE_FAULT and before.get("ok") == 0:
            found[str(name)] = dict(before)
    return found


def _recovery(seen: Sequence[Sample], fault: Fault) -> tuple[bool, float | None]:
    """``(recovered, recovered_at)`` of samples in the order their results were known: the
    latest is ok, and, once a fault has ended, a sample *started* after its end was ok after
    the last failure (a call begun before the fault that ended well says nothing of the
    deployment after it). ``recovered_at``: when the first ok result after the last failure
    was known (the first result at all when none failed); None when not recovered."""
    if not seen or not seen[-1]["ok"]:
        return False, None
    failed = [i for i, s in enumerate(seen) if not s["ok"]]
    after = seen[failed[-1] + 1:] if failed else seen
    if fault.end_t is not None and not any(float(s["t"]) >= fault.end_t for s in after):
        return False, None
    return True, observed(after[0])


def settled(samples: Sequence[Sample], fault: Fault, stable_s: float) -> bool:
    """True when there is nothing left to wait for: no fault has ended, or the probe is ok
    (:func:`_recovery`: a sample started after the fault's end among the ok ones) and has
    been ok for ``stable_s`` seconds, observed after the fault ended."""
    if fault.end_t is None:
        return True
    seen = sorted(counted(samples), key=observed)
    recovered, since = _recovery(seen, fault)
    if not recovered or since is None:
        return False
    return observed(seen[-1]) - max(since, fault.end_t) >= stable_s


def summarize(value: Any, keys: Sequence[str] | None = None) -> Any:
    """A small, JSON-safe summary of a probe's result for the journal.

    Scalars stay (long text is cut), a dict keeps ``keys`` (or the usual status keys, else its
    first few scalar entries), a list becomes ``{"len": n}``. A key with dots names a value
    inside nested dicts (``"media_path.publisher.path"``), kept under that dotted key: a
    nested dict kept whole would be ``{"len": n}``.
    """
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, str):
        return _cut(value)
    if isinstance(value, Mapping):
        wanted = list(keys) if keys is not None else [k for k in _PREFERRED_KEYS if k in value]
        if not wanted:
            wanted = [k for k, v in value.items() if _is_scalar(v)][:_MAX_KEYS]
        kept: dict[str, Any] = {}
        for key in wanted:
            found, inner = _lookup(value, key)
            if found:
                kept[str(key)] = _scalar(inner)
        return kept
    if isinstance(value, list | tuple | set):
        return {"len": len(value)}
    return _cut(repr(value))


def _lookup(value: Mapping[str, Any], key: str) -> tuple[bool, Any]:
    """``value[key]``, or for a dotted ``key`` not itself a key, the value its parts name in
    nested dicts: ``(found, value)``. (A key without dots that is not in ``value`` fails at
    its only part.)"""
    if key in value:
        return True, value[key]
    inner: Any = value
    for part in key.split("."):
        if not isinstance(inner, Mapping) or part not in inner:
            return False, None
        inner = inner[part]
    return True, inner


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, bool | int | float | str)


def _scalar(value: Any) -> Any:
    if isinstance(value, str):
        return _cut(value)
    if _is_scalar(value):
        return value
    if isinstance(value, list | tuple | set | Mapping):
        return {"len": len(value)}
    return _cut(repr(value))


def _cut(text: str) -> str:
    return text if len(text) <= _TEXT_LIMIT else text[: _TEXT_LIMIT - 1] + "…"


def _longest_outage(samples: Sequence[Sample], end_t: float) -> float:
    longest = 0.0
    began: float | None = None
    for sample in samples:
        if not sample["ok"] and began is None:
            began = observed(sample)
        elif sample["ok"] and began is not None:
            longest = max(longest, observed(sample) - began)
            began = None
    if began is not None:
        longest = max(longest, end_t - began)
    return longest


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)
