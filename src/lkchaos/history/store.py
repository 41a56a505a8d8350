"""The run history: experiment runs, their sampled series and journals, game days and schedule
events, in SQLite (default) or PostgreSQL. Open it with :func:`open_history`."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from types import TracebackType
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    and_,
    case,
    delete,
    exists,
    false,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from lkchaos import __version__
from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.history import connect, extract
from lkchaos.history.records import (
    GamedayRecord,
    ProbeFigures,
    RunRecord,
    Sample,
    ScheduleEvent,
    TrendPoint,
)
from lkchaos.history.schema import (
    gameday_runs,
    journals,
    probe_figures,
    runs,
    samples,
    schedule_events,
)

SCHEDULE_KINDS = ("fired", "missed", "skipped")
#: What :meth:`History.runs` takes as ``status``: Chaos Toolkit's statuses, ``refused`` (the
#: status recorded for a run lkchaos refused before anything ran), and the verdicts.
RUN_STATUSES = ("completed", "failed", "aborted", "interrupted", "refused", "deviated", "held")
#: Statuses of runs cut short: an RTO they carry ran to where sampling stopped, a lower bound.
CUT_SHORT = ("interrupted", "aborted")
#: ``runs(target=...)``'s default: runs of every target.
ANY_TARGET: Any = object()
#: Metrics :meth:`History.trend` knows: of the run, and of one probe (``probe=``).
RUN_METRICS = ("rto_s", "time_to_detect_s", "availability", "score", "duration_s", "cleanup_s")
PROBE_METRICS = ("rto_s", "time_to_detect_s", "availability", "availability_during_fault",
                 "longest_outage_s")  # fmt: skip
_KEEP_IF_NONE = ("experiment_path", "journal_path", "gameday_run_id", "entry", "target",
                 "livekit_version")


class NotFound(LkChaosError, KeyError):
    """No run or game day run with that id in the history."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "not found"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _named(experiment: str) -> ColumnElement[bool]:
    """Runs of ``experiment``: its file stem, its title or its path."""
    return or_(runs.c.experiment_name == experiment, runs.c.experiment_title == experiment,
               runs.c.experiment_path == experiment)


def _aware(value: dt.datetime, what: str) -> dt.datetime:
    if value.tzinfo is None:
        raise ConfigError(f"{what} must be timezone-aware, not {value.isoformat()}")
    return value.astimezone(dt.UTC)


def _limit(limit: int) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ConfigError(f"limit must be a whole number >= 1, not {limit!r}")
    return limit


def _run_record(row: Row[Any]) -> RunRecord:
    values = dict(row._mapping)
    return RunRecord(**{k: values[k] for k in RunRecord.__dataclass_fields__})


