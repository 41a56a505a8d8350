"""The game day's view of run history and scores: one small adapter over
:mod:`lkchaos.history` and :mod:`lkchaos.score`.

History is optional for a game day: when it cannot be opened (no database, a module missing)
the game day still runs, and :func:`open_recorder` says why once, through ``say``. Every
later history call that fails is reported once as well and then dropped.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any


class Recorder:
    """History calls that never raise. ``history`` is the object ``open_history()`` returned,
    or None (nothing is recorded)."""

    def __init__(self, history: Any, say: Callable[[str], None]) -> None:
        self.history = history
        self.say = say
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.history is not None

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        if self.history is None:
            return None
        try:
            return getattr(self.history, method)(*args, **kwargs)
        except Exception as exc:  # history is a record, never a reason to stop a game day
            if not self._warned:
                self.say(f"run history: {method} failed ({type(exc).__name__}: {exc}); the game "
                         "day goes on without recording to history")
                self._warned = True
            return None

    def close(self) -> None:
        """Close the history (its database connections); safe to call twice."""
        history, self.history = self.history, None
        if history is not None and hasattr(history, "close"):
            try:
                history.close()
            except Exception:  # closing must not hide the game day's result
                pass

    def start_gameday(self, name: str, path: str, file_hash: str, scheduled: bool) -> str | None:
        """The game day run's id in history (None when not recorded)."""
        run_id = self._call("start_gameday", name=name, path=path, file_hash=file_hash,
                            scheduled=scheduled)  # fmt: skip
        return str(run_id) if run_id is not None else None

    def finish_gameday(self, run_id: str | None, status: str, score: float | None) -> None:
        if run_id is not None:
            self._call("finish_gameday", run_id, status=status, score=score)

    def schedule_event(self, gameday: str, kind: str, reason: str = "",
                       at: dt.datetime | None = None) -> None:  # fmt: skip
        """``kind`` is ``fired``, ``missed`` or ``skipped``; ``at`` defaults to now (UTC)."""
        self._call("record_schedule_event", gameday=gameday, kind=kind, reason=reason,
                   at=at or dt.datetime.now(dt.UTC))  # fmt: skip

    def trend(self, name: str) -> list[tuple[str, float]]:
        """``(started_at ISO, score)`` of earlier finished runs of the game day, oldest first."""
        runs = self._call("gameday_runs", name=name) or []
        points = []
        for run in runs:
            score, started = getattr(run, "score", None), getattr(run, "started_at", None)
            if score is not None and started is not None:
                points.append((started.isoformat() if hasattr(started, "isoformat")
                               else str(started), float(score)))  # fmt: skip
        return sorted(points)


def open_recorder(say: Callable[[str], None]) -> Recorder:
    """A recorder on the run history, or one that records nothing (said once, with why)."""
    try:
        from lkchaos.history import open_history

        history = open_history()
    except Exception as exc:  # any failure to open history leaves the game day running
        say(f"run history is not available ({type(exc).__name__}: {exc}); the game day runs "
            "without recording to it")
        return Recorder(None, say)
    return Recorder(history, say)


def score(entries: Sequence[tuple[Path | None, float, str]]) -> float | None:
    """The game day score 0-100 from ``(journal path or None, weight, outcome)`` per entry
    run (a missing journal counts 0; the entry's outcome where worse than its journal's
    verdict, see :mod:`lkchaos.score`); None when scores cannot be computed."""
    try:
        from lkchaos.score import experiment_score, gameday_score
    except ImportError:
        return None
    pairs = []
    for journal, weight, outcome in entries:
        run_score = None
        if journal is not None and journal.is_file():
            try:
                run_score = experiment_score(json.loads(journal.read_text()),
                                             entry_outcome=outcome)  # fmt: skip
            except Exception:  # an unreadable or unscorable journal counts as not run
                run_score = None
        pairs.append((run_score, weight))
    try:
        return float(gameday_score(pairs))
    except Exception:  # a bad weight must not lose the game day's results
        return None
