"""Journals in, a :class:`~lkchaos.report.model.Report` out.

Journals are files (JSON) or already-loaded mappings. A file that is missing, unreadable, not
JSON, or not a Chaos Toolkit journal raises ``ConfigError`` naming the file and what is wrong;
anything inside a journal of an unexpected shape is shown as missing, never raised.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.report import scoring
from lkchaos.report.analyse import analyse
from lkchaos.report.model import VERDICTS, Entry, EntryInfo, GamedayInfo, Report, Run, label

JournalSource = Path | Mapping[str, Any]
#: Journals larger than this are refused (a sampled hour of fast probes is a few MB).
MAX_JOURNAL_BYTES = 200 * 1024 * 1024


def read_journal(path: Path) -> dict[str, Any]:
    """The journal in the JSON file ``path``. Raises ``ConfigError`` with the path and the
    problem when it is missing, unreadable, not JSON or not a Chaos Toolkit journal."""
    try:
        size = path.stat().st_size
        if size > MAX_JOURNAL_BYTES:
            raise ConfigError(f"{path}: {size} bytes is too big for a journal "
                              f"(at most {MAX_JOURNAL_BYTES})")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: no such file; give the journal written by `chaos run` "
                          "(journal.json by default)") from exc
    except IsADirectoryError as exc:
        raise ConfigError(f"{path}: is a folder, not a journal file") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot be read: {exc}") from exc
    try:
        journal = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not JSON ({exc}); is it a Chaos Toolkit journal?") from exc
    return check_journal(journal, str(path))


def check_journal(journal: Any, where: str) -> dict[str, Any]:
    """``journal`` if it looks like a Chaos Toolkit journal (an object with an ``experiment``
    object and a ``status`` or ``run``), else ``ConfigError`` naming ``where``."""
    if not isinstance(journal, Mapping):
        raise ConfigError(f"{where}: not a Chaos Toolkit journal (a JSON object is expected, "
                          f"found {type(journal).__name__})")
    if not isinstance(journal.get("experiment"), Mapping):
        raise ConfigError(f"{where}: not a Chaos Toolkit journal: it has no 'experiment' "
                          "object (is it an experiment file rather than its journal?)")
    if "status" not in journal and "run" not in journal:
        raise ConfigError(f"{where}: not a Chaos Toolkit journal: it has neither 'status' nor "
                          "'run'")
    return dict(journal)


def shown_path(path: str | Path) -> str:
    """``path`` as a report shows it: relative to the current folder when it is inside it
    (reports travel as CI artifacts: where the runner's checkout was means nothing there),
    else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def _journal(source: JournalSource, position: int) -> tuple[dict[str, Any], str]:
    if isinstance(source, Path | str):
        path = Path(source)
        return read_journal(path), shown_path(path)
    journal = check_journal(source, f"journal #{position} (given as a mapping)")
    safety = journal.get("lkchaos_safety")
    run_id = safety.get("run_id") if isinstance(safety, Mapping) else None
    return journal, f"journal of run {run_id}" if run_id else f"journal #{position}"


def _gameday_sources(gameday: GamedayInfo, journals: Sequence[JournalSource]) -> list[
        JournalSource | None]:  # fmt: skip
    """One journal (or None) per entry: ``journals`` in order for the entries that ran, or,
    when ``journals`` is empty, each entry's own ``journal`` path."""
    ran = [e for e in gameday.entries if e.journal is not None]
    if not journals:
        return [e.journal for e in gameday.entries]
    if len(journals) != len(ran):
        raise ConfigError(f"game day {gameday.name!r}: {len(journals)} journal(s) given for "
                          f"{len(ran)} entries that ran; give one per entry with a journal, "
                          "in order, or none to read each entry's own journal")
    given = iter(journals)
    return [next(given) if e.journal is not None else None for e in gameday.entries]


def _as_entry_ended(run: Run, info: EntryInfo, journal: Mapping[str, Any]) -> Run:
    """The run as its game day entry ended: where the game day judged the entry worse than
    its journal says (``not_recovered``: the deployment was not back at baseline after it;
    ``interrupted``), that verdict, with the game day's note among the problems, and the
    score of such an entry (:mod:`lkchaos.score`), so that no table, badge, score or JUnit
    case shows such an entry as held."""
    order = {v: i for i, v in enumerate(VERDICTS)}
    if order.get(info.outcome, len(order)) >= order.get(run.verdict, len(order)):
        return run
    why = f"{label(info.outcome)}: {info.note}" if info.note else label(info.outcome)
    value, note = scoring.score_of(journal, entry_outcome=info.outcome)
    return replace(run, verdict=info.outcome, problems=(*run.problems, why), score=value,
                   score_note=note)


def load_report(journals: Sequence[JournalSource], *, title: str,
                gameday: GamedayInfo | None = None, now: dt.datetime | None = None) -> Report:
    """Read every journal into a :class:`Report`. With ``gameday`` the runs are its entries'
    in order (see :func:`_gameday_sources`), and entries that did not run are kept as such.
    Raises ``ConfigError`` for a journal that cannot be read (see :func:`read_journal`)."""
    generated = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    runs: list[Run] = []
    if gameday is None:
        if not journals:
            raise ConfigError("no journal to report on: give at least one journal file")
        used: dict[str, int] = {}
        for position, source in enumerate(journals, 1):
            journal, where = _journal(source, position)
            run = analyse(journal, len(runs) + 1, where)
            used[run.suite_name] = used.get(run.suite_name, 0) + 1
            if used[run.suite_name] > 1:  # one suite name per run, for JUnit readers
                run = replace(run, suite_name=f"{run.suite_name} ({used[run.suite_name]})")
            runs.append(run)
        return Report(title=title, generated_at=generated, runs=runs)
    entries: list[Entry] = []
    sources = _gameday_sources(gameday, journals)
    for position, (info, maybe) in enumerate(zip(gameday.entries, sources, strict=True), 1):
        ran: Run | None = None
        if maybe is not None:
            journal, where = _journal(maybe, position)
            suite = info.name if info.repeat <= 1 else f"{info.name} (repeat {info.repeat})"
            ran = _as_entry_ended(analyse(journal, len(runs) + 1, where, suite_name=suite),
                                  info, journal)
            runs.append(ran)
        entries.append(Entry(info=info, run=ran))
    return Report(title=title, generated_at=generated, runs=runs, gameday=gameday,
                  entries=entries)
