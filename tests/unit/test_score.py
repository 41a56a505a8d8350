"""The resilience score on the fixture journals, with expectations computed by hand."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from lkchaos.errors import ConfigError
from lkchaos.score import (
    Score,
    decayed,
    experiment_score,
    gameday_score,
    rto_bound_s,
    rto_bounds,
    staleness,
)

ROOT = Path(__file__).resolve().parents[2]
JOURNALS = ROOT / "tests" / "fixtures" / "journals"


def load(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((JOURNALS / f"{name}.json").read_text())
    return loaded


def experiment(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((ROOT / "experiments" / f"{name}.json").read_text())
    return loaded


def at_end(journal: dict[str, Any], days: float = 0.0) -> dt.datetime:
    return dt.datetime.fromisoformat(journal["end"]) + dt.timedelta(days=days)


def score(journal: dict[str, Any], days: float = 0.0) -> Score:
    return experiment_score(journal, now=at_end(journal, days))


def figures(journal: dict[str, Any], probe: str) -> dict[str, Any]:
    found: dict[str, Any] = journal["lkchaos"]["sampling"]["probes"][probe]["figures"]
    return found


def with_extension(journal: dict[str, Any], **extension: Any) -> dict[str, Any]:
    journal = copy.deepcopy(journal)
    journal["experiment"]["extensions"] = [{"name": "other"}, {"name": "lkchaos", **extension}]
    return journal


@pytest.fixture(autouse=True)
def default_staleness(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LKCHAOS_SCORE_FRESH_DAYS", raising=False)
    monkeypatch.delenv("LKCHAOS_SCORE_HALF_LIFE_DAYS", raising=False)


# H 0.5 + A 0.25 x mean availability + R 0.25 x mean RTO part (all RTOs within 60 s: R = 1).
@pytest.mark.parametrize(("name", "expected", "availability"), [
    ("agent-crash", 95.8, (1.0 + 0.6667) / 2),      # 0.5 + 0.25 * 0.83335 + 0.25 = 95.83
    ("dns-failure", 94.2, (0.7826 + 0.75) / 2),     # 0.5 + 0.25 * 0.7663 + 0.25 = 94.16
    ("redis-failover", 90.7, (0.9707 + 0.2857) / 2),  # 0.5 + 0.25 * 0.6282 + 0.25 = 90.71
    ("media-packet-loss", 100.0, 1.0),
])  # fmt: skip
def test_completed_runs(name: str, expected: float, availability: float) -> None:
    result = score(load(name))
    assert result.value == expected
    assert result.parts["hypothesis"] == 1.0
    assert result.parts["availability"] == pytest.approx(availability)
    assert result.parts["rto"] == 1.0 and result.parts["staleness"] == 1.0
    assert result.weight == 1.0
    assert result.explanation.startswith("held:") and result.explanation.endswith(f"{expected:g}")


def test_a_deviated_run_without_sampling_scores_0_and_leaves_the_rest_out() -> None:
    result = score(load("deviated"))
    assert (result.value, result.parts["availability"], result.parts["rto"]) == (0.0, None, None)
    assert "left out (nothing measured): availability, rto" in result.explanation


def test_a_deviated_run_with_sampling_keeps_its_availability_and_rto() -> None:
    journal = load("agent-crash")
    journal["deviated"] = True
    # (0.5 * 0 + 0.25 * 0.83335 + 0.25 * 1) / 1.0 = 45.83
    assert score(journal).value == 45.8


@pytest.mark.parametrize("status", ["failed", "aborted", "interrupted"])
def test_a_run_that_did_not_test_anything_scores_0_and_says_why(status: str) -> None:
    journal = load("failed") if status == "failed" else {**load("agent-crash"), "status": status}
    result = score(journal)
    assert result.value == 0.0
    assert f"the run {status}" in result.explanation and "tested nothing" in result.explanation
    if status == "failed":
        assert "'pause-mcp' failed: mcp is exited" in result.explanation


def test_a_game_day_entry_not_recovered_loses_its_hypothesis_part() -> None:
    # Held by its journal, but the deployment was not back at its baseline after it.
    journal = load("agent-crash")
    result = experiment_score(journal, now=at_end(journal), entry_outcome="not_recovered")
    assert result.value == 45.8 and result.parts["hypothesis"] == 0.0  # as deviated
    assert result.explanation.startswith("not recovered (the deployment was not back")
    assert score(journal).value == 95.8  # the journal alone


def test_a_game_day_entry_interrupted_tested_nothing() -> None:
    journal = load("agent-crash")
    result = experiment_score(journal, now=at_end(journal), entry_outcome="interrupted")
    assert result.value == 0.0 and "interrupted this entry" in result.explanation
    # an outcome no worse than the journal changes nothing
    for outcome in ("held", "deviated", None):
        assert experiment_score(journal, now=at_end(journal),
                                entry_outcome=outcome).value == 95.8  # fmt: skip


def test_a_steady_state_that_did_not_hold_before_the_method_scores_0() -> None:
    journal = load("agent-crash")  # Chaos Toolkit says "completed" and exits 0 for these
    journal["steady_states"]["before"]["steady_state_met"] = False
    result = score(journal)
    assert result.value == 0.0
    assert "did not hold before the method" in result.explanation


def test_no_sampling_renormalises_to_the_hypothesis() -> None:
    journal = load("deviated")
    journal["deviated"] = False
    assert score(journal).value == 100.0


def test_rto_over_its_bound_counts_bound_over_rto() -> None:
    journal = load("dns-failure")
    figures(journal, "names-resolve")["rto_s"] = 20.0  # its own bound is 10 s: 10 / 20
    result = score(journal)
    assert result.parts["rto"] == pytest.approx((0.5 + 1.0) / 2)
    # 0.5 + 0.25 * 0.7663 + 0.25 * 0.75 = 87.91
    assert result.value == 87.9
    assert "names-resolve recovered in 20 s, over its 10 s bound" in result.explanation


def test_a_probe_that_did_not_recover_counts_0() -> None:
    journal = load("dns-failure")
    figures(journal, "caller-answered")["recovered"] = False
    result = score(journal)
    assert result.parts["rto"] == 0.5  # (1 + 0) / 2
    assert result.value == 81.7  # 0.5 + 0.25 * 0.7663 + 0.25 * 0.5 = 81.66
    assert "caller-answered did not recover" in result.explanation


def test_without_a_bound_any_recovery_counts_1() -> None:
    journal = load("dns-failure")
    journal["experiment"]["steady-state-hypothesis"]["probes"] = []
    journal["experiment"]["method"] = []
    figures(journal, "names-resolve")["rto_s"] = 500.0
    assert rto_bound_s(journal["experiment"]) is None
    assert score(journal).parts["rto"] == 1.0


def test_a_run_whose_fault_never_ended_leaves_rto_out() -> None:
    journal = load("agent-crash")
    for name in ("nodes-ready", "caller-answered"):
        figures(journal, name)["rto_s"] = None
    result = score(journal)
    assert result.parts["rto"] is None
    assert result.value == round(100 * (0.5 + 0.25 * 0.83335) / 0.75, 1) == 94.4


def test_bounds_from_the_shipped_experiments() -> None:
    assert rto_bound_s(experiment("agent-crash")) == 60.0
    assert rto_bound_s(experiment("dns-failure")) == 60.0  # the largest: 10 s and 60 s
    assert rto_bounds(experiment("dns-failure"), ["names-resolve", "caller-answered"]) == {
        "names-resolve": 10.0, "caller-answered": 60.0}
    assert rto_bounds(experiment("redis-failover"), ["nodes-ready"]) == {"nodes-ready": 60.0}
    assert rto_bound_s(experiment("stack-healthy")) is None


def test_the_extension_sets_the_bound_for_every_probe() -> None:
    journal = with_extension(load("dns-failure"), rto_bound_s=5)
    assert rto_bound_s(journal["experiment"]) == 5.0
    result = score(journal)
    # names-resolve 0.0 s -> 1; caller-answered 16.682 s over 5 s -> 5 / 16.682
    assert result.parts["rto"] == pytest.approx((1 + 5 / 16.682) / 2)
    with pytest.raises(ConfigError, match="rto_bound_s must be > 0"):
        rto_bound_s(with_extension(load("dns-failure"), rto_bound_s=0)["experiment"])


def test_weights_and_the_game_day_weight_come_from_the_extension() -> None:
    journal = with_extension(load("agent-crash"), score={
        "weights": {"hypothesis": 0, "availability": 1, "R": 0}, "weight": 2})
    result = score(journal)
    assert result.value == 83.3  # availability alone: 0.83335
    assert result.weight == 2.0
    for bad, message in (({"weights": {"speed": 1}}, "unknown score weight 'speed'"),
                         ({"weights": {"rto": -1}}, "must be >= 0"),
                         ({"weights": {"hypothesis": 0, "availability": 0, "rto": 0}},
                          "must not all be 0"),
                         ({"weight": "heavy"}, "must be a number")):  # fmt: skip
        with pytest.raises(ConfigError, match=message):
            score(with_extension(load("agent-crash"), score=bad))


def test_staleness() -> None:
    assert staleness(0) == staleness(7) == 1.0
    assert staleness(14) == 0.5
    assert staleness(21) == 0.25
    assert staleness(3, fresh_days=1, half_life_days=1) == 0.25


def test_staleness_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LKCHAOS_SCORE_FRESH_DAYS", "0")
    monkeypatch.setenv("LKCHAOS_SCORE_HALF_LIFE_DAYS", "2")
    assert staleness(4) == 0.25
    monkeypatch.setenv("LKCHAOS_SCORE_HALF_LIFE_DAYS", "soon")
    with pytest.raises(ConfigError, match="LKCHAOS_SCORE_HALF_LIFE_DAYS='soon'"):
        staleness(4)


def test_an_old_pass_counts_for_less() -> None:
    journal = load("agent-crash")
    old = score(journal, days=14)  # 7 days past fresh: half
    assert old.value == 47.9  # 95.83 * 0.5
    assert old.parts["staleness"] == 0.5
    assert "staleness x0.50" in old.explanation
    assert decayed(95.8, at_end(journal), now=at_end(journal, 21)) == 23.9  # 95.8 * 0.25


def test_gameday_score() -> None:
    held = score(load("agent-crash"))  # 95.8
    perfect = score(load("media-packet-loss"))  # 100.0
    assert gameday_score([(held, 1), (perfect, 1)]) == 97.9
    assert gameday_score([(held, 1), (perfect, 4)]) == 99.2  # (95.8 + 400) / 5 = 99.16
    assert gameday_score([(perfect, 1), (None, 1)]) == 50.0  # an entry that did not run: 0
    assert gameday_score([]) == 0.0
    with pytest.raises(ConfigError, match="weight"):
        gameday_score([(held, -1)])


def test_the_game_day_score_counts_each_entry_as_the_game_day_judged_it() -> None:
    from lkchaos.gameday import record

    path = JOURNALS / "agent-crash.json"
    held = record.score([(path, 1.0, "held"), (path, 1.0, "held")])
    worse = record.score([(path, 1.0, "held"), (path, 1.0, "not_recovered")])
    assert held is not None and worse is not None and worse < held
    assert record.score([(path, 1.0, "interrupted"), (None, 1.0, "failed")]) == 0.0
