"""The sampler: one daemon thread per probe, each bounded in samples and in time.

A thread calls its probe through Chaos Toolkit (``chaoslib.activity.run_activity``, so any
provider type works), judges the result with the probe's tolerance (``within_tolerance``, as
a steady-state hypothesis does) and appends a sample. It starts the next call ``interval_s``
after the previous one started (at once if the call took longer, back to back with 0), but
never sooner than :data:`FAILED_GAP_S` after the start of a failed call when back to back: a
call that fails at once (a refused join while LiveKit is down) would otherwise be repeated
many times a second, loading the deployment it measures and filling the journal. It ends when
the sampler is stopped, after ``max_samples`` samples or ``max_duration_s``.
"""

from __future__ import annotations

import bisect
import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

from chaoslib.activity import run_activity
from chaoslib.hypothesis import within_tolerance

from lkchaos.controls.figures import Fault, derive, fault_window, settled, summarize
from lkchaos.controls.options import Options, ProbeSpec

logger = logging.getLogger("chaostoolkit")

_ERROR_LIMIT = 300
#: Seconds from the start of a failed call to the next, for back-to-back probes.
FAILED_GAP_S = 1.0
_POLL_S = 0.05


def _iso() -> str:
    return datetime.now(UTC).isoformat()


def default_ok(result: Any) -> bool:
    """Without a tolerance: a bool must be true, a dict with ``ok`` must have it true;
    anything else returned (not raised) is ok."""
    if isinstance(result, bool):
        return result
    if isinstance(result, Mapping) and "ok" in result:
        return bool(result["ok"])
    return True


#: The voice probes' stages of one utterance misheard: the question by the agent, or the
#: reply by the caller.
MISHEARD_STAGES = frozenset({"misheard", "reply_misheard"})


def _misheard(result: Any) -> bool:
    """Whether a probe's result says an utterance was misheard (the voice probes' stage)."""
    return isinstance(result, Mapping) and result.get("stage") in MISHEARD_STAGES


#: How far back a result may place itself (seconds before it was read).
OWN_SPAN_MAX_S = 300.0


def _own_span(result: Any, now: float, read_s: float) -> tuple[float, float] | None:
    """``(started_at, ended_at)`` (epoch seconds) a result reports for itself, when it
    happened before the probe returned it: a held call's turn is read after it ended, and
    belongs at the time it happened. None for any other result, or times that make no sense
    (in the future, ending before starting, older than ``OWN_SPAN_MAX_S`` before the read)."""
    if not isinstance(result, Mapping):
        return None
    raw_start, raw_end = result.get("started_at"), result.get("ended_at")
    numbers = [v for v in (raw_start, raw_end)
               if isinstance(v, int | float) and not isinstance(v, bool)]  # fmt: skip
    if len(numbers) != 2:
        return None
    start, end = float(numbers[0]), float(numbers[1])
    if not now - read_s - OWN_SPAN_MAX_S <= start <= end <= now + 1.0:
        return None
    return start, end


def _error(exc: BaseException, prefix: str = "") -> str:
    text = f"{prefix}{type(exc).__name__}: {exc}"
    return text if len(text) <= _ERROR_LIMIT else text[: _ERROR_LIMIT - 1] + "…"


