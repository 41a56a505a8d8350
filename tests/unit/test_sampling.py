"""The sampling control, run inside real Chaos Toolkit experiments (no network, no Docker).

The probes and actions of these experiments are the functions at the top of this module: a
"service" that an action breaks and another repairs after a warm-up.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator
from copy import deepcopy
from typing import Any

import pytest
from chaoslib.control import load_global_controls
from chaoslib.exceptions import ActivityFailed, InvalidControl
from chaoslib.experiment import ensure_experiment_is_valid, run_experiment
from chaoslib.types import Dry

from lkchaos.controls import sampler as sampler_module
from lkchaos.controls import sampling
from lkchaos.controls.figures import Fault, derive, fault_window, settled, summarize
from lkchaos.controls.options import parse_options
from lkchaos.controls.probes import answered_during_fault, recovery, sampled, sessions_answered

MODULE = __name__

# -- the system under test: a flag, broken and repaired by actions ----------------------------
_service: dict[str, Any] = {"down": False, "heal_at": None, "calls": 0}


def service_ok() -> bool:
    """True unless broken; a repair takes effect after its warm-up."""
    _service["calls"] += 1
    heal_at = _service["heal_at"]
    if _service["down"] and heal_at is not None and time.monotonic() >= heal_at:
        _service["down"], _service["heal_at"] = False, None
    return not _service["down"]


def service_status() -> dict[str, Any]:
    ok = service_ok()
    return {"ok": ok, "status": 200 if ok else 503, "detail": {"nested": True}}


def break_service() -> None:
    _service["down"], _service["heal_at"] = True, None


def repair_service(warmup_s: float = 0.0) -> None:
    _service["heal_at"] = time.monotonic() + warmup_s


def explode() -> bool:
    raise RuntimeError("probe exploded")


def slow_ok(delay_s: float = 0.05) -> bool:
    time.sleep(delay_s)
    return True


def past_event(ago_s: float = 0.5, took_s: float = 0.2) -> dict[str, Any]:
    """A result read after it happened (as a held call's turn): it ended ``ago_s`` ago."""
    now = time.time()
    return {"ok": True, "started_at": now - ago_s - took_s, "ended_at": now - ago_s}


_turns = {"n": 0}


def held_turn(rooms: int = 3, deaf: str = "") -> dict[str, Any]:
    """Held callers' turns, round robin over ``rooms`` rooms; room ``deaf`` is never answered
    once the service is broken (a session left deaf while the others answer)."""
    _turns["n"] += 1
    room = f"room-{_turns['n'] % rooms}"
    time.sleep(0.02)
    ok = service_ok() and not (room == deaf and _service["broken_once"])
    return {"ok": ok, "room": room, "stage": "ok" if ok else "no_agent"}


def break_once() -> None:
    _service["broken_once"] = True
    break_service()


def interrupt() -> None:
    raise KeyboardInterrupt


def fail_over(heal_s: float) -> None:
    """Break the service; it serves again ``heal_s`` later on its own, the fault still in
    place (a deployment that fails over)."""
    _service["down"], _service["heal_at"] = True, time.monotonic() + heal_s


def judged_at_start(took_s: float = 0.4) -> bool:
    """A call that reads the service when it starts and answers ``took_s`` later (a call
    begun before a fault that ends well)."""
    ok = service_ok()
    time.sleep(took_s)
    return ok


@pytest.fixture(autouse=True)
def fresh_service() -> Iterator[None]:
    _service.update(down=False, heal_at=None, calls=0, broken_once=False)
    yield
    sampling.cleanup_control()
    _service.update(down=False, heal_at=None)


# -- building experiments ---------------------------------------------------------------------
def _provider(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "python", "module": MODULE, "func": func, "arguments": arguments}


def probe(
    name: str, func: str, interval_s: Any, tolerance: Any = True, **kw: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"type": "probe", "name": name, "interval_s": interval_s,
                            "provider": _provider(func, **kw)}  # fmt: skip
    if tolerance is not None:
        spec["tolerance"] = tolerance
    return spec


def action(name: str, func: str, after_s: float = 0.0, **kw: Any) -> dict[str, Any]:
    act: dict[str, Any] = {"type": "action", "name": name, "provider": _provider(func, **kw)}
    if after_s:
        act["pauses"] = {"after": after_s}
    return act


def experiment(
    probes: list[dict[str, Any]],
    method: list[dict[str, Any]],
    rollbacks: list[dict[str, Any]] | None = None,
    hypothesis: list[dict[str, Any]] | None = None,
    **options: Any,
) -> dict[str, Any]:
    exp: dict[str, Any] = {
        "title": "sampling test", "description": "sampling test",
        "controls": [{"name": "sampling", "provider": {
            "type": "python", "module": "lkchaos.controls.sampling",
            "arguments": {"probes": probes, **options}}}],
        "method": method,
        "rollbacks": rollbacks or [],
    }  # fmt: skip
    if hypothesis:
        exp["steady-state-hypothesis"] = {"title": "ok", "probes": hypothesis}
    return exp


#: A method that changes nothing (an experiment needs at least one activity in its method).
NOOP = action("noop", "repair_service")


def section(journal: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = journal["lkchaos"]["sampling"]
    return result


def sampling_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("lkchaos-sampling-")]


def events(sec: dict[str, Any]) -> list[str]:
    return [m["event"] for m in sec["marks"]]


RECOVERED: dict[str, Any] = {
    "type": "probe", "name": "svc-recovered-within-2s",
    "tolerance": {"type": "range", "range": [0, 2], "target": "rto_s"},
    "provider": {"type": "python", "module": "lkchaos.controls.probes", "func": "recovery",
                 "arguments": {"probe": "svc", "wait_s": 3, "stable_s": 0.2}},
}  # fmt: skip


# -- a whole run ------------------------------------------------------------------------------
def test_run_records_series_marks_and_figures() -> None:
    exp = experiment(
        probes=[
            probe("svc", "service_ok", 0.05),
            probe("status", "service_status", 0.1, tolerance=None),
            probe("broken", "explode", 0.05),
        ],
        method=[action("break", "break_service", after_s=0.5),
                action("repair", "repair_service", warmup_s=0.5)],  # fmt: skip
        rollbacks=[action("noop", "repair_service")],
        hypothesis=[RECOVERED],
        # "broken" is judged on 3 samples or more before the fault: about 16 at rest, enough
        # on a machine whose cores other processes hold. It never settles: the whole tail.
        baseline_s=0.8, tail_s=1, settle_s=0.2,
    )  # fmt: skip
    ensure_experiment_is_valid(exp)
    journal = run_experiment(exp)

    # "broken" failed its every sample, those before the fault included: what it measured
    # says nothing of the fault, and the run fails for it (all else held).
    assert journal["status"] == "failed" and not journal["deviated"]
    assert sampling_threads() == []
    sec = section(journal)
    assert list(sec["not_steady_before_fault"]) == ["broken"]
    assert sec["probes"]["svc"]["figures"]["before_fault"]["ok"] >= 3
    marks = events(sec)
    for event in ("experiment_start", "sampling_start", "hypothesis_start", "method_start",
                  "activity_start", "activity_end", "method_end", "rollbacks_start",
                  "rollbacks_end", "experiment_end", "sampling_stop"):  # fmt: skip
        assert event in marks, event
    assert marks.index("method_start") < marks.index("method_end") < marks.index("rollbacks_start")
    acts = [(m["name"], m["phase"]) for m in sec["marks"] if m["event"] == "activity_end"]
    assert ("break", "method") in acts and ("repair", "method") in acts
    assert ("noop", "rollbacks") in acts and ("svc-recovered-within-2s", "before_method") in acts
    assert sec["fault"]["actions"] == ["break", "repair"]
    assert sec["fault"]["end_from"] == "last_action_end"

    svc = sec["probes"]["svc"]
    samples = svc["samples"]
    assert set(samples[0]) == {"t", "at", "ok", "latency_ms", "value"}
    assert any(not s["ok"] for s in samples) and samples[-1]["ok"]
    assert all(s["t"] <= b["t"] for s, b in zip(samples, samples[1:], strict=False))
    fig = svc["figures"]
    assert fig["recovered"] is True
    assert 0 <= fig["time_to_detect_s"] < 0.5
    assert 0.3 <= fig["rto_s"] <= 1.5  # the repair's warm-up is 0.5 s
    assert 0.7 <= fig["longest_outage_s"] <= 2.0  # 0.5 s pause + 0.5 s warm-up
    assert fig["availability_during_fault"] <= 0.2
    assert 0.2 < fig["availability"] < 1.0
    assert 0.03 <= fig["interval_median_s"] <= 0.15  # asked for 0.05 s
    assert fig["interval_p95_s"] >= fig["interval_median_s"]

    status = sec["probes"]["status"]
    assert status["tolerance"] is None
    assert status["samples"][0]["value"] == {"ok": True, "status": 200}
    assert any(s["value"] == {"ok": False, "status": 503} and not s["ok"]
               for s in status["samples"])  # fmt: skip

    broken = sec["probes"]["broken"]
    assert broken["figures"]["availability"] == 0.0
    assert broken["figures"]["recovered"] is False
    assert all(not s["ok"] and "probe exploded" in s["value"]["error"] for s in broken["samples"])

    after = journal["steady_states"]["after"]["probes"][0]
    assert after["tolerance_met"] is True
    assert after["output"]["fault_ended"] is True and after["output"]["settled"] is True
    before = journal["steady_states"]["before"]["probes"][0]["output"]
    assert before["fault_ended"] is False and before["rto_s"] == 0.0


def test_a_probe_failing_before_the_fault_fails_the_run_only_after_enough_samples() -> None:
    # A target with a wrong node port: "nodes-ready" failed from its first sample, and the
    # run was recorded as completed, with an RTO of the whole run and "did not recover".
    def run(baseline_s: float, interval_s: float = 0.05) -> dict[str, Any]:
        _service["down"] = True  # down before the run begins
        exp = experiment(
            probes=[probe("svc", "service_ok", interval_s), probe("other", "slow_ok", 0.05)],
            method=[action("repair", "repair_service", after_s=0.2)],
            baseline_s=baseline_s)  # fmt: skip
        return run_experiment(exp)

    journal = run(0.5)
    sec = section(journal)
    assert journal["status"] == "failed"
    assert set(sec["not_steady_before_fault"]) == {"svc"}
    before = sec["not_steady_before_fault"]["svc"]
    assert before["ok"] == 0 and before["samples"] >= 3
    assert sec["probes"]["other"]["figures"]["before_fault"]["ok"] >= 3
    # One failed sample before the fault (no baseline): a blip as the run starts, not a
    # verdict.
    _service["calls"] = 0
    journal = run(0.0, interval_s=2.0)
    assert section(journal)["probes"]["svc"]["figures"]["before_fault"]["samples"] < 3
    assert journal["status"] == "completed"
    assert "not_steady_before_fault" not in section(journal)


def test_recovery_tolerance_fails_when_recovery_is_too_slow() -> None:
    slow = deepcopy(RECOVERED)
    slow["tolerance"]["range"] = [0, 0.2]
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service"), action("repair", "repair_service",
                                                         warmup_s=0.8)],
        hypothesis=[slow],
    )  # fmt: skip
    journal = run_experiment(exp)
    assert journal["deviated"] is True
    output = journal["steady_states"]["after"]["probes"][0]["output"]
    assert output["recovered"] is True and 0.5 <= output["rto_s"] <= 2.0
    assert sampling_threads() == []


