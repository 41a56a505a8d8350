"""The run history on a real SQLite file and a real PostgreSQL server: migrations, recording,
queries, game days, schedule events, and the errors a user sees."""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import create_engine, inspect, text

from lkchaos.errors import ConfigError, LkChaosError
from lkchaos.history import NotFound, open_history, resolve_url
from lkchaos.history.connect import head_revision, mask_url
from lkchaos.history.schema import HEAD_REVISION, VERSION_TABLE

JOURNALS = Path(__file__).resolve().parents[1] / "fixtures" / "journals"
TABLES = {"runs", "probe_figures", "samples", "journals", "gameday_runs", "schedule_events",
          VERSION_TABLE}  # fmt: skip
PG_ENV = "LKCHAOS_TEST_POSTGRES_URL"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((JOURNALS / f"{name}.json").read_text())
    return loaded


def variant(name: str, run_id: str, start: dt.datetime, **figures: Any) -> dict[str, Any]:
    """A fixture journal as another run: its own run id and times, some figures changed
    (``probe__figure=value``)."""
    journal = copy.deepcopy(load(name))
    journal["lkchaos_safety"]["run_id"] = run_id
    journal["start"] = start.isoformat()
    journal["end"] = (start + dt.timedelta(seconds=90)).isoformat()
    for key, value in figures.items():
        probe, figure = key.split("__")
        journal["lkchaos"]["sampling"]["probes"][probe]["figures"][figure] = value
    return journal