class History:
    """An open run history. ``url`` is the database URL with its password masked. Every
    method raises ``LkChaosError`` when the database fails (naming ``url``) and
    ``ConfigError`` for bad arguments."""

    def __init__(self, url: str | None = None, *, existing: bool = False) -> None:
        self._engine, self.url = connect.connect(url, existing=existing)

    def close(self) -> None:
        """Release the database connections (the object is unusable afterwards)."""
        self._engine.dispose()

    def __enter__(self) -> History:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:  # fmt: skip
        self.close()

    def __repr__(self) -> str:
        return f"History({self.url!r})"

    def _failed(self, doing: str, exc: SQLAlchemyError) -> LkChaosError:
        return LkChaosError(
            f"the run history at {self.url} failed while {doing}: {connect._reason(exc)}; "
            "check that the database is up and reachable"
        )

    # Runs -----------------------------------------------------------------------------

    def record_run(self, journal: Mapping[str, Any], *, experiment_path: str | None = None,
                   journal_path: str | None = None, gameday_run_id: str | None = None,
                   entry: str | None = None, target: str | None = None,
                   livekit_version: str | None = None) -> str:  # fmt: skip
        """Record a run from its journal and return its run id (the safety control's
        ``lkchaos_safety.run_id``, else a new uuid4 hex). Idempotent: recording a run id
        again replaces its rows, keeping the keyword values of the first record that the
        new call leaves None. ``livekit_version``: what the deployment runs, when the
        journal does not say (:func:`lkchaos.history.extract.livekit_version`)."""
        if not isinstance(journal, Mapping):
            raise ConfigError(f"a journal must be a mapping, not {type(journal).__name__}")
        row, figures, series = _rows(journal)
        given = {"experiment_path": experiment_path, "journal_path": journal_path,
                 "gameday_run_id": gameday_run_id, "entry": entry, "target": target}
        row.update(given)
        if row["livekit_version"] is None and livekit_version:
            row["livekit_version"] = livekit_version[:64]
        row["experiment_name"] = extract.experiment_name(row["experiment_title"], experiment_path)
        run_id = row["run_id"]
        try:
            with self._engine.begin() as conn:
                old = conn.execute(select(runs).where(runs.c.run_id == run_id)).first()
                if old is not None:
                    for key in _KEEP_IF_NONE:
                        if row[key] is None:
                            row[key] = old._mapping[key]
                    row["experiment_name"] = extract.experiment_name(
                        row["experiment_title"], row["experiment_path"])
                    for table in (samples, probe_figures, journals, runs):
                        conn.execute(delete(table).where(table.c.run_id == run_id))
                conn.execute(insert(runs), row)
                if figures:
                    conn.execute(insert(probe_figures), [{**f, "run_id": run_id} for f in figures])
                if series:
                    conn.execute(insert(samples), [{**s, "run_id": run_id} for s in series])
                conn.execute(insert(journals), {"run_id": run_id, "encoding": extract.ENCODING,
                                                "data": extract.compress(journal)})  # fmt: skip
        except SQLAlchemyError as exc:
            raise self._failed(f"recording run {run_id}", exc) from exc
        return str(run_id)

    def runs(self, *, experiment: str | None = None, gameday_run_id: str | None = None,
             status: str | None = None, since: dt.datetime | None = None, limit: int = 50,
             gameday: str | None = None, target: str | None | Any = ANY_TARGET,
             ) -> list[RunRecord]:  # fmt: skip
        """Recorded runs, newest first (in the order they ran when ``gameday_run_id`` is
        given). ``experiment`` matches the file stem, the title or the path; ``status`` is a
        Chaos Toolkit status (``completed`` also matches deviated runs), ``deviated`` or
        ``held`` (completed and not deviated); ``gameday`` a game day's name; ``since`` an
        aware datetime; ``target`` the target file recorded (None: runs without one; every
        target's by default)."""
        if status is not None and status not in RUN_STATUSES:
            raise ConfigError(f"unknown status {status!r}: use one of {', '.join(RUN_STATUSES)}")
        query = select(runs)
        if experiment is not None:
            query = query.where(_named(experiment))
        if gameday_run_id is not None:
            query = query.where(runs.c.gameday_run_id == gameday_run_id)
        if gameday is not None:
            ids = select(gameday_runs.c.gameday_run_id).where(gameday_runs.c.name == gameday)
            query = query.where(runs.c.gameday_run_id.in_(ids))
        if status == "deviated":
            query = query.where(runs.c.deviated.is_(True))
        elif status == "held":
            query = query.where(runs.c.status == "completed", runs.c.deviated.is_(False))
        elif status is not None:
            query = query.where(runs.c.status == status)
        if since is not None:
            query = query.where(runs.c.started_at >= _aware(since, "since"))
        if target is not ANY_TARGET:
            query = query.where(runs.c.target.is_(None) if target is None
                                else runs.c.target == target)  # fmt: skip
        order = runs.c.started_at.asc() if gameday_run_id else runs.c.started_at.desc()
        query = query.order_by(order, runs.c.run_id).limit(_limit(limit))
        return [_run_record(row) for row in self._all(query, "listing runs")]

    def _all(self, query: Select[Any], doing: str) -> list[Row[Any]]:
        try:
            with self._engine.connect() as conn:
                return list(conn.execute(query).all())
        except SQLAlchemyError as exc:
            raise self._failed(doing, exc) from exc

    def _resolve_run(self, run_id: str) -> Row[Any]:
        rows = self._all(select(runs).where(runs.c.run_id == run_id), f"reading run {run_id}")
        if not rows and len(run_id) >= 4:  # a unique prefix, as git takes
            escaped = run_id.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            rows = self._all(select(runs).where(runs.c.run_id.like(f"{escaped}%", escape="\\"))
                             .limit(2), f"reading run {run_id}")  # fmt: skip
        if len(rows) != 1:
            what = "several runs start with" if rows else "no run"
            raise NotFound(f"{what} {run_id!r} in the history at {self.url}: "
                           "`lkchaos history list` shows the run ids")  # fmt: skip
        return rows[0]

    def run(self, run_id: str) -> RunRecord:
        """One run by id (or a unique prefix of 4+ characters). Raises ``NotFound``."""
        return _run_record(self._resolve_run(run_id))

    def journal(self, run_id: str) -> dict[str, Any]:
        """The whole journal as recorded. Raises ``NotFound``."""
        full = str(self._resolve_run(run_id)._mapping["run_id"])
        rows = self._all(select(journals).where(journals.c.run_id == full), "reading a journal")
        if not rows:
            raise NotFound(f"run {full} has no journal in the history at {self.url}")
        return extract.decompress(rows[0]._mapping["encoding"], rows[0]._mapping["data"])

    def series(self, run_id: str) -> dict[str, list[Sample]]:
        """Per sampled probe, its samples in time order (empty without sampling)."""
        full = str(self._resolve_run(run_id)._mapping["run_id"])
        query = select(samples).where(samples.c.run_id == full).order_by(
            samples.c.probe, samples.c.t, samples.c.id)
        result: dict[str, list[Sample]] = {}
        for row in self._all(query, "reading samples"):
            m = row._mapping
            result.setdefault(m["probe"], []).append(
                Sample(t=m["t"], at=m["at"], ok=m["ok"], latency_ms=m["latency_ms"],
                       reason=m["reason"]))  # fmt: skip
        return result

    def figures(self, run_id: str) -> list[ProbeFigures]:
        """Per sampled probe, the figures of the run (by probe name)."""
        full = str(self._resolve_run(run_id)._mapping["run_id"])
        query = select(probe_figures).where(probe_figures.c.run_id == full).order_by(
            probe_figures.c.probe)
        fields = ProbeFigures.__dataclass_fields__
        return [ProbeFigures(**{k: row._mapping[k] for k in fields})
                for row in self._all(query, "reading figures")]  # fmt: skip

    def trend(self, experiment: str, *, metric: str = "rto_s", probe: str | None = None,
              limit: int = 50) -> list[TrendPoint]:  # fmt: skip
        """The last ``limit`` runs of an experiment (matched as in :meth:`runs`), oldest
        first, with ``metric`` of the run (one of ``RUN_METRICS``) or, with ``probe``, of
        that sampled probe (one of ``PROBE_METRICS``; runs without it are left out).

        Refused runs (nothing ran) are left out. An ``rto_s`` that is no measured recovery is
        kept, with ``lower_bound`` true: that of a run cut short (interrupted or aborted:
        sampling stopped with the run) or of a probe that had not recovered (for the run's
        ``rto_s``, any of its probes), which runs from the fault's end to the end of
        sampling. Leaving such runs out would hide that recovery took at least that long."""
        allowed = PROBE_METRICS if probe else RUN_METRICS
        if not probe and metric in PROBE_METRICS and metric not in RUN_METRICS:
            raise ConfigError(f"{metric!r} is a sampled probe's figure: name the probe "
                              f"(--probe NAME, e.g. caller-answered)")
        if metric not in allowed:
            raise ConfigError(f"unknown metric {metric!r}{' for a probe' if probe else ''}: "
                              f"use one of {', '.join(allowed)}")  # fmt: skip
        column = probe_figures.c[metric] if probe else runs.c[metric]
        unrecovered = (probe_figures.c.recovered.is_(False) if probe else
                       exists().where(probe_figures.c.run_id == runs.c.run_id,
                                      probe_figures.c.recovered.is_(False)))  # fmt: skip
        bound = (and_(column.is_not(None), or_(runs.c.status.in_(CUT_SHORT), unrecovered))
                 if metric == "rto_s" else false())  # fmt: skip
        query = (select(runs.c.run_id, runs.c.started_at, runs.c.status, runs.c.deviated,
                        runs.c.gameday_run_id, gameday_runs.c.name, column.label("value"),
                        case((bound, True), else_=False).label("lower_bound"))
                 .select_from(runs.outerjoin(
                     gameday_runs, gameday_runs.c.gameday_run_id == runs.c.gameday_run_id))
                 .where(_named(experiment), runs.c.status != "refused"))  # fmt: skip
        if probe:
            query = query.join(probe_figures, (probe_figures.c.run_id == runs.c.run_id)
                               & (probe_figures.c.probe == probe))  # fmt: skip
        query = query.order_by(runs.c.started_at.desc(), runs.c.run_id).limit(_limit(limit))
        points = [TrendPoint(run_id=m["run_id"], started_at=m["started_at"], value=m["value"],
                             status=m["status"], deviated=m["deviated"],
                             gameday_run_id=m["gameday_run_id"], gameday=m["name"],
                             lower_bound=bool(m["lower_bound"]))
                  for m in (row._mapping for row in self._all(query, "reading a trend"))]
        return points[::-1]

    def why_no_trend(self, experiment: str, probe: str | None = None) -> str:
        """Why :meth:`trend` of ``experiment`` (and ``probe``) has no point, as a sentence
        that says what the history does hold: the experiments with runs, or the probes the
        experiment's runs sampled, or that all its runs were refused."""
        named = _named(experiment)
        statuses = {str(row[0]) for row in self._all(
            select(runs.c.status).where(named).distinct(), "reading a trend")}  # fmt: skip
        if not statuses:
            names = [str(row[0]) for row in self._all(
                select(runs.c.experiment_name).distinct().order_by(runs.c.experiment_name),
                "listing experiments")]  # fmt: skip
            held = (f"experiments with runs: {', '.join(names[:20])}"
                    + (f" and {len(names) - 20} more" if len(names) > 20 else "")
                    if names else "it has no runs yet")  # fmt: skip
            return f"no runs of {experiment!r} in the history at {self.url} ({held})"
        if statuses == {"refused"}:
            return (f"every run of {experiment!r} was refused before anything ran: "
                    f"`lkchaos history list --experiment {experiment}` shows why")
        probes = [str(row[0]) for row in self._all(
            select(probe_figures.c.probe).distinct()
            .select_from(runs.join(probe_figures, probe_figures.c.run_id == runs.c.run_id))
            .where(named, runs.c.status != "refused").order_by(probe_figures.c.probe),
            "reading a trend")]  # fmt: skip
        return (f"no run of {experiment!r} sampled a probe named {probe!r}: "
                + (f"its runs sampled {', '.join(probes)}" if probes
                   else "its runs sampled no probe"))  # fmt: skip

    # Game days --------------------------------------------------------------------------

    def start_gameday(self, *, name: str, path: str, file_hash: str,
                      scheduled: bool = False) -> str:  # fmt: skip
        """Record a game day run starting now (status ``running``); returns its id."""
        gameday_run_id = uuid.uuid4().hex
        self._write(insert(gameday_runs).values(
            gameday_run_id=gameday_run_id, name=name, path=path, file_hash=file_hash,
            scheduled=bool(scheduled), started_at=_now(), status="running", score=None,
        ), f"starting game day {name}")  # fmt: skip
        return gameday_run_id

    def finish_gameday(self, gameday_run_id: str, *, status: str, score: float | None) -> None:
        """Record a game day run's end (now), status and score (0-100). Raises ``NotFound``."""
        statement = update(gameday_runs).where(
            gameday_runs.c.gameday_run_id == gameday_run_id
        ).values(ended_at=_now(), status=status, score=score)
        if self._write(statement, f"finishing game day run {gameday_run_id}") == 0:
            raise NotFound(f"no game day run {gameday_run_id!r} in the history at {self.url}")

    def gameday_runs(self, *, name: str | None = None, limit: int = 20) -> list[GamedayRecord]:
        """Game day runs, newest first (of one game day when ``name`` is given)."""
        query = select(gameday_runs)
        if name is not None:
            query = query.where(gameday_runs.c.name == name)
        query = query.order_by(gameday_runs.c.started_at.desc()).limit(_limit(limit))
        return [_gameday(row) for row in self._all(query, "listing game days")]

    def gameday_run(self, gameday_run_id: str) -> GamedayRecord:
        """One game day run by id (or a unique prefix of 4+ characters, as ``lkchaos history
        gamedays`` shows). Raises ``NotFound``."""
        column = gameday_runs.c.gameday_run_id
        rows = self._all(select(gameday_runs).where(column == gameday_run_id),
                         "reading a game day")  # fmt: skip
        if not rows and len(gameday_run_id) >= 4:
            escaped = (gameday_run_id.replace("\\", "\\\\").replace("%", "\\%")
                       .replace("_", "\\_"))  # fmt: skip
            rows = self._all(select(gameday_runs).where(column.like(f"{escaped}%", escape="\\"))
                             .limit(2), "reading a game day")  # fmt: skip
        if len(rows) != 1:
            what = "several game day runs start with" if rows else "no game day run"
            raise NotFound(f"{what} {gameday_run_id!r} in the history at {self.url}")
        return _gameday(rows[0])

    def record_schedule_event(self, *, gameday: str, kind: str, reason: str,
                              at: dt.datetime) -> None:  # fmt: skip
        """Record a schedule's fire: ``kind`` ``fired``, ``missed`` or ``skipped``."""
        if kind not in SCHEDULE_KINDS:
            raise ConfigError(f"schedule event kind {kind!r}: use one of "
                              f"{', '.join(SCHEDULE_KINDS)}")  # fmt: skip
        self._write(insert(schedule_events).values(
            gameday=gameday, kind=kind, reason=reason, at=_aware(at, "at")),
            f"recording a schedule event of {gameday}")  # fmt: skip

    def schedule_events(self, *, gameday: str | None = None,
                        limit: int = 50) -> list[ScheduleEvent]:  # fmt: skip
        """Schedule events, newest first."""
        query = select(schedule_events)
        if gameday is not None:
            query = query.where(schedule_events.c.gameday == gameday)
        query = query.order_by(schedule_events.c.at.desc(), schedule_events.c.id.desc())
        return [ScheduleEvent(gameday=m["gameday"], kind=m["kind"], reason=m["reason"],
                              at=m["at"])
                for m in (r._mapping for r in self._all(query.limit(_limit(limit)),
                                                        "listing schedule events"))]

    def _write(self, statement: Any, doing: str) -> int:
        try:
            with self._engine.begin() as conn:
                return int(conn.execute(statement).rowcount)
        except SQLAlchemyError as exc:
            raise self._failed(doing, exc) from exc