class Sampler:
    """Samples the control's probes and keeps the samples and the run's marks."""

    def __init__(
        self,
        options: Options,
        configuration: Mapping[str, Any] | None = None,
        secrets: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.options = options
        self.run_id = uuid.uuid4().hex
        self.phase = "before_method"
        self.note: str | None = None
        self.unfinished: list[str] = []
        self._clock = clock
        self._t0 = clock()
        self._t0_wall = time.time()
        self._started_at = _iso()
        self._configuration = dict(configuration or {})
        self._secrets = dict(secrets or {})
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._state = "ready"  # ready, running, stopping, stopped
        self._samples: dict[str, list[dict[str, Any]]] = {p.name: [] for p in options.probes}
        self._stopped_by: dict[str, str] = {}
        self._marks: list[dict[str, Any]] = []
        self._threads: dict[str, threading.Thread] = {}
        self._sampling_t: float | None = None
        self._stopped_t: float | None = None
        self._stopped_at: str | None = None

    # -- state -------------------------------------------------------------------------------
    def now(self) -> float:
        """Seconds since the control started."""
        return self._clock() - self._t0

    @property
    def running(self) -> bool:
        """True while sampling threads may still add samples."""
        with self._lock:
            return self._state == "running" and any(t.is_alive() for t in self._threads.values())

    def _sampling(self, names: list[str]) -> bool:
        """True while one of these probes' threads may still add samples."""
        with self._lock:
            threads = [self._threads.get(n) for n in names]
            return self._state == "running" and any(t and t.is_alive() for t in threads)

    def has_probe(self, name: str) -> bool:
        return name in self._samples

    def mark(self, event: str, **fields: Any) -> None:
        """Record a moment of the run: ``{"t", "at", "event", "phase", ...}``."""
        entry = {"t": round(self.now(), 4), "at": _iso(), "event": event, "phase": self.phase}
        entry.update({k: v for k, v in fields.items() if v is not None})
        with self._lock:
            self._marks.append(entry)

    def t_of(self, iso: Any) -> float | None:
        """Seconds since the control started of an ISO time (a run's ``start``/``end``)."""
        try:
            epoch = datetime.fromisoformat(str(iso)).timestamp()
        except ValueError:
            return None
        return round(epoch - self._t0_wall, 4)

    def samples(self, name: str) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._samples[name])

    def marks(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._marks)

    # -- lifecycle ---------------------------------------------------------------------------
    def disable(self, note: str) -> None:
        """Never sample (a dry run); the journal says why."""
        with self._lock:
            if self._state == "ready":
                self._state = "stopped"
                self._stopped_t = self.now()
                self._stopped_at = _iso()
        self.note = note

    def start(self) -> None:
        """Start one daemon thread per probe; does nothing if already started or stopped."""
        with self._lock:
            if self._state != "ready":
                return
            self._state = "running"
            self._sampling_t = self.now()
            for spec in self.options.probes:
                thread = threading.Thread(
                    target=self._loop, args=(spec,), name=f"lkchaos-sampling-{spec.name}",
                    daemon=True,
                )  # fmt: skip
                self._threads[spec.name] = thread
        self.mark("sampling_start")
        for thread in self._threads.values():
            thread.start()

    def stop(self) -> None:
        """Stop every thread and join them within ``join_timeout_s`` in all; idempotent.

        A thread still inside a probe call at the deadline is named in ``unfinished``; it ends
        when that call returns, and what it then samples is dropped.
        """
        with self._lock:
            if self._state in ("stopping", "stopped"):
                return
            self._state = "stopping"
        self._halt.set()
        self.mark("sampling_stop")
        deadline = self._clock() + self.options.join_timeout_s
        for name, thread in self._threads.items():
            thread.join(max(0.0, deadline - self._clock()))
            if thread.is_alive():
                self.unfinished.append(name)
        if self.unfinished:  # usual with back-to-back calls: what they return is dropped
            logger.info(
                "lkchaos sampling: probe(s) %s were mid-call at the stop (%.1f s later): that "
                "last call ends by itself within its own timeout, is not in the results and "
                "leaves nothing behind", self.unfinished, self.options.join_timeout_s,
            )  # fmt: skip
        with self._lock:
            self._state = "stopped"
            self._stopped_t = self.now()
            self._stopped_at = _iso()

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, waking early if the sampler is stopped."""
        if seconds > 0:
            self._halt.wait(seconds)

    def wait_baseline(self, seconds: float) -> None:
        """Block until sampling has run ``seconds`` (the baseline before the fault)."""
        if self._sampling_t is not None:
            self.wait(seconds - (self.now() - self._sampling_t))

    def wait_settled(
        self, stable_s: float, timeout_s: float, names: list[str] | None = None
    ) -> bool:
        """Block until each probe (or each named) is settled (see ``figures.settled``), or
        ``timeout_s`` passed, or sampling ended. Returns whether all are settled."""
        names = names if names is not None else list(self._samples)
        deadline = self._clock() + max(0.0, timeout_s)
        while True:
            fault = self.fault()
            done = all(settled(self.samples(n), fault, stable_s) for n in names)
            remaining = deadline - self._clock()
            if done or remaining <= 0 or not self._sampling(names):
                return done
            self._halt.wait(min(_POLL_S, remaining))

    # -- results -----------------------------------------------------------------------------
    def fault(self) -> Fault:
        return fault_window(self.marks(), self.options.fault_end, self.options.fault_actions)

    def _end_t(self) -> float:
        with self._lock:
            stopped_t = self._stopped_t
        return stopped_t if stopped_t is not None else self.now()

    def figures(self, name: str) -> dict[str, Any]:
        """The derived figures of one probe, now (while running) or at the stop."""
        return derive(self.samples(name), self.fault(), self._end_t())

    def report(self) -> dict[str, Any]:
        """The journal section: options, marks, fault window, and per probe series + figures."""
        fault = self.fault()
        end_t = self._end_t()
        probes: dict[str, Any] = {}
        for spec in self.options.probes:
            series = self.samples(spec.name)
            with self._lock:
                stopped_by = self._stopped_by.get(spec.name)
            probes[spec.name] = {
                **spec.describe(),
                "stopped_by": stopped_by or ("still running" if spec.name in self.unfinished
                                             else None),
                "figures": derive(series, fault, end_t),
                "samples": series,
            }  # fmt: skip
        return {
            "run_id": self.run_id,
            "started_at": self._started_at,
            "stopped_at": self._stopped_at,
            "sampling_started_t": self._sampling_t,
            "stopped_t": None if self._stopped_t is None else round(self._stopped_t, 4),
            "note": self.note,
            "unfinished_threads": list(self.unfinished),
            "options": self.options.describe(),
            "fault": fault.describe(),
            "marks": self.marks(),
            "probes": probes,
        }

    # -- threads -----------------------------------------------------------------------------
    def _loop(self, spec: ProbeSpec) -> None:
        began = self._clock()
        count = 0
        reason = "stopped"
        try:
            while True:
                if self._halt.is_set():
                    break
                if count >= self.options.max_samples:
                    reason = "max_samples"
                    break
                if self._clock() - began >= self.options.max_duration_s:
                    reason = "max_duration"
                    break
                started = self._clock()
                sample = self._take(spec, started)
                with self._lock:
                    if self._state == "stopped":
                        break
                    # In time order: a result that reports its own time may predate the last.
                    bisect.insort(self._samples[spec.name], sample, key=lambda s: s["t"])
                count += 1
                gap = spec.interval_s
                if gap == 0 and not sample["ok"]:
                    gap = FAILED_GAP_S
                delay = gap - (self._clock() - started)
                left = self.options.max_duration_s - (self._clock() - began)
                if delay > 0:
                    self._halt.wait(max(0.0, min(delay, left)))
        except Exception as exc:  # keep the reason; a sampler thread must never raise
            reason = _error(exc, "error: ")
            logger.warning("lkchaos sampling: probe %r stopped: %s", spec.name, reason)
        finally:
            with self._lock:
                self._stopped_by[spec.name] = reason

    def _take(self, spec: ProbeSpec, started: float) -> dict[str, Any]:
        at = _iso()
        result: Any = None
        try:
            result = run_activity(deepcopy(spec.activity), self._configuration, self._secrets)
        except Exception as exc:
            ok, value = False, {"error": _error(exc)}
        else:
            ok, value = self._judge(spec, result)
        t, latency = started - self._t0, self._clock() - started
        span = _own_span(result, time.time(), latency)
        if span is not None:  # a result that happened before it was read (a held turn)
            t, latency = span[0] - self._t0_wall, span[1] - span[0]
            at = datetime.fromtimestamp(span[0], UTC).isoformat()
        sample = {
            "t": round(t, 4),
            "at": at,
            "ok": ok,
            "latency_ms": round(latency * 1000.0, 3),
            "value": value,
        }
        if not ok and _misheard(result):
            sample["misheard"] = True  # set apart by the figures (see figures.counted)
        return sample

    def _judge(self, spec: ProbeSpec, result: Any) -> tuple[bool, Any]:
        try:
            if spec.has_tolerance:
                ok = bool(
                    within_tolerance(
                        deepcopy(spec.tolerance), result,
                        configuration=self._configuration, secrets=self._secrets,
                    )
                )  # fmt: skip
            else:
                ok = default_ok(result)
        except Exception as exc:
            return False, {"error": _error(exc, "tolerance check raised "),
                           "result": summarize(result, spec.summary_keys)}  # fmt: skip
        return ok, summarize(result, spec.summary_keys)
