"""What the history returns: frozen dataclasses, every time timezone-aware UTC."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True)
class RunRecord:
    """One recorded experiment run.

    Durations and times are seconds. ``availability`` (0-1), ``time_to_detect_s`` and
    ``rto_s`` are the worst over the run's sampled probes (lowest availability, longest TTD
    and RTO); None without sampling. ``score`` (0-100) is the score at record time
    (:func:`lkchaos.score.experiment_score`); None for a run refused before anything ran
    (``status`` ``refused``: the run lock held by another run, a failed gate), which tested
    nothing and is no score. ``faults_undone`` is None when the journal has no safety
    section to say so.
    """

    run_id: str
    experiment_title: str
    experiment_name: str
    experiment_path: str | None
    experiment_hash: str
    gameday_run_id: str | None
    entry: str | None
    started_at: dt.datetime
    ended_at: dt.datetime | None
    duration_s: float | None
    status: str
    deviated: bool
    faults_injected: int
    faults_undone: int | None
    cleanup_s: float | None
    availability: float | None
    time_to_detect_s: float | None
    rto_s: float | None
    score: float | None
    score_explanation: str | None
    lkchaos_version: str
    livekit_version: str | None
    target: str | None
    journal_path: str | None
    recorded_at: dt.datetime

    @property
    def verdict(self) -> str:
        """``deviated`` when the hypothesis deviated, else the status (completed, failed,
        interrupted, ``refused`` for a run refused before anything ran...)."""
        return "deviated" if self.deviated and self.status == "completed" else self.status


@dataclass(frozen=True)
class ProbeFigures:
    """The figures the sampling control derived for one probe of one run."""

    probe: str
    samples: int
    failures: int
    availability: float | None
    availability_during_fault: float | None
    time_to_detect_s: float | None
    rto_s: float | None
    recovered: bool | None
    longest_outage_s: float | None


@dataclass(frozen=True)
class Sample:
    """One sample: ``t`` seconds since sampling started, ``at`` wall clock, ``latency_ms`` of
    the probe call, ``reason`` a short text of the result (None when ok)."""

    t: float
    at: dt.datetime | None
    ok: bool
    latency_ms: float | None
    reason: str | None


@dataclass(frozen=True)
class GamedayRecord:
    """One game day run; ``status`` is ``running`` until finished, ``score`` 0-100."""

    gameday_run_id: str
    name: str
    path: str
    file_hash: str
    scheduled: bool
    started_at: dt.datetime
    ended_at: dt.datetime | None
    status: str
    score: float | None


@dataclass(frozen=True)
class ScheduleEvent:
    """A schedule's fire: ``kind`` is ``fired``, ``missed`` or ``skipped``."""

    gameday: str
    kind: str
    reason: str
    at: dt.datetime


@dataclass(frozen=True)
class TrendPoint:
    """One run's value of a metric, with the game day it belonged to (if any).
    ``lower_bound``: the value is an ``rto_s`` that is no measured recovery (the run was cut
    short, or the probe had not recovered when sampling stopped): recovery took at least
    that long."""

    run_id: str
    started_at: dt.datetime
    value: float | None
    status: str
    deviated: bool
    gameday_run_id: str | None
    gameday: str | None
    lower_bound: bool = False