def _gameday(row: Row[Any]) -> GamedayRecord:
    m = row._mapping
    return GamedayRecord(**{k: m[k] for k in GamedayRecord.__dataclass_fields__})


def _rows(journal: Mapping[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]],
                                               list[dict[str, Any]]]:  # fmt: skip
    """The run row (without the caller's keyword values), probe figures, samples. A run
    refused before anything ran (``lkchaos_safety.refused``) gets the status ``refused``,
    whatever Chaos Toolkit said, and no score."""
    from lkchaos.score import experiment_score

    experiment = journal.get("experiment") or {}
    safety = journal.get("lkchaos_safety") or {}
    started = extract.parse_time(journal.get("start")) or _now()
    ended = extract.parse_time(journal.get("end"))
    figures, series = extract.probe_rows(journal), extract.sample_rows(journal)
    availability, ttd, rto = extract.worst(figures)
    injected, undone = extract.faults(journal)
    refused = safety.get("refused")
    try:
        score = experiment_score(journal, now=ended or started)
        value, explanation = score.value, score.explanation
    except ConfigError as exc:
        value, explanation = None, f"not scored: {exc}"
    if refused:
        value = None
        explanation = f"not scored: refused before anything ran: {str(refused).splitlines()[0]}"
    duration = journal.get("duration")
    cleanup = safety.get("cleanup_s")
    row = {
        "run_id": str(safety.get("run_id") or uuid.uuid4().hex),
        "experiment_title": str(experiment.get("title") or "untitled experiment"),
        "experiment_hash": extract.experiment_hash(experiment),
        "started_at": started, "ended_at": ended,
        "duration_s": float(duration) if isinstance(duration, int | float) else None,
        "status": "refused" if refused else str(journal.get("status") or "unknown"),
        "deviated": bool(journal.get("deviated")),
        "faults_injected": injected, "faults_undone": undone,
        "cleanup_s": float(cleanup) if isinstance(cleanup, int | float) else None,
        "availability": availability, "time_to_detect_s": ttd, "rto_s": rto,
        "score": value, "score_explanation": explanation,
        "lkchaos_version": __version__, "livekit_version": extract.livekit_version(journal),
        "recorded_at": _now(),
    }  # fmt: skip
    return row, figures, series


def open_history(url: str | None = None, *, existing: bool = False) -> History:
    """Open (creating and migrating as needed) the run history at ``url``, else
    ``$LKCHAOS_HISTORY_URL``, else ``sqlite:///<state dir>/history.sqlite``. Usable as a
    context manager. Raises ``ConfigError`` for a bad URL (with ``existing``, for reading
    only: also a SQLite file given by URL that does not exist) and ``LkChaosError`` when the
    database cannot be reached or was written by a newer lkchaos."""
    return History(url, existing=existing)