def postgres_base() -> str:
    url = os.environ.get(PG_ENV)
    if not url:
        pytest.fail(f"{PG_ENV} is not set: run `export {PG_ENV}=$(bash scripts/postgres.sh)` "
                    "(it starts a local PostgreSQL) and run the tests again")  # fmt: skip
    if not url.startswith(("postgresql://", "postgres://")) or "\n" in url:
        pytest.fail(f"{PG_ENV} is not one PostgreSQL URL: {url!r}; "
                    "scripts/postgres.sh must print only the URL on stdout")  # fmt: skip
    return url


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped afterwards."""
    base = postgres_base()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(base, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'sub' / 'history.sqlite'}"
    value: str = request.getfixturevalue("pg_url")
    return value


def tables(url: str) -> set[str]:
    engine = create_engine(resolve_url(url))
    try:
        return set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def set_revision(url: str, revision: str) -> None:
    engine = create_engine(resolve_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = :r"), {"r": revision})
    finally:
        engine.dispose()


# Migrations ---------------------------------------------------------------------------


def test_an_empty_database_is_migrated_to_head_and_reopens(url: str) -> None:
    with open_history(url) as history:
        run_id = history.record_run(load("agent-crash"))
    assert TABLES <= tables(url)
    engine = create_engine(resolve_url(url))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT version_num FROM {VERSION_TABLE}")).scalar() == \
            head_revision()
    engine.dispose()
    with open_history(url) as history:  # at head already: opens, rows kept
        assert [r.run_id for r in history.runs()] == [run_id]


def test_the_head_revision_constant_is_alembics_head() -> None:
    """A new migration must move HEAD_REVISION too (a database at it opens without Alembic)."""
    assert head_revision() == HEAD_REVISION


def test_a_database_at_head_opens_without_importing_alembic(url: str) -> None:
    open_history(url).close()  # created and migrated to head
    code = (
        "import sys\n"
        "from lkchaos.history import open_history\n"
        f"with open_history({url!r}) as history:\n"
        "    history.runs()\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'alembic'))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]", done.stdout
    # A database one revision behind (0003's tables not there yet) is still migrated.
    engine = create_engine(resolve_url(url))
    try:
        with engine.begin() as conn:
            conn.execute(text("DROP TABLE load_steps"))
            conn.execute(text("DROP TABLE load_runs"))
    finally:
        engine.dispose()
    set_revision(url, "0002")
    open_history(url).close()
    assert {"load_runs", "load_steps"} <= tables(url)


def test_a_database_from_a_newer_lkchaos_is_refused(url: str) -> None:
    open_history(url).close()
    set_revision(url, "9999_from_the_future")
    with pytest.raises(LkChaosError, match="'9999_from_the_future'.*newer lkchaos"):
        open_history(url)


def test_concurrent_first_opens_all_succeed(url: str) -> None:
    errors: list[BaseException] = []

    def opener() -> None:
        try:
            open_history(url).close()
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert TABLES <= tables(url)


def test_concurrent_first_opens_from_several_processes(url: str) -> None:
    code = "import sys; from lkchaos.history import open_history; open_history(sys.argv[1]).close()"
    children = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE,
                                 text=True) for _ in range(4)]  # fmt: skip
    outcomes = [(c.communicate(timeout=120)[1], c.returncode) for c in children]
    assert [err for err, code in outcomes if code != 0] == []
    assert TABLES <= tables(url)


# Runs ---------------------------------------------------------------------------------


def test_records_every_fixture_with_its_figures(url: str) -> None:
    names = ["agent-crash", "deviated", "dns-failure", "failed", "media-packet-loss",
             "redis-failover"]  # fmt: skip
    with open_history(url) as history:
        ids = {name: history.record_run(load(name), experiment_path=f"/x/{name}.json")
               for name in names}  # fmt: skip
        assert ids["agent-crash"] == load("agent-crash")["lkchaos_safety"]["run_id"]
        listed = history.runs()
        assert [r.experiment_name for r in listed] == [
            "deviated", "failed", "dns-failure", "agent-crash", "redis-failover",
            "media-packet-loss"]  # newest first
        crash = history.run(ids["agent-crash"])
        assert (crash.status, crash.deviated, crash.verdict) == ("completed", False, "completed")
        assert crash.started_at == dt.datetime(2026, 11, 30, 0, 44, 3, 249937, tzinfo=dt.UTC)
        assert crash.ended_at is not None and crash.ended_at.utcoffset() == dt.timedelta(0)
        assert crash.duration_s == pytest.approx(85.1993203163147)
        assert (crash.faults_injected, crash.faults_undone) == (2, 2)
        assert (crash.availability, crash.time_to_detect_s, crash.rto_s) == (0.6667, 15.118,
                                                                             23.847)
        assert crash.score == 95.8
        assert crash.experiment_path == "/x/agent-crash.json"
        # The LiveKit version is what the run met, never a guess: agent-crash's journal
        # has no room-state probe, redis-failover's says 1.13.5.
        assert len(crash.experiment_hash) == 64 and crash.livekit_version is None
        redis = history.run(ids["redis-failover"])
        assert redis.livekit_version == "1.13.5"
        assert (redis.availability, redis.time_to_detect_s, redis.rto_s) == (0.2857, 11.422,
                                                                             14.832)
        assert history.run(ids["deviated"]).verdict == "deviated"
        failed = history.run(ids["failed"])
        assert (failed.status, failed.faults_injected, failed.score) == ("failed", 0, 0.0)
        assert failed.availability is None and failed.rto_s is None


def test_faults_are_counted_as_the_audit_log_holds_them() -> None:
    # The safety control's count (what `lkchaos audit --run` lists) wins over the method's
    # lkchaos actions, which count a restore (start_service) and a fault never made.
    from lkchaos.history import extract

    journal = load("agent-crash")
    assert extract.faults(journal) == (2, 2)  # an older journal: its method's actions
    journal["lkchaos_safety"]["faults"] = {"injected": 1, "undone": 1}
    assert extract.faults(journal) == (1, 1)
    journal["lkchaos_safety"]["faults"] = {"injected": True, "undone": "1"}  # not counts
    assert extract.faults(journal) == (2, 2)


def test_journal_series_and_figures_come_back(url: str) -> None:
    journal = load("redis-failover")
    with open_history(url) as history:
        run_id = history.record_run(journal)
        assert history.journal(run_id) == journal
        series = history.series(run_id)
        sampled = journal["lkchaos"]["sampling"]["probes"]
        assert {k: len(v) for k, v in series.items()} == {
            k: len(v["samples"]) for k, v in sampled.items()}
        first_failure = next(s for s in series["caller-answered"] if not s.ok)
        assert first_failure.t == 23.2642
        assert first_failure.reason is not None and first_failure.reason.startswith(
            "could not join wss://lk.chaos.test")
        assert first_failure.at == dt.datetime(2026, 11, 30, 0, 27, 10, 14160, tzinfo=dt.UTC)
        times = [s.t for s in series["nodes-ready"]]
        assert times == sorted(times)
        figures = {f.probe: f for f in history.figures(run_id[:8])}
        assert figures["nodes-ready"].failures == 9
        assert figures["caller-answered"].availability_during_fault is None


def test_recording_again_replaces_the_run_and_keeps_what_it_knew(url: str) -> None:
    journal = load("dns-failure")
    with open_history(url) as history:
        first = history.record_run(journal, experiment_path="experiments/dns-failure.json",
                                   gameday_run_id="g1", entry="dns")  # fmt: skip
        journal["deviated"] = True
        again = history.record_run(journal, journal_path="/out/01-dns.json")
        assert first == again
        (run,) = history.runs()
        # deviated now: H 0, A (0.7826 + 0.75) / 2, R 1 -> 0.25 * 0.7663 + 0.25 * 1 = 44.2
        assert run.deviated and run.score == 44.2
        assert (run.experiment_path, run.experiment_name, run.gameday_run_id, run.entry,
                run.journal_path) == ("experiments/dns-failure.json", "dns-failure", "g1",
                                      "dns", "/out/01-dns.json")  # fmt: skip
        assert len(history.series(run.run_id)["names-resolve"]) == 92  # not doubled


def test_a_journal_without_a_safety_run_id_gets_a_new_id_each_time(url: str) -> None:
    journal = load("deviated")
    del journal["lkchaos_safety"]
    with open_history(url) as history:
        one, two = history.record_run(journal), history.record_run(journal)
        assert one != two and len(one) == 32 and int(one, 16) >= 0
        assert history.run(one).faults_undone is None


def test_filters(url: str) -> None:
    with open_history(url) as history:
        for name in ("agent-crash", "deviated", "failed", "dns-failure"):
            history.record_run(load(name), experiment_path=f"experiments/{name}.json")
        title = load("agent-crash")["experiment"]["title"]

        def names(**filters: Any) -> list[str]:
            return [r.experiment_name for r in history.runs(**filters)]

        assert names(experiment="agent-crash") == ["agent-crash"]
        assert names(experiment=title) == ["agent-crash"]
        assert names(experiment="experiments/dns-failure.json") == ["dns-failure"]
        assert names(status="deviated") == ["deviated"]
        assert names(status="failed") == ["failed"]
        assert names(status="held") == ["dns-failure", "agent-crash"]
        assert names(since=dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)) == ["deviated",
                                                                               "failed"]
        assert names(limit=1) == ["deviated"]
        with pytest.raises(ConfigError, match="timezone-aware"):
            history.runs(since=dt.datetime(2026, 11, 30))
        with pytest.raises(ConfigError, match="limit"):
            history.runs(limit=0)
        with pytest.raises(ConfigError, match="unknown status 'passed'"):
            history.runs(status="passed")


def test_unknown_runs_say_how_to_find_one(url: str) -> None:
    with open_history(url) as history:
        with pytest.raises(NotFound, match="no run 'nope'.*lkchaos history list"):
            history.run("nope")
        with pytest.raises(KeyError):
            history.journal("0123456789")


def test_trend_across_game_days(url: str) -> None:
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    with open_history(url) as history:
        for week, rto in enumerate((30.0, 12.5, 8.0)):
            gameday = history.start_gameday(name="weekly", path="gamedays/full.yaml",
                                             file_hash="h", scheduled=True)  # fmt: skip
            journal = variant("agent-crash", f"run{week}", base + dt.timedelta(days=7 * week),
                              **{"caller-answered__rto_s": rto})  # fmt: skip
            history.record_run(journal, experiment_path="experiments/agent-crash.json",
                               gameday_run_id=gameday, entry="agent-crash")  # fmt: skip
            history.finish_gameday(gameday, status="held", score=90.0 + week)
        history.record_run(load("dns-failure"), experiment_path="experiments/dns-failure.json")
        points = history.trend("agent-crash")
        assert [(p.run_id, p.value, p.gameday) for p in points] == [
            ("run0", 30.0, "weekly"), ("run1", 12.5, "weekly"), ("run2", 8.0, "weekly")]
        assert [p.value for p in history.trend("agent-crash", limit=2)] == [12.5, 8.0]
        by_probe = history.trend("agent-crash", metric="availability", probe="nodes-ready")
        assert [p.value for p in by_probe] == [1.0, 1.0, 1.0]
        assert history.trend("agent-crash", probe="no-such-probe") == []
        with pytest.raises(ConfigError, match="unknown metric 'latency'"):
            history.trend("agent-crash", metric="latency")
        with pytest.raises(ConfigError, match="a sampled probe's figure: name the probe"):
            history.trend("agent-crash", metric="availability_during_fault")
        runs = history.runs(gameday="weekly")
        assert [r.run_id for r in runs] == ["run2", "run1", "run0"]
        one = runs[0].gameday_run_id
        assert one is not None and [r.run_id for r in history.runs(gameday_run_id=one)] == [
            "run2"]


def refused(run_id: str, start: dt.datetime) -> dict[str, Any]:
    """agent-crash's journal as a run refused before anything ran (the run lock held by
    another run): Chaos Toolkit says interrupted, the safety section says refused."""
    journal = variant("agent-crash", run_id, start)
    journal.update(status="interrupted", run=[], rollbacks=[])
    del journal["lkchaos"]
    journal["lkchaos_safety"] = {
        "run_id": None, "refused": "the run lock is held by run 1234 (pid 99)\nwait for it",
        "problems": ["the run lock is held by run 1234 (pid 99)"],
        "rollbacks_played_by_lkchaos": 0}
    return journal


def interrupted(run_id: str, start: dt.datetime, rto: float) -> dict[str, Any]:
    """agent-crash's journal cut short by Ctrl-C, caller-answered's RTO ``rto``."""
    journal = variant("agent-crash", run_id, start, **{"caller-answered__rto_s": rto})
    journal["status"] = "interrupted"
    del journal["end"]
    return journal


def test_a_refused_run_is_recorded_refused_unscored_and_out_of_trends(url: str) -> None:
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    with open_history(url) as history:
        history.record_run(variant("agent-crash", "ran", base),
                           experiment_path="experiments/agent-crash.json")
        run_id = history.record_run(refused("ignored", base + dt.timedelta(days=1)),
                                    experiment_path="experiments/agent-crash.json")
        run = history.run(run_id)
        assert (run.status, run.verdict, run.score) == ("refused", "refused", None)
        assert run.score_explanation == ("not scored: refused before anything ran: the run "
                                         "lock is held by run 1234 (pid 99)")
        assert [r.run_id for r in history.runs(status="refused")] == [run_id]
        assert history.runs(status="interrupted") == []
        for metric in ("rto_s", "score", "duration_s"):
            assert [p.run_id for p in history.trend("agent-crash", metric=metric)] == ["ran"]


def test_an_interrupted_runs_rto_is_marked_a_lower_bound_in_trends(url: str) -> None:
    base = dt.datetime(2026, 11, 1, 3, 0, tzinfo=dt.UTC)
    with open_history(url) as history:
        stuck = variant("agent-crash", "stuck", base + dt.timedelta(days=2),
                        **{"caller-answered__rto_s": 60.0, "caller-answered__recovered": False})
        for journal in (variant("agent-crash", "measured", base),
                        interrupted("cut", base + dt.timedelta(days=1), 41.0), stuck):
            history.record_run(journal, experiment_path="experiments/agent-crash.json")
        points = history.trend("agent-crash")
        assert [(p.run_id, p.value, p.lower_bound) for p in points] == [
            ("measured", 23.847, False), ("cut", 41.0, True), ("stuck", 60.0, True)]
        by_probe = history.trend("agent-crash", probe="nodes-ready")
        assert [(p.value, p.lower_bound) for p in by_probe] == [
            (0.0, False), (0.0, True), (0.0, False)]
        ttd = history.trend("agent-crash", metric="time_to_detect_s")
        assert not any(p.lower_bound for p in ttd)


# Game days and schedules --------------------------------------------------------------


def test_gameday_runs(url: str) -> None:
    with open_history(url) as history:
        quick = history.start_gameday(name="quick", path="gamedays/quick.yaml", file_hash="a")
        full = history.start_gameday(name="full", path="gamedays/full.yaml", file_hash="b",
                                     scheduled=True)  # fmt: skip
        running = history.gameday_run(full)
        assert (running.status, running.score, running.ended_at, running.scheduled) == (
            "running", None, None, True)
        history.finish_gameday(quick, status="not_recovered", score=41.5)
        done = history.gameday_run(quick)
        assert (done.status, done.score) == ("not_recovered", 41.5)
        assert done.ended_at is not None and done.ended_at >= done.started_at
        assert [g.name for g in history.gameday_runs()] == ["full", "quick"]
        assert [g.gameday_run_id for g in history.gameday_runs(name="quick")] == [quick]
        assert history.gameday_run(quick[:12]).gameday_run_id == quick
        with pytest.raises(NotFound, match="no game day run 'zzzz'"):
            history.gameday_run("zzzz")
        with pytest.raises(NotFound, match="no game day run 'nope'"):
            history.finish_gameday("nope", status="held", score=None)


def test_schedule_events(url: str) -> None:
    at = dt.datetime(2026, 11, 30, 3, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    with open_history(url) as history:
        history.record_schedule_event(gameday="quick", kind="fired", reason="cron", at=at)
        history.record_schedule_event(gameday="quick", kind="skipped",
                                      reason="game day 'full' is running",
                                      at=at + dt.timedelta(minutes=5))  # fmt: skip
        history.record_schedule_event(gameday="full", kind="missed", reason="late",
                                      at=at + dt.timedelta(minutes=1))  # fmt: skip
        events = history.schedule_events()
        assert [(e.gameday, e.kind) for e in events] == [
            ("quick", "skipped"), ("full", "missed"), ("quick", "fired")]
        assert events[-1].at == dt.datetime(2026, 11, 30, 1, 0, tzinfo=dt.UTC)
        assert events[-1].at.tzinfo is not None
        assert [e.kind for e in history.schedule_events(gameday="full")] == ["missed"]
        with pytest.raises(ConfigError, match="kind 'ran'"):
            history.record_schedule_event(gameday="q", kind="ran", reason="", at=at)
        with pytest.raises(ConfigError, match="timezone-aware"):
            history.record_schedule_event(gameday="q", kind="fired", reason="",
                                          at=dt.datetime(2026, 1, 1))  # fmt: skip


# Where the history is, and what a user sees when it is not there ------------------------


def test_location_argument_then_environment_then_state_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    assert resolve_url() == f"sqlite:///{tmp_path / 'state' / 'history.sqlite'}"
    with open_history() as history:
        history.record_run(load("deviated"))
    assert (tmp_path / "state" / "history.sqlite").is_file()
    monkeypatch.setenv("LKCHAOS_HISTORY_URL", "postgresql://u:p@db.example:5432/h")
    assert resolve_url() == "postgresql+psycopg://u:p@db.example:5432/h"
    assert resolve_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ConfigError, match="only sqlite"):
        resolve_url("mysql://u@h/d")
    with pytest.raises(ConfigError, match="cannot be parsed"):
        resolve_url("not a url")


def test_passwords_are_masked() -> None:
    assert mask_url("postgresql+psycopg://lk:s3cret@h:5432/d") == \
        "postgresql+psycopg://lk:***@h:5432/d"
    assert "s3cret" not in mask_url("weird://lk:s3cret@h/d?x=%%")


def test_an_unreachable_postgresql_names_the_masked_url() -> None:
    with pytest.raises(LkChaosError) as caught:
        open_history("postgresql://lk:s3cret@127.0.0.1:1/history")
    message = str(caught.value)
    assert "s3cret" not in message
    assert "postgresql+psycopg://lk:***@127.0.0.1:1/history" in message
    assert "Check that the database is running" in message


def test_an_sqlite_file_that_cannot_be_created(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(LkChaosError, match="writable place"):
        open_history(f"sqlite:///{tmp_path / 'file' / 'history.sqlite'}")


def test_the_livekit_version_comes_from_the_run_or_the_deployment(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.delenv("LKCHAOS_LIVEKIT_VERSION", raising=False)
    with open_history(f"sqlite:///{tmp_path / 'h.sqlite'}") as history:
        # Not in the journal: what the deployment said (the history control asks its Redis).
        crash = history.record_run(load("agent-crash"), livekit_version="1.12.0")
        assert history.run(crash).livekit_version == "1.12.0"
        # In the journal: the journal wins over what is passed.
        redis = history.record_run(load("redis-failover"), livekit_version="1.12.0")
        assert history.run(redis).livekit_version == "1.13.5"
        # Recorded again without it: the first record's value is kept.
        history.record_run(load("agent-crash"))
        assert history.run(crash).livekit_version == "1.12.0"
        monkeypatch.setenv("LKCHAOS_LIVEKIT_VERSION", "v9.9.9-mine")
        history.record_run(load("redis-failover"))
        assert history.run(redis).livekit_version == "v9.9.9-mine"