def test_method_window_and_fault_ending_at_rollbacks() -> None:
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service", after_s=0.3)],
        rollbacks=[action("repair", "repair_service", warmup_s=0.3)],
        start="method", fault_end="rollbacks", tail_s=2, settle_s=0.2,
    )  # fmt: skip
    journal = run_experiment(exp)
    sec = section(journal)
    marks = {m["event"]: m["t"] for m in sec["marks"]}
    assert sec["sampling_started_t"] >= marks["experiment_start"]
    assert "hypothesis_start" not in marks
    assert sec["fault"]["end_from"] == "rollbacks_start"
    assert sec["fault"]["end_t"] == pytest.approx(marks["rollbacks_start"], abs=0.001)
    fig = sec["probes"]["svc"]["figures"]
    assert fig["recovered"] is True and 0.15 <= fig["rto_s"] <= 1.5
    assert sampling_threads() == []


def test_stop_at_method_end() -> None:
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("wait", "repair_service", after_s=0.3)],
        rollbacks=[action("later", "repair_service", after_s=0.3)],
        stop="method",
    )  # fmt: skip
    sec = section(run_experiment(exp))
    stop_t = next(m["t"] for m in sec["marks"] if m["event"] == "sampling_stop")
    assert stop_t < next(m["t"] for m in sec["marks"] if m["event"] == "rollbacks_start")
    assert all(s["t"] <= stop_t for s in sec["probes"]["svc"]["samples"])
    assert sec["probes"]["svc"]["stopped_by"] == "stopped"


