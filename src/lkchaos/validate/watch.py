"""``lkchaos validate --watch DURATION --every INTERVAL``: the automated items, repeated.

Each round runs the selected automated items; what changed since the previous round is
reported as it happens; at the end (or at Ctrl-C) :func:`stability` says, per item, in how
many rounds it failed, when it first and last did, for how long in all (a failing round
counts until the next round), and whether it flapped (changed between good and bad more than
once). A good round is ``pass``, ``warn`` or ``n/a``; ``fail`` and ``error`` are bad.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable, Sequence

from lkchaos.settings import Settings
from lkchaos.validate.model import Item
from lkchaos.validate.runner import Report, run

BAD = ("fail", "error")


@dataclasses.dataclass(frozen=True)
class Change:
    id: str
    before: str | None
    after: str
    evidence: str

    def __str__(self) -> str:
        was = self.before or "new"
        return f"{self.id}: {was} -> {self.after} ({self.evidence})"


def changes(previous: Report | None, current: Report) -> list[Change]:
    """The items whose status differs from ``previous`` (every item on the first round)."""
    before = {r.item.id: r.status for r in previous.results} if previous else {}
    return [Change(r.item.id, before.get(r.item.id), r.status, r.evidence)
            for r in current.results if before.get(r.item.id) != r.status]  # fmt: skip


@dataclasses.dataclass(frozen=True)
class ItemStability:
    id: str
    rounds: int
    bad_rounds: int
    first_bad: dt.datetime | None
    last_bad: dt.datetime | None
    bad_s: float
    changes: int
    last_status: str
    last_evidence: str

    @property
    def flapping(self) -> bool:
        return self.changes > 1

    def as_dict(self) -> dict[str, object]:
        out = dataclasses.asdict(self)
        for key in ("first_bad", "last_bad"):
            value = out[key]
            out[key] = value.isoformat() if isinstance(value, dt.datetime) else None
        out["flapping"] = self.flapping
        return out


def stability(rounds: Sequence[Report], ended_at: dt.datetime | None = None
              ) -> list[ItemStability]:  # fmt: skip
    """Per item, how it held over ``rounds`` (see the module docstring); items in the
    document's order."""
    if not rounds:
        return []
    end = ended_at or rounds[-1].ended_at
    order = [r.item.id for r in rounds[0].results]
    out = []
    for item_id in order:
        statuses = [(rep.started_at, _status(rep, item_id)) for rep in rounds]
        bad = [(at, s) for at, s in statuses if s[0] in BAD]
        seconds = 0.0
        for index, (at, status) in enumerate(statuses):
            if status[0] in BAD:
                until = statuses[index + 1][0] if index + 1 < len(statuses) else end
                seconds += max(0.0, (until - at).total_seconds())
        flips = sum(1 for a, b in zip(statuses, statuses[1:], strict=False)
                    if (a[1][0] in BAD) != (b[1][0] in BAD))  # fmt: skip
        last = statuses[-1][1]
        out.append(ItemStability(item_id, len(statuses), len(bad),
                                 bad[0][0] if bad else None, bad[-1][0] if bad else None,
                                 seconds, flips, last[0], last[1]))  # fmt: skip
    return out


def _status(report: Report, item_id: str) -> tuple[str, str]:
    for result in report.results:
        if result.item.id == item_id:
            return result.status, result.evidence
    return "error", "not run in this round"


def _span(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def stability_lines(items: Sequence[ItemStability], rounds: Sequence[Report],
                    interrupted: bool = False) -> list[str]:  # fmt: skip
    """The stability report as text lines."""
    if not rounds:
        return ["no round completed"]
    span = (rounds[-1].ended_at - rounds[0].started_at).total_seconds()
    head = (f"stability over {_span(span)}, {len(rounds)} round(s)"
            + (" (stopped early)" if interrupted else ""))  # fmt: skip
    steady = [s for s in items if not s.bad_rounds]
    lines = [head, f"held every round: {len(steady)} of {len(items)} items"]
    for s in items:
        if not s.bad_rounds:
            continue
        assert s.first_bad is not None and s.last_bad is not None
        now = "still " + s.last_status if s.last_status in BAD else f"back to {s.last_status}"
        lines.append(
            f"{s.id}: bad in {s.bad_rounds} of {s.rounds} rounds, first "
            f"{s.first_bad.strftime('%H:%M:%S')}, last {s.last_bad.strftime('%H:%M:%S')}, "
            f"{_span(s.bad_s)} in all, {now}" + (f"; flapping ({s.changes} changes)"
                                                 if s.flapping else "")
            + f" [{s.last_evidence}]")  # fmt: skip
    return lines


def watch(selected: Sequence[Item], settings: Settings, duration_s: float, every_s: float, *,
          timeout_s: float, on_round: Callable[[int, Report, list[Change]], None],
          sleep: Callable[[float], None] = time.sleep, target: str = "",
          ) -> tuple[list[Report], bool]:  # fmt: skip
    """Run the automated items of ``selected`` every ``every_s`` seconds for ``duration_s``
    seconds (a round starts at 0, every_s, 2 * every_s, ... up to duration_s; a round that
    overruns its interval delays the next). Returns the rounds and whether Ctrl-C ended the
    watch early (the rounds so far are kept)."""
    rounds: list[Report] = []
    start = time.monotonic()
    index = 0
    try:
        while True:
            report = run(selected, settings, timeout_s=timeout_s, automated_only=True,
                         target=target)  # fmt: skip
            on_round(index, report, changes(rounds[-1] if rounds else None, report))
            rounds.append(report)
            index += 1
            next_at = start + index * every_s
            if next_at - start > duration_s:
                return rounds, False
            wait = next_at - time.monotonic()
            if wait > 0:
                sleep(wait)
    except KeyboardInterrupt:
        return rounds, True
