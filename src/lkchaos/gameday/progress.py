"""Progress of a game day: a live ``rich`` display on a terminal, plain lines otherwise.

Events are dicts: the runner's own (``gameday``, ``entry``, ``baseline``, ``wait``, ``note``)
and the child's lines from :mod:`lkchaos.controls.progress` (``experiment``, ``phase``,
``activity``), read with :class:`Tail`. :class:`Tracker` folds them into what is shown: entry
k/n and name, phase, whether a fault is active (an lkchaos action of the method succeeded and
the rollbacks have not finished), the last result of each probe, elapsed time.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Protocol

PHASES = {"steady-state-before": "steady state before", "method": "method",
          "rollbacks": "rollbacks", "steady-state-after": "steady state after"}


class Tail:
    """New complete JSON lines of a file that another process appends to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def poll(self) -> list[dict[str, Any]]:
        """Lines appended since the last call, parsed; lines that are not JSON are skipped."""
        try:
            with open(self.path, "rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return []
        self._offset += len(chunk)
        *complete, self._partial = (self._partial + chunk).split(b"\n")
        events = []
        for raw in complete:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict):
                events.append(event)
        return events


@dataclass
class Tracker:
    """What the display shows, folded from events."""

    gameday: str = ""
    total: int = 0
    index: int = 0
    entry: str = ""
    repeat: int = 1
    phase: str = ""
    action_fault: bool = False
    ledger_faults: list[str] = field(default_factory=list)
    probes: dict[str, str] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    outcomes: list[str] = field(default_factory=list)

    @property
    def fault_active(self) -> bool:
        """An lkchaos action of the method succeeded and the rollbacks have not finished, or
        the ledger holds a fault not yet undone."""
        return self.action_fault or bool(self.ledger_faults)

    def feed(self, event: dict[str, Any]) -> None:
        kind, edge = event.get("event"), event.get("edge")
        if kind == "faults":
            pending = [str(item) for item in event.get("pending") or []]
            if self.ledger_faults and not pending:
                self.action_fault = False  # the ledger says its faults were all undone
            self.ledger_faults = pending
        elif kind == "gameday" and edge == "start":
            self.gameday, self.total = str(event.get("name", "")), int(event.get("entries", 0))
        elif kind == "entry" and edge == "start":
            self.index, self.entry = int(event.get("index", 0)), str(event.get("name", ""))
            self.repeat, self.phase, self.action_fault = int(event.get("repeat", 1)), "", False
            self.probes = {}
            self.total = int(event.get("total", self.total))
        elif kind == "entry" and edge == "end":
            self.outcomes.append(f"{event.get('name')}: {event.get('outcome')}")
            self.action_fault = False
        elif kind == "baseline" and edge == "start":
            self.phase = "baseline"
        elif kind == "wait":
            self.phase = "recovery wait"
        elif kind == "phase" and edge == "start":
            self.phase = PHASES.get(str(event.get("phase")), str(event.get("phase")))
        elif kind == "phase" and edge == "end" and event.get("phase") == "rollbacks":
            self.action_fault = False
        elif kind == "experiment" and edge == "end":
            self.action_fault = False
        elif kind == "activity" and edge == "end":
            self._activity(event)

    def _activity(self, event: dict[str, Any]) -> None:
        ok = event.get("status") == "succeeded"
        if (event.get("type") == "action" and event.get("phase") == "method" and ok
                and str(event.get("module") or "").startswith("lkchaos.")):
            self.action_fault = True
        if event.get("type") == "probe":
            shown = event.get("result") if ok else f"FAILED {event.get('error', '')}"
            self.probes[str(event.get("name"))] = str(shown)

    def elapsed(self) -> str:
        seconds = int(time.monotonic() - self.started)
        return f"{seconds // 60:d}:{seconds % 60:02d}"

    def where(self) -> str:
        repeat = f" #{self.repeat}" if self.repeat > 1 else ""
        return f"[{self.index}/{self.total} {self.entry}{repeat}]" if self.index else "[game day]"