def test_back_to_back_sampling_and_bounds() -> None:
    exp = experiment(
        probes=[probe("voice-like", "slow_ok", 0, delay_s=0.05),
                probe("capped", "service_ok", 0, tolerance=None),
                probe("short", "service_ok", 0.1)],
        method=[action("wait", "repair_service", after_s=0.6)],
        max_samples=5, max_duration_s=0.3,
    )  # fmt: skip
    sec = section(run_experiment(exp))
    voice = sec["probes"]["voice-like"]
    assert 0.04 <= voice["figures"]["interval_median_s"] <= 0.2  # its own latency, no wait
    capped = sec["probes"]["capped"]
    assert len(capped["samples"]) == 5 and capped["stopped_by"] == "max_samples"
    short = sec["probes"]["short"]
    assert short["stopped_by"] == "max_duration"
    assert short["samples"][-1]["t"] - short["samples"][0]["t"] <= 0.4
    assert sampling_threads() == []


def test_a_back_to_back_probe_that_fails_at_once_waits_between_calls() -> None:
    # A caller whose join is refused at once must not be retried many times a second.
    exp = experiment(
        probes=[probe("svc", "service_ok", 0), probe("voice-like", "slow_ok", 0, delay_s=0.05)],
        method=[action("break", "break_service", after_s=1.5)],
        rollbacks=[action("repair", "repair_service")], max_duration_s=1.4, tail_s=0,
    )  # fmt: skip
    sec = section(run_experiment(exp))
    failed = [x for x in sec["probes"]["svc"]["samples"] if not x["ok"]]
    assert failed, sec["probes"]["svc"]["samples"]
    gaps = [b["t"] - a["t"] for a, b in zip(failed, failed[1:], strict=False)]
    assert all(gap >= sampler_module.FAILED_GAP_S - 0.05 for gap in gaps), gaps
    assert len(sec["probes"]["voice-like"]["samples"]) > 10  # ok samples stay back to back


def test_interrupted_run_still_journals_and_stops() -> None:
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service", after_s=0.2), action("stop", "interrupt")],
    )  # fmt: skip
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted"
    sec = section(journal)
    assert sec["probes"]["svc"]["samples"]
    assert "method_end" in events(sec)
    assert sampling_threads() == []


def test_no_tail_after_an_interrupt() -> None:
    # The service stays broken: a completed run would keep sampling for the whole 60 s tail.
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service", after_s=0.2), action("stop", "interrupt")],
        tail_s=60, settle_s=1,
    )  # fmt: skip
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted"
    sec = section(journal)
    end_t = next(m["t"] for m in sec["marks"] if m["event"] == "experiment_end")
    assert sec["stopped_t"] - end_t < 30, (end_t, sec["stopped_t"])
    assert sampling_threads() == []


def test_a_probe_stuck_past_the_join_timeout_is_reported_and_dropped() -> None:
    exp = experiment(
        probes=[probe("stuck", "slow_ok", 0, delay_s=0.8), probe("svc", "service_ok", 0.05)],
        method=[action("wait", "repair_service", after_s=0.1)],
        join_timeout_s=0.1,
    )  # fmt: skip
    sec = section(run_experiment(exp))
    assert sec["unfinished_threads"] == ["stuck"]
    assert sec["probes"]["stuck"]["stopped_by"] == "still running"
    assert sec["probes"]["stuck"]["samples"] == []
    for thread in sampling_threads():
        thread.join(2.0)
    assert sampling_threads() == []


def test_declaring_the_control_twice_interrupts_the_run() -> None:
    exp = experiment(probes=[probe("svc", "service_ok", 0.05)], method=[NOOP])
    second = deepcopy(exp["controls"][0])
    second["name"] = "sampling-again"
    second["provider"]["arguments"]["probes"][0]["name"] = "other"
    exp["controls"].append(second)
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted"
    assert "svc" in section(journal)["probes"]
    assert sampling_threads() == []


def test_dry_run_samples_nothing() -> None:
    exp = experiment(probes=[probe("svc", "service_ok", 0.05)], method=[NOOP])
    exp["dry"] = Dry.PROBES
    sec = section(run_experiment(exp))
    assert "dry run" in sec["note"] and sec["probes"]["svc"]["samples"] == []
    assert _service["calls"] == 0


def test_cleanup_stops_a_sampler_left_running() -> None:
    exp = experiment(probes=[probe("svc", "service_ok", 0.05)], method=[NOOP])
    arguments = exp["controls"][0]["provider"]["arguments"]
    sampling.before_experiment_control(exp, experiment=exp, configuration={}, **arguments)
    assert len(sampling_threads()) == 1
    assert recovery("svc")["samples"] >= 0
    sampling.cleanup_control()
    assert sampling_threads() == []
    with pytest.raises(ActivityFailed, match="no running sampling control"):
        recovery("svc")


