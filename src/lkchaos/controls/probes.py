"""Probes on the run itself: the figures of the running sampling control.

``recovery`` returns, for one probe of the sampling control (``lkchaos.controls.sampling``)
declared in the same experiment::

    {"probe": "rooms-api", "run_id": "4f1c...", "fault_ended": true, "settled": true,
     "rto_s": 3.27, "time_to_detect_s": 0.41, "availability": 0.93,
     "availability_during_fault": 0.62, "recovered": true, "longest_outage_s": 3.5,
     "samples": 212, "failures": 14, "interval_median_s": 0.25, "interval_p95_s": 0.26, ...}

(every figure is defined in ``lkchaos.controls.figures``). "Recovered within 10 s", in the
steady-state hypothesis, which also runs after the method::

    {"type": "probe", "name": "rooms-api-recovered-within-10s",
     "tolerance": {"type": "range", "range": [0, 10], "target": "rto_s"},
     "provider": {"type": "python", "module": "lkchaos.controls.probes", "func": "recovery",
                  "arguments": {"probe": "rooms-api", "wait_s": 15, "stable_s": 1}}}

``rto_s`` is always a number here, so that a range tolerance never meets a null: before any
fault action has ended (the hypothesis's run before the method) it is 0.0 and
``fault_ended`` is false; while the probe has not recovered it is the time since the fault
ended, a lower bound, and ``recovered`` is false. Other figures may be null (e.g.
``time_to_detect_s`` when nothing failed).

``sampled`` judges "now" by the sampling control's own samples instead of an extra call: the
next ``count`` samples of a probe that end after it was called, ok when ``min_ok`` of them
are (a held session's ``overdue`` sample gives way to its turn's verdict). A voice steady
state checked this way costs no second call running beside the sampler's (which would slow
both, on a small machine)::

    {"ok": true, "probe": "caller-answered", "count": 1, "ok_samples": 1, "waited_s": 4.2,
     "results": [{"ok": true, "t": 61.2, "latency_s": 9.6, "value": {...}}]}

``answered_during_fault`` judges failover itself: whether a call begun after the fault action
took effect was answered while the fault was still in place (in the method, before anything
undoes it). Recovery alone cannot show it: a deployment that does not fail over at all is
answered again once the killed node is back, within any bound longer than the fault::

    {"ok": false, "probe": "caller-answered", "action": "kill-livekit-2", "since_t": 31.4,
     "within_s": 45.0, "answered_after_s": null, "waited_s": 45.0, "samples": 4, "failed": 4,
     "last": {"ok": false, "t": 70.2, "latency_s": 6.1, "value": {"stage": "dispatch", ...}}}

``sessions_answered`` judges held sessions one by one: a series of held callers' turns can
be mostly answered while one room is never served again; every session (``value.room``)
that took a turn after the fault must have been answered at least once since::

    {"ok": false, "probe": "held-caller", "key": "room", "since_t": 41.3, "answered": 2,
     "unanswered": ["lkchaos-held-7c1d"], "waited_s": 60.0,
     "sessions": {"lkchaos-held-7c1d": {"turns": 6, "answered": 0, "last": "no_agent"}, ...}}
"""

import time
from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.controls import figures
from lkchaos.controls.figures import settled
from lkchaos.controls.sampler import Sampler
from lkchaos.controls.sampling import find_sampler, sampled_probes

__all__ = ["answered_during_fault", "recovery", "sampled", "sessions_answered"]