def describe(event: dict[str, Any]) -> str | None:
    """One line of text for an event (None: not worth a line of its own)."""
    kind, edge = event.get("event"), event.get("edge")
    if kind == "gameday":
        return (f"game day {event.get('name')} started: {event.get('entries')} run(s)"
                if edge == "start" else f"game day ended: {event.get('status')}")
    if kind == "entry":
        return ("entry started" if edge == "start"
                else f"entry {event.get('outcome')}" + (f": {event['note']}"
                                                         if event.get("note") else ""))
    if kind == "baseline":
        if edge == "start":
            return f"baseline check ({event.get('why', '')})"
        return "baseline holds" if event.get("ok") else f"baseline NOT met: {event.get('note')}"
    if kind == "wait":
        return f"recovery wait {event.get('seconds')} s"
    if kind == "note":
        return str(event.get("text"))
    if kind == "faults":
        pending = event.get("pending") or []
        return ("fault in effect: " + "; ".join(map(str, pending)) if pending
                else "no fault in effect")
    if kind == "phase" and edge == "start":
        return PHASES.get(str(event.get("phase")), str(event.get("phase")))
    if kind == "activity" and edge == "end":
        status = event.get("status") or "interrupted"
        detail = event.get("result") if status == "succeeded" else event.get("error")
        return f"{event.get('type')} {event.get('name')} {status}: {detail or ''}".rstrip(": ")
    if kind == "experiment" and edge == "end":
        deviated = " (deviated)" if event.get("deviated") else ""
        return f"experiment ended: {event.get('status')}{deviated}"
    return None


class Display(Protocol):
    def feed(self, event: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class PlainLines:
    """One line per event, with a UTC timestamp: for logs, CI and pipes."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.tracker = Tracker()

    def feed(self, event: dict[str, Any]) -> None:
        self.tracker.feed(event)
        text = describe(event)
        if text is None:
            return
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        fault = " (fault active)" if self.tracker.fault_active else ""
        self.stream.write(f"{stamp} {self.tracker.where()} {text}{fault}\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class LiveDisplay:
    """A ``rich`` Live panel redrawn a few times a second, with notable events printed above
    it."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.live import Live

        self.tracker = Tracker()
        self.console = Console(stderr=True)
        self.live = Live(console=self.console, refresh_per_second=4, transient=True,
                         get_renderable=self._render)  # fmt: skip
        self.live.start()

    def _render(self) -> Any:
        from rich.table import Table

        t = self.tracker
        table = Table.grid(padding=(0, 2))
        table.add_row("game day", f"{t.gameday}  ({t.elapsed()} elapsed)")
        table.add_row("entry", f"{t.index}/{t.total} {t.entry}" if t.index else "-")
        table.add_row("phase", t.phase or "-")
        table.add_row("fault", "[bold red]ACTIVE[/] " + "; ".join(t.ledger_faults)
                      if t.fault_active else "none")
        for name, result in list(t.probes.items())[-8:]:
            table.add_row(f"probe {name}", result)
        return table

    def feed(self, event: dict[str, Any]) -> None:
        self.tracker.feed(event)
        if event.get("event") in ("entry", "baseline", "note", "gameday", "faults") and (
                event.get("edge") == "end" or event.get("event") in ("note", "faults")):
            text = describe(event)
            if text:
                self.console.print(f"{self.tracker.where()} {text}", markup=False)

    def close(self) -> None:
        self.live.stop()


class _LogNotes(logging.Handler):
    """Log records of WARNING and above as the game day's notes."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self.say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.say(f"{record.name}: {record.getMessage()}")
        except Exception:  # a handler never raises into the code that logged
            self.handleError(record)


@contextlib.contextmanager
def log_records_as_notes(say: Callable[[str], None]) -> Iterator[None]:
    """While it is open, a warning logged in this process and reaching the root logger is a
    note of the display (``say``), stamped and placed like every other line: for a library
    with no handler of its own, instead of a bare line on stderr from
    :data:`logging.lastResort` (matplotlib's "building the font cache" on a first report in
    a fresh home folder, from a thread of its own)."""
    handler = _LogNotes(say)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def make_display(plain: bool, stream: IO[str]) -> Display:
    """A live display when ``stream`` is a terminal and ``plain`` is not asked, else lines."""
    if not plain and stream.isatty():
        return LiveDisplay()
    return PlainLines(stream)