# -- bad arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"probes": []}, "non-empty list"),
        ({"probes": None}, "non-empty list"),
        ({"colour": "red"}, "unknown arguments \\['colour'\\]"),
        ({"probes": [probe("svc", "service_ok", -1)]}, "interval_s must be a number >= 0"),
        ({"probes": [probe("svc", "service_ok", "fast")]}, "interval_s must be a number"),
        ({"probes": [{**probe("svc", "service_ok", 1), "every": 2}]}, "unknown keys"),
        ({"probes": [{**probe("svc", "service_ok", 1), "type": "action"}]}, "\"type\": \"probe\""),
        ({"probes": [probe("svc", "service_ok", 1), probe("svc", "service_ok", 1)]},
         "names must be unique"),
        ({"probes": [probe("svc", "no_such_function", 1)]}, "probes\\[0\\] \\('svc'\\)"),
        ({"probes": [probe("svc", "service_ok", 1, tolerance={"type": "range"})]}, "range"),
        ({"max_samples": 0}, "max_samples"),
        ({"max_duration_s": 0}, "max_duration_s must be a number > 0"),
        ({"start": "rollbacks"}, "start must be one of"),
        ({"fault_end": "never"}, "fault_end must be one of"),
        ({"fault_actions": ["nope"]}, "not actions of the method"),
    ],
)  # fmt: skip
def test_bad_arguments_fail_before_sampling(change: dict[str, Any], message: str) -> None:
    exp = experiment(probes=[probe("svc", "service_ok", 0.05)],
                     method=[action("break", "break_service")])  # fmt: skip
    exp["controls"][0]["provider"]["arguments"].update(change)
    arguments = exp["controls"][0]["provider"]["arguments"]
    with pytest.raises(InvalidControl, match=message):
        parse_options(arguments, method=exp["method"])
    if "fault_actions" not in change:
        with pytest.raises(InvalidControl, match=message):
            ensure_experiment_is_valid(exp)
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted"
    assert journal["run"] == []  # the method never ran
    assert "lkchaos sampling control" in section(journal)["error"]
    assert _service["calls"] == 0 and sampling_threads() == []


def test_placeholders_pass_validation_and_are_checked_once_substituted() -> None:
    exp = experiment(probes=[probe("svc", "service_ok", "${every}")], method=[NOOP])
    exp["configuration"] = {"every": 0.05}
    ensure_experiment_is_valid(exp)
    sec = section(run_experiment(exp))
    assert sec["probes"]["svc"]["interval_s"] == 0.05


def test_recovery_rejects_bad_arguments() -> None:
    with pytest.raises(ActivityFailed, match="wait_s"):
        recovery("svc", wait_s=-1)
    with pytest.raises(ActivityFailed, match="no running sampling control"):
        recovery("svc")


def _now_probe(**arguments: Any) -> dict[str, Any]:
    return {
        "type": "probe", "name": "svc-now",
        "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True},
        "provider": {"type": "python", "module": "lkchaos.controls.probes", "func": "sampled",
                     "arguments": {"probe": "svc", **arguments}},
    }  # fmt: skip


def test_sampled_judges_now_by_samples_that_end_after_it_was_called() -> None:
    exp = experiment(
        probes=[probe("svc", "slow_ok", 0, delay_s=0.3)], method=[NOOP],
        hypothesis=[_now_probe(count=2, timeout_s=5)],
    )  # fmt: skip
    journal = run_experiment(exp)
    assert journal["status"] == "completed" and not journal["deviated"]
    for phase in ("before", "after"):
        out = journal["steady_states"][phase]["probes"][0]["output"]
        assert out["ok"] and out["count"] == 2 and out["ok_samples"] == 2
        assert all(r["latency_s"] >= 0.3 for r in out["results"])


def test_sampled_stops_waiting_once_the_verdict_is_decided() -> None:
    exp = experiment(
        probes=[probe("svc", "slow_ok", 0, delay_s=0.3)], method=[NOOP],
        hypothesis=[_now_probe(count=5, min_ok=1, timeout_s=30)],
    )  # fmt: skip
    journal = run_experiment(exp)
    out = journal["steady_states"]["after"]["probes"][0]["output"]
    assert out["ok"] and out["count"] == 1 and out["ok_samples"] == 1


def test_sampled_deviates_when_the_samples_after_the_fault_fail() -> None:
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service", after_s=0.2)],
        hypothesis=[_now_probe(count=3, timeout_s=5)],
    )  # fmt: skip
    journal = run_experiment(exp)
    after = journal["steady_states"]["after"]["probes"][0]["output"]
    assert journal["deviated"] and after["ok_samples"] == 0 and after["count"] == 3


def test_sampled_counts_missing_samples_as_not_ok() -> None:
    exp = experiment(probes=[probe("svc", "slow_ok", 0, delay_s=0.3)], method=[NOOP])
    arguments = exp["controls"][0]["provider"]["arguments"]
    sampling.before_experiment_control(exp, experiment=exp, configuration={}, **arguments)
    out = sampled("svc", count=50, timeout_s=0.5)
    assert out["ok"] is False and 0 < out["count"] < 50 and out["waited_s"] >= 0.5


def test_a_result_that_reports_its_own_time_is_placed_then() -> None:
    exp = experiment(probes=[probe("svc", "past_event", 0.05, tolerance=None, ago_s=0.5)],
                     method=[action("wait", "slow_ok", delay_s=0.0, after_s=1.0)])  # fmt: skip
    samples = section(run_experiment(exp))["probes"]["svc"]["samples"]
    assert len(samples) >= 3
    assert [s["t"] for s in samples] == sorted(s["t"] for s in samples)
    assert all(s["latency_ms"] == pytest.approx(200.0, abs=1) for s in samples)  # its own length
    assert samples[0]["t"] < 0  # it happened before sampling started: placed then


def test_sampled_rejects_bad_arguments_and_a_sampler_not_sampling() -> None:
    with pytest.raises(ActivityFailed, match="count"):
        sampled("svc", count=0)
    with pytest.raises(ActivityFailed, match="min_ok"):
        sampled("svc", count=1, min_ok=2)
    with pytest.raises(ActivityFailed, match="no running sampling control"):
        sampled("svc")
    exp = experiment(probes=[probe("svc", "service_ok", 0.05)], method=[NOOP], start="method")
    arguments = exp["controls"][0]["provider"]["arguments"]
    sampling.before_experiment_control(exp, experiment=exp, configuration={}, **arguments)
    with pytest.raises(ActivityFailed, match="start to 'experiment'"):
        sampled("svc")


# -- figures on hand-made series --------------------------------------------------------------
def _series(*oks: bool, step: float = 1.0) -> list[dict[str, Any]]:
    return [{"t": i * step, "ok": ok, "latency_ms": 0.0} for i, ok in enumerate(oks)]