def recovery(
    probe: str,
    wait_s: float = 0.0,
    stable_s: float = 0.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Current figures (RTO, time to detect, availability...) of a probe the sampling control
    samples in this run.

    With ``wait_s`` and once a fault has ended, first wait up to ``wait_s`` seconds for the
    probe to be ok and to have stayed ok for ``stable_s`` seconds since the fault ended
    (``settled``), so that a recovery still under way can be measured. Set ``stable_s`` above
    the time the system takes to show the fault, or an early sample can look recovered.
    """
    for name, value in (("wait_s", wait_s), ("stable_s", stable_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ActivityFailed(f"{name} must be a number of seconds >= 0, not {value!r}")
    sampler = _sampler_of(probe)
    if wait_s > 0 and sampler.fault().end_t is not None:
        sampler.wait_settled(float(stable_s), float(wait_s), [probe])
    fault = sampler.fault()
    figures = sampler.figures(probe)
    result: Dict[str, Any] = {
        "probe": probe,
        "run_id": sampler.run_id,
        "fault_ended": fault.end_t is not None,
        "settled": settled(sampler.samples(probe), fault, float(stable_s)),
        **figures,
    }
    if result["rto_s"] is None:
        result["rto_s"] = 0.0
    return result


def answered_during_fault(
    probe: str,
    within_s: float = 45.0,
    action: str = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Whether a sample of ``probe`` *started* after the fault action's call ended (the fault
    in place: a node killed, a link cut) was ok, observed while this probe runs, so before the
    fault is undone: the deployment served new calls in spite of the fault (failover), rather
    than once it was over.

    Put it in the method right after the fault action (after its pause, if it has one) and
    before anything that undoes the fault. The fault action is ``action`` (an action of the
    method, by name), or by default the last method action that ended before this probe.
    Waits until ``within_s`` seconds after that action's call ended for the first such ok
    sample (one known later than that does not count, even when this probe runs later);
    the fault stays in place while it waits. Returns ``{"ok", "probe", "action",
    "since_t", "within_s", "answered_after_s", "waited_s", "samples", "failed", "last"}``:
    ``answered_after_s`` is from the action's end to the ok result (null if none),
    ``samples``/``failed`` count the samples started since, ``last`` is the latest of them
    (``{"ok", "t", "latency_s", "value"}``, null if none). Judge it with a tolerance on
    ``ok`` (a miss makes the run deviate, under the safety control).
    Raises ActivityFailed on bad arguments, when no running sampling control samples
    ``probe``, when no method action (named ``action``) has ended yet, or when it failed.
    """
    if isinstance(within_s, bool) or not isinstance(within_s, int | float) or within_s <= 0:
        raise ActivityFailed(f"within_s must be a number of seconds > 0, not {within_s!r}")
    if action is not None and (not isinstance(action, str) or not action):
        raise ActivityFailed(f"action must be the name of a method action, not {action!r}")
    sampler = _sampling_now(probe)
    since, fault_action = _fault_in_place(sampler.marks(), action)
    began = time.monotonic()
    deadline = began + max(0.0, since + float(within_s) - sampler.now())
    while True:
        fresh = [s for s in sampler.samples(probe) if float(s["t"]) >= since]
        answered = sorted((s for s in fresh if s["ok"]
                           and figures.observed(s) - since <= within_s), key=figures.observed)
        if answered or time.monotonic() >= deadline or not sampler.running:
            break
        time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
    last = max(fresh, key=figures.observed) if fresh else None
    after = figures.observed(answered[0]) - since if answered else None
    return {
        "ok": bool(answered),
        "probe": probe,
        "action": fault_action,
        "since_t": round(since, 3),
        "within_s": float(within_s),
        "answered_after_s": round(after, 3) if after is not None else None,
        "waited_s": round(time.monotonic() - began, 3),
        "samples": len(fresh),
        "failed": sum(1 for s in fresh if not s["ok"]),
        "last": None if last is None else _result(last),
    }  # fmt: skip


def _fault_in_place(marks: list[dict[str, Any]], action: str | None) -> tuple[float, str]:
    """When the fault action's call ended (seconds since the run started), and its name: the
    last method action that ended, or the last one named ``action``."""
    ended = [m for m in marks if figures.is_method_action(m, "activity_end")
             and (action is None or m.get("name") == action)]
    if not ended:
        named = f"named {action!r} " if action is not None else ""
        raise ActivityFailed(
            f"no method action {named}has ended yet: answered_during_fault judges the fault "
            "an action of the method put in place; put it in the method after that action"
        )
    mark = ended[-1]
    if mark.get("status") not in (None, "succeeded"):
        raise ActivityFailed(
            f"the fault action {mark.get('name')!r} did not succeed (status "
            f"{mark.get('status')}): no fault is known to be in place to judge"
        )
    return figures.call_t(mark, "call_end_t"), str(mark.get("name"))


def _sampler_of(probe: str) -> Sampler:
    sampler = find_sampler(probe)
    if sampler is None:
        running = sampled_probes()
        raise ActivityFailed(
            f"no running sampling control samples a probe named {probe!r} (sampled now: "
            f"{running or 'none'}); declare lkchaos.controls.sampling in the experiment's "
            "controls with that probe"
        )
    return sampler


def _sampling_now(probe: str) -> Sampler:
    sampler = _sampler_of(probe)
    if not sampler.running:
        raise ActivityFailed(
            f"the sampling control is not sampling {probe!r} now (it starts with the method, "
            "or has stopped): set its start to 'experiment' to judge the steady state by it"
        )
    return sampler


def sampled(
    probe: str,
    count: int = 1,
    min_ok: int = None,  # type: ignore[assignment]
    timeout_s: float = 60.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """The next ``count`` samples of ``probe`` (sampled by this run's sampling control) that
    end after this call, and whether at least ``min_ok`` of them (default: all) were ok.

    Stops waiting as soon as the verdict is decided (``min_ok`` ok samples, or too many
    failed for ``min_ok`` to be reached), so ``results`` may hold fewer than ``count``. A
    sample failed on one misheard utterance, with no misheard sample beside it, is set apart
    (``misheard_set_apart`` counts them) and the next sample taken instead, as the run's
    figures do (:mod:`lkchaos.controls.figures`). A held session's ``overdue`` sample (taken
    while its reply is late, :mod:`lkchaos.voice.held`) is not a verdict: its turn's is, so it
    is left out once a later sample of that room settles it (one late reply is one failure,
    not two), and counts only if none had come when the wait ended.
    Waits up to ``timeout_s`` seconds in all; samples that did not come by then count as not
    ok (the result says how many came). Returns ``{"ok", "probe", "count", "ok_samples",
    "misheard_set_apart", "waited_s", "results": [{"ok", "t", "latency_s", "value"}]}``
    (``t`` seconds since the run started).
    Raises ActivityFailed when no running sampling control samples ``probe``, or it is not
    sampling yet (its ``start`` is ``method``: sample from the experiment's start instead).
    """
    for name, value in (("count", count), ("min_ok", min_ok)):
        if value is None and name == "min_ok":
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ActivityFailed(f"{name} must be a whole number >= 1, not {value!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ActivityFailed(f"timeout_s must be a number of seconds > 0, not {timeout_s!r}")
    need = count if min_ok is None else min_ok
    if need > count:
        raise ActivityFailed(f"min_ok ({min_ok}) cannot be more than count ({count})")
    sampler = _sampling_now(probe)
    began = time.monotonic()
    since = sampler.now()
    fresh: list[dict[str, Any]] = []
    set_apart = 0
    while True:
        waited = time.monotonic() - began
        over = waited >= timeout_s or not sampler.running
        fresh, set_apart = _judged(sampler.samples(probe), since, count, final=over)
        oks = sum(1 for s in fresh if s["ok"])
        decided = oks >= need or len(fresh) - oks > count - need
        if decided or len(fresh) >= count or over:
            break
        time.sleep(min(0.2, timeout_s - waited))
    ok_samples = sum(1 for s in fresh if s["ok"])
    return {
        "ok": ok_samples >= need,
        "probe": probe,
        "count": len(fresh),
        "ok_samples": ok_samples,
        "misheard_set_apart": set_apart,
        "waited_s": round(time.monotonic() - began, 3),
        "results": [_result(s) for s in fresh],
    }


def _result(sample: dict[str, Any]) -> dict[str, Any]:
    """A sample as these probes return it: ``{"ok", "t", "latency_s", "value"}``."""
    return {"ok": sample["ok"], "t": sample["t"],
            "latency_s": round(sample["latency_ms"] / 1000.0, 3), "value": sample["value"]}


def _overdue(sample: dict[str, Any]) -> bool:
    """Whether ``sample`` is a held session's overdue sample (a reply late, not a verdict)."""
    value = sample.get("value")
    return isinstance(value, dict) and value.get("stage") == "overdue"


def _verdicts(samples: list[dict[str, Any]]) -> dict[Any, float]:
    """Per room, when the last of its verdicts (a sample not overdue) was observed."""
    last: dict[Any, float] = {}
    for sample in samples:
        value = sample.get("value")
        if isinstance(value, dict) and not _overdue(sample):
            room = value.get("room")
            last[room] = max(last.get(room, float("-inf")), figures.observed(sample))
    return last


def _settled(sample: dict[str, Any], verdicts: dict[Any, float]) -> bool:
    """Whether an overdue ``sample`` was followed by a verdict of the same room's: a sample
    of that room, not overdue, whose result was known at or after it (``verdicts``: see
    :func:`_verdicts`)."""
    return verdicts.get(sample["value"].get("room"), float("-inf")) >= figures.observed(sample)


def _judged(samples: list[dict[str, Any]], since: float, count: int,
            final: bool) -> tuple[list[dict[str, Any]], int]:  # fmt: skip
    """The first ``count`` samples observed since ``since`` that judge the service, and how
    many were set apart: a misheard sample (one utterance misheard, see
    :mod:`lkchaos.controls.figures`) with no misheard neighbour is set apart, two in a row
    both count. The latest sample, when misheard, waits for its successor; when ``final``
    (no more will come) it counts. An overdue sample waits for its room's verdict (which
    counts instead); when ``final`` with none come, it counts."""
    flags = [figures.is_misheard(s) for s in samples]
    verdicts = _verdicts(samples) if final else {}
    kept: list[dict[str, Any]] = []
    set_apart = 0
    for i, sample in enumerate(samples):
        if figures.observed(sample) < since:
            continue
        if _overdue(sample) and (not final or _settled(sample, verdicts)):
            continue  # its turn's verdict counts instead (or is still to come)
        if flags[i] and not (i > 0 and flags[i - 1]):
            if i + 1 == len(samples) and not final:
                break  # its neighbour decides
            if i + 1 < len(samples) and not flags[i + 1]:
                set_apart += 1
                continue
        kept.append(sample)
        if len(kept) == count:
            break
    return kept, set_apart


def sessions_answered(
    probe: str,
    sessions: int = None,  # type: ignore[assignment]
    key: str = "room",
    timeout_s: float = 60.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Whether every session seen in ``probe``'s samples since the fault ended (before any
    fault ended: since this call) was answered at least once since, a session being the
    samples whose ``value[key]`` is the same (held callers' rooms).

    Waits up to ``timeout_s`` seconds for every session seen to be answered and, with
    ``sessions``, for at least that many sessions to be; ok when both hold (without
    ``sessions``, as soon as every session seen so far was answered). A call replaced by a
    new one counts as unanswered when its room took a turn after the fault; a call replaced
    during the fault is not seen at all, so where the same sessions must answer again, also
    check the number of calls (``value.calls``), as the held-call experiments do.

    Returns ``{"ok", "probe", "key", "since_t", "answered", "unanswered", "waited_s",
    "sessions": {name: {"turns", "answered", "last"}}}`` (``last``: the stage
    of its last sample), and ``note`` when the samples do not keep ``key`` (the sampling
    control's ``summary_keys`` must name it). Raises ActivityFailed on bad arguments, or when
    no running sampling control samples ``probe``.
    """
    if sessions is not None and (isinstance(sessions, bool) or not isinstance(sessions, int)
                                 or sessions < 1):  # fmt: skip
        raise ActivityFailed(f"sessions must be a whole number >= 1, not {sessions!r}")
    if not isinstance(key, str) or not key:
        raise ActivityFailed(f"key must be the name of a field of the samples, not {key!r}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or timeout_s <= 0:
        raise ActivityFailed(f"timeout_s must be a number of seconds > 0, not {timeout_s!r}")
    sampler = _sampling_now(probe)
    began = time.monotonic()
    fault_end = sampler.fault().end_t
    since = fault_end if fault_end is not None else sampler.now()
    need = sessions or 1
    while True:
        seen = _sessions(sampler.samples(probe), key, since)
        answered = sorted(name for name, s in seen.items() if s["answered"])
        unanswered = sorted(name for name, s in seen.items() if not s["answered"])
        waited = time.monotonic() - began
        ok = not unanswered and len(answered) >= need
        if ok or waited >= timeout_s or not sampler.running:
            break
        time.sleep(min(0.2, timeout_s - waited))
    result = {
        "ok": ok, "probe": probe, "key": key, "since_t": round(since, 3),
        "answered": len(answered), "unanswered": unanswered,
        "waited_s": round(time.monotonic() - began, 3), "sessions": seen,
    }  # fmt: skip
    if not seen and sampler.samples(probe):
        result["note"] = (f"no sample of {probe!r} keeps {key!r}: add {key!r} to the probe's "
                          "summary_keys in the sampling control")  # fmt: skip
    return result


def _sessions(samples: list[dict[str, Any]], key: str, since: float) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for sample in samples:
        value = sample.get("value")
        if sample["t"] + sample["latency_ms"] / 1000.0 < since or not isinstance(value, dict):
            continue
        name = value.get(key)
        if name is None:
            continue
        entry = seen.setdefault(str(name), {"turns": 0, "answered": 0, "last": None})
        entry["turns"] += 1
        entry["answered"] += 1 if sample["ok"] else 0
        entry["last"] = value.get("stage")
    return seen
