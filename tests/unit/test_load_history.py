"""Load ramps in the run history, on SQLite and on a real PostgreSQL server: recorded with
their steps, listed newest first, read back whole; `lkchaos history loads` shows them."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lkchaos.cli import main
from lkchaos.errors import LkChaosError
from lkchaos.history import open_history
from lkchaos.load import record
from tests.unit.test_history import pg_url, url  # noqa: F401  (fixtures)


def _step(callers: int, p95: float, answered_pct: float, breaks: list[str]) -> dict[str, Any]:
    return {
        "callers": callers, "connected": callers, "turns": 3 * callers, "answered": 0,
        "answered_pct": answered_pct, "latency_s": {"p50": p95 / 2, "p95": p95, "p99": p95},
        "join_s": {"p50": 0.2, "p95": 0.3}, "dispatch_s": {"p50": 0.6, "p95": 0.9},
        "stages": {"ok": 3 * callers}, "reconnects": 0,
        "usage": {"containers": {"agent": {"cpu_cores": 0.4 * callers, "memory_mib": 300.0}},
                  "cpu_cores_total": 0.5 * callers},
        "livekit": {"note": "no Prometheus URL"}, "breaks": breaks,
    }  # fmt: skip


def ramp_result(started: float) -> dict[str, Any]:
    """What a 1, 2, 4 ramp returns when 4 callers pass the p95 budget."""
    return {
        "started_at": started, "ended_at": started + 75.5,
        "plan": {"steps": [1, 2, 4, 8], "step_s": 15.0, "warmup_s": 5.0, "p95_budget_s": 1.2,
                 "min_answered_pct": 99.0, "transcribe_every": 2, "stagger_s": 0.5,
                 "max_callers": 200, "stop_at_knee": True},
        "steps": [_step(1, 0.9, 100.0, []), _step(2, 1.1, 100.0, []),
                  _step(4, 1.9, 100.0, ["p95 1.90 s over the budget of 1.2 s"])],
        "knee": 4, "stopped_early": True, "rooms": 7, "leftover": {},
    }  # fmt: skip


def test_a_ramp_is_recorded_with_its_steps_and_read_back(url: str) -> None:  # noqa: F811
    open_history(url).close()  # created and migrated to head
    earlier = record.record(ramp_result(time.time() - 3600), "the reference stack", url)
    later = record.record({**ramp_result(time.time()), "leftover": "could not check: down"},
                          None, url)  # fmt: skip
    found = record.recent(url)
    assert [r["load_id"] for r in found] == [later, earlier]
    ramp = found[1]
    assert (ramp["steps"], ramp["knee"], ramp["held_callers"]) == ("1,2,4,8", 4, 2)
    assert ramp["stopped_early"] is True and ramp["leftover_rooms"] == 0
    assert ramp["target"] == "the reference stack" and ramp["duration_s"] == 75.5
    assert [s["callers"] for s in ramp["steps_measured"]] == [1, 2, 4]
    assert [s["latency_p95_s"] for s in ramp["steps_measured"]] == [0.9, 1.1, 1.9]
    assert ramp["steps_measured"][2]["breaks"] == "p95 1.90 s over the budget of 1.2 s"
    assert ramp["steps_measured"][2]["cpu_cores"] == 2.0
    assert found[0]["leftover_rooms"] is None  # not checked is not "none left"
    whole = record.result(earlier[:8], url)
    assert whole["steps"][1]["usage"]["containers"]["agent"]["cpu_cores"] == 0.8


def test_a_ramp_id_must_be_one_ramp(url: str) -> None:  # noqa: F811
    open_history(url).close()
    with pytest.raises(LkChaosError, match="no load ramp with id 'abcdef'"):
        record.result("abcdef", url)
    with pytest.raises(LkChaosError, match="not a load ramp id"):
        record.result("%", url)


def test_held_callers_is_the_last_step_before_the_first_break() -> None:
    result = ramp_result(0.0)
    assert record.held_callers(result) == 2
    result["steps"][0]["breaks"] = ["answered 50 % under 99 %"]
    assert record.held_callers(result) is None
    assert record.held_callers({"steps": []}) is None


def test_history_loads_lists_and_shows_ramps(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    history_url = f"sqlite:///{tmp_path / 'history.sqlite'}"
    monkeypatch.delenv("LKCHAOS_HISTORY_URL", raising=False)
    # A URL naming no database is refused (a mistyped URL must not read as "nothing").
    absent = CliRunner().invoke(main, ["history", "--url", history_url, "loads"])
    assert absent.exit_code == 2 and "no run history at" in absent.output
    with open_history(history_url):  # created, as recording a run creates it
        pass
    empty = CliRunner().invoke(main, ["history", "--url", history_url, "loads"])
    assert empty.exit_code == 0 and "no load ramps recorded" in empty.output
    load_id = record.record(ramp_result(time.time()), "the reference stack", history_url)
    listed = CliRunner().invoke(main, ["history", "--url", history_url, "loads"])
    assert listed.exit_code == 0, listed.output
    assert "1,2,4,8" in listed.output and "0.90 1.10 1.90" in listed.output
    assert load_id[:12] in listed.output
    shown = CliRunner().invoke(main, ["history", "--url", history_url, "loads", "--show",
                                      load_id[:12]])  # fmt: skip
    assert shown.exit_code == 0 and json.loads(shown.output)["knee"] == 4
    missing = CliRunner().invoke(main, ["history", "--url", history_url, "loads", "--show",
                                        "0123456789ab"])  # fmt: skip
    assert missing.exit_code != 0 and "lkchaos history loads" in missing.output