def test_figures_of_a_probe_that_never_failed() -> None:
    fig = derive(_series(True, True, True), Fault(0.5, 1.5, "last_action_end", ["a"]), 3.0)
    assert fig["time_to_detect_s"] is None and fig["rto_s"] == 0.0
    assert fig["longest_outage_s"] == 0.0 and fig["availability"] == 1.0
    assert fig["recovered"] is True and fig["recovered_at_t"] is None


def test_figures_of_an_outage_and_recovery() -> None:
    oks = (True, True, False, False, False, True, True, True)
    fig = derive(_series(*oks), Fault(1.5, 2.5, "last_action_end", ["a"]), 8.0)
    assert fig["time_to_detect_s"] == 0.5  # first failure observed at 2
    assert fig["rto_s"] == 2.5  # ok again at 5, fault ended at 2.5
    assert fig["longest_outage_s"] == 3.0  # 2 to 5
    assert fig["availability"] == 0.625 and fig["availability_during_fault"] == 0.0
    assert fig["interval_median_s"] == 1.0 and fig["interval_p95_s"] == 1.0


def test_time_to_detect_is_the_earliest_failure_observed_not_the_earliest_placed() -> None:
    # A held turn placed at its start (t=2) and known at its end (t=9); a session seen
    # overdue at t=4, placed there: the fault was detected at 4.
    samples = [{"t": 0.0, "ok": True, "latency_ms": 0.0},
               {"t": 2.0, "ok": False, "latency_ms": 7000.0},
               {"t": 4.0, "ok": False, "latency_ms": 0.0},
               {"t": 10.0, "ok": True, "latency_ms": 0.0}]  # fmt: skip
    fig = derive(samples, Fault(1.0, 6.0, "last_action_end", ["a"]), 12.0)
    assert fig["time_to_detect_s"] == 3.0


def test_figures_while_not_recovered_and_without_fault() -> None:
    fig = derive(_series(True, False, False), Fault(0.5, 1.0, "last_action_end", []), 6.0)
    assert fig["recovered"] is False and fig["rto_s"] == 5.0  # lower bound: now - fault end
    assert fig["longest_outage_s"] == 5.0
    empty = derive([], Fault(), 1.0)
    assert empty["availability"] is None and empty["rto_s"] is None
    assert empty["interval_median_s"] is None


def test_recovery_is_the_first_ok_known_after_the_last_failure_known() -> None:
    # Two held sessions; the fault ends at 20. Session A's turn due at 22 fails, known at 30;
    # session B answers at 24.5 and 27.5 meanwhile; A answers again at 32.5.
    samples = [{"t": 22.0, "ok": False, "latency_ms": 8000.0},
               {"t": 23.0, "ok": True, "latency_ms": 1500.0},
               {"t": 26.0, "ok": True, "latency_ms": 1500.0},
               {"t": 31.0, "ok": True, "latency_ms": 1500.0}]  # fmt: skip
    fault = Fault(10.0, 20.0, "last_action_end", ["a"])
    fig = derive(samples, fault, 40.0)
    assert fig["last_failure_t"] == 30.0 and fig["recovered_at_t"] == 32.5
    assert fig["rto_s"] == 12.5 and fig["longest_outage_s"] == 2.5
    assert settled(samples, fault, 0.0) and not settled(samples, fault, 5.0)


def test_a_call_begun_before_the_fault_is_no_evidence_of_recovery() -> None:
    # The only sample started at 6.36, before the fault (7.00-7.02), and ended well at 17.33
    # (joined before the fault, so untouched by it): nothing says the deployment is back.
    samples = [{"t": 6.36, "ok": True, "latency_ms": 10970.0}]
    fault = Fault(7.0, 7.02, "last_action_end", ["kill"])
    fig = derive(samples, fault, 30.0)
    assert fig["recovered"] is False and fig["rto_s"] == 22.98  # a lower bound
    assert not settled(samples, fault, 0.0)
    later = [*samples, {"t": 18.0, "ok": True, "latency_ms": 9000.0}]
    assert derive(later, fault, 30.0)["recovered"] is True
    assert derive(later, fault, 30.0)["rto_s"] == 0.0 and settled(later, fault, 0.0)


def test_fault_window_uses_action_calls_and_rollbacks() -> None:
    marks = [
        {"t": 1.0, "event": "activity_start", "phase": "method", "type": "action", "name": "a"},
        {"t": 3.0, "event": "activity_end", "phase": "method", "type": "action", "name": "a",
         "call_start_t": 1.1, "call_end_t": 1.2},
        {"t": 3.1, "event": "activity_start", "phase": "method", "type": "probe", "name": "p"},
        {"t": 5.0, "event": "rollbacks_start", "phase": "rollbacks"},
    ]  # fmt: skip
    assert fault_window(marks, "last_action", None) == Fault(1.1, 1.2, "last_action_end", ["a"])
    assert fault_window(marks, "rollbacks", None).end_t == 5.0
    assert fault_window(marks, "last_action", ["b"]) == Fault()
    assert fault_window(marks[:1], "last_action", None).end_t is None  # still running


def test_settled_needs_an_ok_sample_after_the_fault() -> None:
    fault = Fault(0.0, 2.0, "last_action_end", ["a"])
    assert not settled(_series(True, True), fault, 0.0)
    assert settled(_series(True, False, True, True), fault, 1.0)
    assert not settled(_series(True, False, True, True), fault, 1.5)
    assert settled([], Fault(), 5.0)


def test_summaries_stay_small() -> None:
    assert summarize({"ok": True, "stage": "ok", "timings_ms": {"join": 1}}) == {
        "ok": True, "stage": "ok"}  # fmt: skip
    assert summarize({"a": 1, "b": [1, 2]}, keys=["b"]) == {"b": {"len": 2}}
    assert summarize([1, 2, 3]) == {"len": 3}
    assert len(summarize("x" * 1000)) <= 160


