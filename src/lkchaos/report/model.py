"""What a report shows, read once from the journals: plain frozen dataclasses, no rendering.

``GamedayInfo`` and ``EntryInfo`` come from whoever ran the game day; ``Report``, ``Run`` and
the rest are built by :mod:`lkchaos.report.load` from Chaos Toolkit journals (with or without
lkchaos's sections) and rendered by :mod:`lkchaos.report.html`, :mod:`~lkchaos.report.markdown`
and :mod:`~lkchaos.report.junit`.

Verdicts of a run, worst first: ``refused`` (nothing ran), ``interrupted`` (no end, or Chaos
Toolkit's status ``interrupted``/``aborted``), ``not_recovered`` (a fault could not be undone, or
a sampled probe was still failing when sampling stopped), ``failed``, ``deviated``, ``held``.

Recovery of a sampled probe (:func:`recovery_of`): ``recovered``; ``not_recovered`` when its
latest result failed; ``not_measured`` when its figures say it did not recover but its latest
result was ok (it never failed, or came back on calls begun before the fault ended) and no
sample started after the fault's end was ok: the run ended before recovery could be observed.
That is no failure, and its ``rto_s`` (time from the fault's end to the end of sampling) is
no recovery time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkchaos.controls.figures import counted

#: Every verdict a run or a game day entry can have, worst first.
VERDICTS = ("refused", "interrupted", "not_recovered", "failed", "deviated", "held", "skipped")
#: How each verdict reads in a report.
VERDICT_LABELS = {
    "held": "held", "deviated": "deviated", "failed": "failed", "not_recovered": "not recovered",
    "interrupted": "interrupted", "refused": "refused", "skipped": "skipped",
}  # fmt: skip
#: Why a sampled probe's recovery reads ``not_measured`` in a report.
NOT_MEASURED = "recovery not measured: the run ended before a sample after the fault"


@dataclass(frozen=True)
class EntryInfo:
    """One entry of a game day: an experiment run (or not run) in the game day's order.

    ``repeat`` is 1-based; ``journal`` is None when the entry did not run; ``outcome`` is one
    of ``held``, ``deviated``, ``failed``, ``not_recovered``, ``skipped``, ``interrupted``.
    """

    name: str
    experiment: str
    repeat: int
    journal: Path | None
    outcome: str
    note: str = ""


@dataclass(frozen=True)
class GamedayInfo:
    """A game day as a whole: times are ISO 8601 UTC; ``score`` 0-100 (None: not scored);
    ``trend`` the ``(started_at, score)`` of earlier runs of the same game day."""

    name: str
    run_id: str | None
    started_at: str
    ended_at: str
    status: str
    entries: Sequence[EntryInfo]
    score: float | None = None
    trend: Sequence[tuple[str, float]] = ()


@dataclass(frozen=True)
class SampledProbe:
    """A probe sampled through the run (``journal["lkchaos"]["sampling"]["probes"][name]``).

    ``samples`` as journaled (``t`` in s since sampling started, ``ok``, ``latency_ms``,
    ``value``); ``figures`` as derived by ``lkchaos.controls.figures``; ``rto_bound_s`` the upper
    bound of the experiment's recovery tolerance on this probe, when it declares one.
    """

    name: str
    samples: Sequence[Mapping[str, Any]]
    figures: Mapping[str, Any]
    rto_bound_s: float | None = None
    interval_s: float | None = None
    stopped_by: str | None = None

    def figure(self, key: str) -> float | None:
        value = self.figures.get(key)
        return float(value) if isinstance(value, int | float) and not isinstance(value, bool) \
            else None

    @property
    def recovery(self) -> str:
        """``recovered``, ``not_recovered``, ``not_measured`` or "" (:func:`recovery_of`)."""
        return recovery_of(self.samples, self.figures)

    @property
    def rto(self) -> float | None:
        """The time to recover in seconds, a lower bound when ``not_recovered``; None when
        there is none or recovery was ``not_measured``."""
        return None if self.recovery == "not_measured" else self.figure("rto_s")

    @property
    def rto_missed(self) -> str:
        """Why this probe fails its recovery bound ("" when it does not, or when its recovery
        was not measured)."""
        if self.recovery == "not_recovered":
            return "still failing when sampling stopped (not recovered)"
        rto = self.rto
        if self.rto_bound_s is not None and rto is not None and rto > self.rto_bound_s:
            return f"recovered in {rto:g} s, over the bound of {self.rto_bound_s:g} s"
        return ""


@dataclass(frozen=True)
class Step:
    """One activity as journaled: a hypothesis probe (``phase`` ``before`` or ``after``), a
    method activity (``method``) or a rollback (``rollbacks``). ``duration_s`` in seconds;
    ``value`` and ``error`` are short one-line texts; ``tolerance_met`` is None when the
    activity has no tolerance or it was not checked."""

    phase: str
    name: str
    kind: str
    status: str
    duration_s: float | None
    tolerance: Any = None
    tolerance_met: bool | None = None
    value: str = ""
    error: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "succeeded" and self.tolerance_met is not False


@dataclass(frozen=True)
class AudioClip:
    """The reply audio of one failed voice turn: ``data`` is the WAV file's bytes, or None with
    ``problem`` saying why it is not in the report (missing file, not a WAV, too big)."""

    where: str
    path: str
    reason: str
    data: bytes | None = None
    problem: str = ""


@dataclass(frozen=True)
class Run:
    """One experiment run, read from its journal. Times are ISO 8601 strings as journaled;
    durations in seconds. ``missing`` lists what the journal lacks (plain Chaos Toolkit journal,
    interrupted run...); ``problems`` what went wrong, one line each."""

    index: int
    source: str
    title: str
    verdict: str
    status: str
    deviated: bool
    started_at: str | None
    ended_at: str | None
    duration_s: float | None
    run_id: str | None
    probes: Sequence[SampledProbe] = ()
    fault: Mapping[str, Any] | None = None
    actions: Sequence[Mapping[str, Any]] = ()
    steps: Sequence[Step] = ()
    safety: Mapping[str, Any] = field(default_factory=dict)
    missing: Sequence[str] = ()
    problems: Sequence[str] = ()
    audio: Sequence[AudioClip] = ()
    score: float | None = None
    score_note: str = ""
    suite_name: str = ""

    @property
    def anchor(self) -> str:
        return f"run-{self.index}"

    def _figures(self, key: str) -> list[tuple[float, str]]:
        return [(v, p.name) for p in self.probes if (v := p.figure(key)) is not None]

    @property
    def rto(self) -> tuple[float, str] | None:
        """The longest recovery among the sampled probes whose recovery was measured (or that
        did not recover): ``(seconds, probe)``."""
        values = [(v, p.name) for p in self.probes if (v := p.rto) is not None]
        return max(values) if values else None

    @property
    def ttd(self) -> tuple[float, str] | None:
        """The quickest detection among the sampled probes: ``(seconds, probe)``."""
        values = self._figures("time_to_detect_s")
        return min(values) if values else None

    @property
    def availability(self) -> tuple[float, str] | None:
        """The lowest availability among the sampled probes: ``(share 0-1, probe)``."""
        values = self._figures("availability")
        return min(values) if values else None


@dataclass(frozen=True)
class Entry:
    """A game day entry with its run (None when it did not run)."""

    info: EntryInfo
    run: Run | None


@dataclass(frozen=True)
class Report:
    """Everything rendered: the runs in order, and the game day with its entries if any."""

    title: str
    generated_at: str
    runs: Sequence[Run]
    gameday: GamedayInfo | None = None
    entries: Sequence[Entry] = ()

    def counts(self) -> dict[str, int]:
        """How many runs (or game day entries) have each verdict, worst first, non-zero only."""
        verdicts = ([e.run.verdict if e.run else e.info.outcome for e in self.entries]
                    if self.entries else [r.verdict for r in self.runs])  # fmt: skip
        order = {v: i for i, v in enumerate(VERDICTS)}
        counted: dict[str, int] = {}
        for verdict in sorted(verdicts, key=lambda v: order.get(v, len(order))):
            counted[verdict] = counted.get(verdict, 0) + 1
        return counted


def recovery_of(samples: Sequence[Mapping[str, Any]], figures: Mapping[str, Any]) -> str:
    """How a sampled probe's recovery reads, from its journaled ``samples`` and ``figures``:
    ``recovered`` (``figures["recovered"]`` true), ``not_recovered`` (false, and the latest
    counted result failed: still failing when sampling stopped), ``not_measured`` (false, but
    the latest result was ok: no sample started after the fault's end came back), or "" (no
    samples, or no ``recovered`` figure)."""
    recovered = figures.get("recovered")
    if not samples or not isinstance(recovered, bool):
        return ""
    if recovered:
        return "recovered"
    seen = sorted(counted([s for s in samples if isinstance(s.get("ok"), bool)]), key=_observed)
    return "not_recovered" if seen and not seen[-1]["ok"] else "not_measured"


def _observed(sample: Mapping[str, Any]) -> float:
    """When a journaled sample's result was known: ``t`` plus its latency (0 if unknown)."""
    return _seconds(sample.get("t")) + _seconds(sample.get("latency_ms")) / 1000.0


def _seconds(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def label(verdict: str) -> str:
    """How a verdict reads: ``not_recovered`` -> ``not recovered``."""
    return VERDICT_LABELS.get(verdict, verdict.replace("_", " "))