def test_a_dotted_summary_key_keeps_one_value_from_inside_nested_dicts() -> None:
    call = {"ok": True, "media_path": {"publisher": {"path": "tcp", "remote": "x:7881"},
                                       "subscriber": {"path": None}}}  # fmt: skip
    kept = summarize(call, keys=["ok", "media_path.publisher.path", "media_path.subscriber.path"])
    assert kept == {"ok": True, "media_path.publisher.path": "tcp",
                    "media_path.subscriber.path": None}  # fmt: skip
    # A path that does not lead to a value is left out, as a missing key is; a dotted key
    # that is itself a key of the result is that key.
    assert summarize(call, keys=["media_path.publisher.port", "ok.x", "nope"]) == {}
    assert summarize({"a.b": 1, "a": {"b": 2}}, keys=["a.b"]) == {"a.b": 1}
    assert summarize(call, keys=["media_path"]) == {"media_path": {"len": 2}}


# -- mishearings are set apart ----------------------------------------------------------------
def _with_misheard(oks: tuple[bool, ...], misheard: set[int]) -> list[dict[str, Any]]:
    series = _series(*oks)
    for i in misheard:
        series[i]["misheard"] = True
    return series


def test_one_misheard_question_is_not_an_outage() -> None:
    oks = (True, True, True, False, True, True)
    fault = Fault(1.5, 2.5, "last_action_end", ["a"])
    fig = derive(_with_misheard(oks, {3}), fault, 6.0)
    assert fig["misheard"] == 1 and fig["misheard_set_apart"] == 1
    assert fig["failures"] == 0 and fig["availability"] == 1.0
    assert fig["rto_s"] == 0.0 and fig["time_to_detect_s"] is None
    assert fig["longest_outage_s"] == 0.0 and fig["samples"] == 6
    assert fig["interval_median_s"] == 1.0
    plain = derive(_series(*oks), fault, 6.0)  # the same failure, not misheard, counts
    assert plain["failures"] == 1 and plain["rto_s"] == 1.5


def test_a_misheard_question_does_not_stretch_the_recovery() -> None:
    oks = (True, False, False, True, False, True, True)
    fig = derive(_with_misheard(oks, {4}), Fault(0.5, 1.5, "last_action_end", ["a"]), 7.0)
    assert fig["rto_s"] == 1.5  # ok at 3; the misheard sample at 4 does not move it to 5
    assert fig["failures"] == 2 and fig["misheard_set_apart"] == 1


def test_mishearing_in_a_row_counts_as_an_outage() -> None:
    oks = (True, False, False, False, True)
    fig = derive(_with_misheard(oks, {1, 2, 3}), Fault(0.5, 1.0, "last_action_end", ["a"]), 5.0)
    assert fig["misheard"] == 3 and fig["misheard_set_apart"] == 0
    assert fig["failures"] == 3 and fig["longest_outage_s"] == 3.0


def test_an_ok_sample_is_never_set_apart() -> None:
    fig = derive(_with_misheard((True, True), {0}), Fault(), 2.0)
    assert fig["misheard"] == 0 and fig["misheard_set_apart"] == 0


def test_settled_ignores_a_lone_misheard_sample() -> None:
    fault = Fault(0.0, 1.0, "last_action_end", ["a"])
    assert settled(_with_misheard((True, True, True, False), {3}), fault, 0.5)
    assert not settled(_series(True, True, True, False), fault, 0.5)


def test_the_sampler_marks_misheard_results() -> None:
    from lkchaos.controls.sampler import _misheard

    assert _misheard({"ok": False, "stage": "misheard"})
    assert not _misheard({"ok": False, "stage": "wrong_reply"})
    assert not _misheard(False) and not _misheard(None)


def test_controls_declared_in_the_settings_too_mark_each_activity_once() -> None:
    # Chaos Toolkit calls the experiment's own controls at the hypothesis and activity levels
    # once per settings-level control (as with a game day, which declares three there).
    load_global_controls({"controls": {
        name: {"provider": {"type": "python", "module": "lkchaos.controls.progress"}}
        for name in ("first", "second", "third")}})  # fmt: skip
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("break", "break_service"), action("repair", "repair_service")],
        hypothesis=[{**RECOVERED, "name": "always", "tolerance": True,
                     "provider": _provider("service_ok")}],  # fmt: skip
    )
    journal = run_experiment(exp)
    assert journal["status"] == "completed"
    marks = [(m["event"], m.get("name")) for m in section(journal)["marks"]]
    assert marks.count(("hypothesis_start", None)) == 2  # before and after the method
    assert marks.count(("hypothesis_end", None)) == 2
    for name, runs in (("always", 2), ("break", 1), ("repair", 1)):
        assert marks.count(("activity_start", name)) == runs, marks
        assert marks.count(("activity_end", name)) == runs, marks


OK_FIELD = {"type": "jsonpath", "path": "$.ok", "expect": True}


def _sessions_probe(**arguments: Any) -> dict[str, Any]:
    return {
        "type": "probe", "name": "every-session-answered",
        "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": True},
        "provider": {"type": "python", "module": "lkchaos.controls.probes",
                     "func": "sessions_answered", "arguments": {"probe": "held", **arguments}},
    }  # fmt: skip


def _held_run(deaf: str, timeout_s: float = 1.5) -> dict[str, Any]:
    exp = experiment(
        probes=[{**probe("held", "held_turn", 0, tolerance=OK_FIELD, deaf=deaf),
                 "summary_keys": ["ok", "stage", "room"]}],
        method=[action("break", "break_once", after_s=0.3),
                action("repair", "repair_service", after_s=0.3)],
        hypothesis=[_sessions_probe(sessions=3, timeout_s=timeout_s)],
    )  # fmt: skip
    return run_experiment(exp)


def test_every_session_answered_after_the_fault_holds() -> None:
    journal = _held_run(deaf="")
    assert journal["status"] == "completed" and not journal["deviated"]
    after = journal["steady_states"]["after"]["probes"][0]["output"]
    assert after["ok"] and after["answered"] == 3 and after["unanswered"] == []
    assert set(after["sessions"]) == {"room-0", "room-1", "room-2"}
    assert after["since_t"] > 0  # judged from the fault's end, not the run's start


def test_one_session_never_answered_again_deviates_though_most_turns_pass() -> None:
    # The probe waits its whole timeout for room-1: long enough for the other two rooms to
    # take a turn each on a machine whose cores other processes hold (a turn every 0.02 s
    # at rest, round robin).
    journal = _held_run(deaf="room-1", timeout_s=3.0)
    assert journal["deviated"]
    after = journal["steady_states"]["after"]["probes"][0]["output"]
    assert after["ok"] is False and after["unanswered"] == ["room-1"]
    assert after["answered"] == 2 and after["sessions"]["room-1"]["answered"] == 0
    assert after["sessions"]["room-1"]["last"] == "no_agent"
    assert after["waited_s"] >= 3.0
    figures = section(journal)["probes"]["held"]["figures"]
    assert figures["availability"] > 0.5  # the series alone looks mostly healthy


def test_samples_without_the_session_key_say_how_to_keep_it() -> None:
    exp = experiment(probes=[probe("held", "held_turn", 0, tolerance=OK_FIELD)], method=[NOOP],
                     hypothesis=[_sessions_probe(timeout_s=0.5)])  # fmt: skip
    journal = run_experiment(exp)
    before = journal["steady_states"]["before"]["probes"][0]["output"]
    assert before["ok"] is False and before["sessions"] == {}
    assert "summary_keys" in before["note"] and "'room'" in before["note"]


def test_sessions_answered_rejects_bad_arguments() -> None:
    with pytest.raises(ActivityFailed, match="sessions"):
        sessions_answered("held", sessions=0)
    with pytest.raises(ActivityFailed, match="key"):
        sessions_answered("held", key="")
    with pytest.raises(ActivityFailed, match="timeout_s"):
        sessions_answered("held", timeout_s=0)
    with pytest.raises(ActivityFailed, match="no running sampling control"):
        sessions_answered("held")


def _failover_probe(**arguments: Any) -> dict[str, Any]:
    return {
        "type": "probe", "name": "answered-while-down", "tolerance": OK_FIELD,
        "provider": {"type": "python", "module": "lkchaos.controls.probes",
                     "func": "answered_during_fault", "arguments": {"probe": "svc", **arguments}},
    }  # fmt: skip


def _failover_run(fault: dict[str, Any], within_s: float, func: str = "service_ok",
                  **kw: Any) -> dict[str, Any]:  # fmt: skip
    exp = experiment(
        probes=[probe("svc", func, 0.05, **kw)],
        method=[action("hold", "repair_service"), fault, _failover_probe(within_s=within_s),
                action("back", "repair_service")],
        hypothesis=[RECOVERED],
    )  # fmt: skip
    return run_experiment(exp)


def _method_output(journal: dict[str, Any], name: str) -> dict[str, Any]:
    runs = [r for r in journal["run"] if r["activity"]["name"] == name]
    assert len(runs) == 1, journal["run"]
    output: dict[str, Any] = runs[0]["output"]
    return output


def test_answered_during_fault_when_the_deployment_fails_over() -> None:
    journal = _failover_run(action("kill", "fail_over", heal_s=0.3), within_s=3)
    out = _method_output(journal, "answered-while-down")
    assert out["ok"] is True and out["action"] == "kill"
    assert 0.25 <= out["answered_after_s"] < 1.5, out
    assert out["failed"] >= 1 and out["samples"] > out["failed"]
    assert out["last"]["ok"] is True


def test_not_answered_during_fault_although_recovered_once_undone() -> None:
    # A deployment that does not fail over: it serves again only once the method undoes the
    # fault, so recovery within its bound holds, and only this check tells.
    journal = _failover_run(action("kill", "break_service"), within_s=0.6)
    out = _method_output(journal, "answered-while-down")
    assert out["ok"] is False and out["answered_after_s"] is None
    assert out["samples"] == out["failed"] > 0 and out["last"]["ok"] is False
    assert 0.5 <= out["waited_s"] < 2.0
    after = journal["steady_states"]["after"]["probes"][0]
    assert after["tolerance_met"] is True  # recovered: what alone let it pass


def test_a_call_begun_before_the_fault_is_no_evidence_of_failover() -> None:
    # Each call reads the service when it starts and answers 0.4 s later: the one in flight
    # when the fault lands ends ok after it, and must not count.
    journal = _failover_run(action("kill", "break_service"), within_s=1.0,
                            func="judged_at_start", took_s=0.4)  # fmt: skip
    out = _method_output(journal, "answered-while-down")
    assert out["ok"] is False, out
    samples = section(journal)["probes"]["svc"]["samples"]
    kill_end = out["since_t"]
    assert any(s["ok"] and s["t"] < kill_end < s["t"] + s["latency_ms"] / 1000 for s in samples)


def test_an_answer_later_than_within_s_does_not_count_though_the_probe_runs_later() -> None:
    # The service fails over 0.6 s after the kill; the probe runs 1.2 s after it (a long
    # pause), but asks for an answer within 0.3 s.
    journal = _failover_run(action("kill", "fail_over", after_s=1.2, heal_s=0.6), within_s=0.3)
    out = _method_output(journal, "answered-while-down")
    assert out["ok"] is False and out["answered_after_s"] is None, out
    assert out["samples"] > out["failed"]  # ok samples came, too late


def test_a_failed_fault_action_is_not_judged() -> None:
    journal = _failover_run(action("kill", "explode"), within_s=1)
    probe = [r for r in journal["run"] if r["activity"]["name"] == "answered-while-down"]
    assert probe[0]["status"] == "failed"
    assert "did not succeed" in probe[0]["exception"][-1]


def test_answered_during_fault_judges_the_named_action() -> None:
    exp = experiment(
        probes=[probe("svc", "service_ok", 0.05)],
        method=[action("kill", "fail_over", heal_s=0.3), action("other", "slow_ok"),
                _failover_probe(within_s=2, action="kill")],
        rollbacks=[action("repair", "repair_service")],
    )  # fmt: skip
    journal = run_experiment(exp)
    out = _method_output(journal, "answered-while-down")
    assert out["action"] == "kill" and out["ok"] is True


def test_answered_during_fault_rejects_bad_arguments_and_a_misplaced_call() -> None:
    with pytest.raises(ActivityFailed, match="within_s"):
        answered_during_fault("svc", within_s=0)
    with pytest.raises(ActivityFailed, match="action"):
        answered_during_fault("svc", action="")
    with pytest.raises(ActivityFailed, match="no running sampling control"):
        answered_during_fault("svc")
    # in the steady state, before any method action: the run is refused before anything
    # runs, naming where it belongs
    from lkchaos.preflight.walk import collect

    exp = experiment(probes=[probe("svc", "service_ok", 0.05)], method=[NOOP],
                     hypothesis=[_failover_probe(within_s=1)], start="experiment")
    _, problems = collect(exp, {}, {})
    assert any("put it in the method, after that action" in str(p) for p in problems)
    journal = run_experiment(exp)
    assert journal["status"] == "interrupted" and journal["steady_states"]["before"] is None
    # reached all the same (the marks of a run with no method action ended): it says so
    from lkchaos.controls.probes import _fault_in_place

    with pytest.raises(ActivityFailed, match="put it in the method after that action"):
        _fault_in_place([{"event": "activity_end", "phase": "hypothesis", "type": "probe",
                          "name": "x", "t": 1.0}], None)  # fmt: skip


def _heard(ok: bool, t: float, misheard: bool = False) -> dict[str, Any]:
    sample: dict[str, Any] = {"t": t, "latency_ms": 100.0, "ok": ok, "value": {}}
    if misheard:
        sample["misheard"] = True
    return sample


def test_sampled_sets_a_lone_mishearing_apart_and_counts_two_in_a_row() -> None:
    from lkchaos.controls.probes import _judged

    lone = [_heard(True, 0), _heard(False, 1, misheard=True), _heard(True, 2), _heard(True, 3)]
    kept, apart = _judged(lone, since=0.0, count=2, final=False)
    assert [s["t"] for s in kept] == [0, 2] and apart == 1
    # two misheard in a row are a deployment that mishears: both count
    twice = [_heard(False, 0, misheard=True), _heard(False, 1, misheard=True), _heard(True, 2)]
    kept, apart = _judged(twice, since=0.0, count=2, final=False)
    assert [s["ok"] for s in kept] == [False, False] and apart == 0
    # the latest sample misheard waits for the next one, unless no more will come
    waiting = [_heard(True, 0), _heard(False, 1, misheard=True)]
    assert _judged(waiting, since=0.0, count=2, final=False) == ([waiting[0]], 0)
    assert _judged(waiting, since=0.0, count=2, final=True) == (waiting, 0)
    # a failure that is not a mishearing always counts; samples before `since` never do
    failed = [_heard(False, 0), _heard(False, 5), _heard(True, 6)]
    assert _judged(failed, since=4.0, count=3, final=True) == (failed[1:], 0)


def _turn(ok: bool, t: float, room: str, latency_ms: float = 100.0,
          stage: str | None = None) -> dict[str, Any]:  # fmt: skip
    """A held session's sample: a turn's verdict, or (stage ``overdue``) a late reply."""
    stage = stage or ("ok" if ok else "slow_reply")
    return {"t": t, "latency_ms": latency_ms, "ok": ok, "value": {"stage": stage, "room": room}}


def test_sampled_counts_a_late_reply_once_its_overdue_sample_gives_way_to_its_turn() -> None:
    from lkchaos.controls.probes import _judged

    # Room a's reply is late: overdue at 5 (known then), its turn placed at its question's
    # end (4) and known at 6.5, slow; room b answers at 7. One late reply, one failure.
    overdue = _turn(False, 5.0, "a", latency_ms=0.0, stage="overdue")
    late, answered = _turn(False, 4.0, "a", latency_ms=2500.0), _turn(True, 7.0, "b")
    samples = [late, overdue, answered]
    assert _judged(samples, since=3.0, count=2, final=False) == ([late, answered], 0)
    # Without the turn's verdict yet, the overdue sample waits for it; once no more samples
    # will come, it counts.
    pending = [overdue, answered]
    assert _judged(pending, since=3.0, count=2, final=False) == ([answered], 0)
    assert _judged(pending, since=3.0, count=2, final=True) == ([overdue, answered], 0)
    # Another room's verdict does not settle it; nor does one known before it.
    earlier = _turn(True, 1.0, "a", latency_ms=1000.0)
    assert _judged([earlier, overdue, answered], since=3.0, count=2, final=True) == (
        [overdue, answered], 0)


_scripted: queue.Queue[dict[str, Any]] = queue.Queue()


def scripted_turn() -> dict[str, Any]:
    """Held sessions' samples as the test hands them out (each placed at ``started_at``)."""
    item = _scripted.get(timeout=10)
    now = time.time()
    return {**item, "started_at": now - item.pop("question_ended_s_ago", 0.0), "ended_at": now}


def test_sampled_judges_one_late_reply_as_one_failure_in_a_run() -> None:
    # Through the sampling control: room a's reply is late (an overdue sample, then its
    # turn's verdict, slow, placed where its question ended), then room b is answered. One
    # of the two next samples must be ok: one late reply must not fail it twice.
    exp = experiment(probes=[probe("held", "scripted_turn", 0, tolerance=OK_FIELD)],
                     method=[NOOP])  # fmt: skip
    arguments = exp["controls"][0]["provider"]["arguments"]
    sampling.before_experiment_control(exp, experiment=exp, configuration={}, **arguments)
    result: dict[str, Any] = {}
    judging = threading.Thread(target=lambda: result.update(
        sampled("held", count=2, min_ok=1, timeout_s=10)))
    judging.start()
    time.sleep(0.3)  # every sample below ends after sampled() was called
    for item in ({"ok": False, "stage": "overdue", "room": "a"},
                 {"ok": False, "stage": "slow_reply", "room": "a", "question_ended_s_ago": 2.5},
                 {"ok": True, "stage": "ok", "room": "b"}):  # fmt: skip
        _scripted.put(item)
    judging.join(15)
    _scripted.put({"ok": True, "stage": "ok", "room": "b"})  # the sampler's call under way
    sampling.cleanup_control()
    assert sampling_threads() == []
    assert result["ok"], result
    assert [r["value"]["stage"] for r in result["results"]] == ["slow_reply", "ok"]
