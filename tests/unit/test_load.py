"""The load ramp's plan, figures and knee, and a ramp run against a real livekit-server
(``--dev`` on loopback) with no agent in it: the step breaks, the ramp stops at the knee,
and no participant is left behind."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lkchaos.cli import main
from lkchaos.errors import ConfigError
from lkchaos.history import open_history
from lkchaos.load import ramp, record, usage
from lkchaos.settings import Settings
from tests.unit.livekit_dev import KEY, SECRET, dev_server


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"steps": ()}, "steps must be whole numbers"),
        ({"steps": (5, 2)}, "steps must rise"),
        ({"steps": (2, 2)}, "steps must rise"),
        ({"steps": (0,)}, "steps must be whole numbers"),
        ({"steps": (250,)}, r"step 250 is over --max-callers \(200\): lower the steps or "
                            r"raise --max-callers \(up to 256\)"),
        ({"max_callers": 1000}, "max callers must be from 1 to 256"),
        ({"steps": (1000,)}, "over the 256 callers a ramp can hold"),
        ({"step_s": 1}, r"step_s \(--step-s\) must be from 5"),
        ({"p95_budget_s": 0}, r"p95_budget_s \(--p95-budget-s\) must be from 0.05"),
        ({"min_answered_pct": 101}, r"min_answered_pct \(--min-answered-pct\) must be from 0"),
        ({"transcribe_every": -1}, "transcribe_every"),
        ({"judge_cpu": -0.001}, r"judge_cpu \(--judge-cpu\) must be from 0 \(no limit\) to 1"),
        ({"judge_cpu": 2}, r"judge_cpu \(--judge-cpu\)"),
        ({"judge_cpu": True}, r"judge_cpu \(--judge-cpu\)"),
    ],
)
def test_a_plan_refuses_what_cannot_be_run(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ramp.Plan(**changes)


def test_steps_parse_from_the_command_line() -> None:
    assert ramp.parse_steps("1, 2,5") == (1, 2, 5)
    with pytest.raises(ConfigError, match="whole numbers separated by commas"):
        ramp.parse_steps("1,two")
    with pytest.raises(ConfigError, match="names no step"):
        ramp.parse_steps(" , ")


def _turn(ok: bool, latency: float | None, stage: str = "ok") -> dict[str, Any]:
    agent = {"stt_ms": latency * 500, "transcription_delay_ms": latency * 800,
             "e2e_ms": None} if latency is not None else {}  # fmt: skip
    return {"ok": ok, "latency_s": latency, "stage": stage if ok else stage, "agent_ms": agent}


def test_a_steps_figures_and_its_verdict() -> None:
    turns = [_turn(True, 0.5 + i / 100) for i in range(98)] + \
        [_turn(False, None, "no_reply"), _turn(False, 3.0, "wrong_reply")]
    summaries = [{"events": [{"event": "joined", "t": 1.2}, {"event": "agent_joined", "t": 2.0}],
                  "reconnects": 1},
                 {"events": [{"event": "joined", "t": 0.3}]}]  # fmt: skip
    step = ramp.step_figures(turns, summaries, callers=2, delays=[1.0, 0.0])
    assert step["connected"] == 2 and step["turns"] == 100 and step["answered"] == 98
    assert step["answered_pct"] == 98.0 and step["reconnects"] == 1
    assert step["latency_s"] == {"p50": 0.98, "p95": 1.43, "p99": 1.47}  # nearest rank
    assert step["join_s"]["p50"] == pytest.approx(0.2) and step["dispatch_s"]["p50"] == 0.8
    assert step["stages"] == {"ok": 98, "no_reply": 1, "wrong_reply": 1}
    # the agent's own timings, of the answered turns only
    assert step["agent_ms"]["stt_ms"] == {"p50": 490.0, "p95": 715.0}
    assert step["agent_ms"]["transcription_delay_ms"]["p50"] == pytest.approx(784.0)
    assert step["agent_ms"]["e2e_ms"] == {"p50": None, "p95": None}
    assert "transcript 784 ms after the end of speech, Whisper 490 ms" in ramp.line(
        {**step, "breaks": []})
    plan = ramp.Plan(steps=(2,), p95_budget_s=1.0, min_answered_pct=99.0)
    assert ramp.judge(step, plan) == ["98.0 % answered, under 99 %",
                                      "p95 1.43 s over the budget of 1 s"]
    assert ramp.judge(step, ramp.Plan(steps=(2,), p95_budget_s=2.0, min_answered_pct=95)) == []
    assert ramp.judge(ramp.step_figures([], [], 1, [0.0]), plan) == ["no turn finished"]


def test_container_usage_between_two_snapshots() -> None:
    def stats(total: int, system: int, memory: int) -> dict[str, Any]:
        return {"cpu_stats": {"cpu_usage": {"total_usage": total}, "system_cpu_usage": system,
                              "online_cpus": 2},
                "memory_stats": {"usage": memory, "stats": {"inactive_file": 2**20}}}  # fmt: skip

    first = {"agent": stats(1_000, 10_000, 0), "gone": stats(0, 0, 0)}
    second = {"agent": stats(3_000, 14_000, 101 * 2**20), "new": stats(0, 0, 0)}
    assert usage.usage(first, second) == {"agent": {"cpu_cores": 1.0, "memory_mib": 100.0}}


@pytest.fixture(scope="module")
def livekit(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with dev_server(tmp_path_factory.mktemp("livekit")) as url:
        yield url


def test_the_generators_cpu_is_read_before_the_deployments_statistics(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Reading the containers' statistics is the deployment's measurement, not the
    generator's work: the step's generator CPU ends with its calls, before that read."""
    order: list[str] = []

    class Backend:
        cpu = 0.0

        def start(self, options: Any) -> tuple[str, str]:
            return "c1", "room-1"

        def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
            return {"turns": [], "state": "ended"}

        def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
            order.append("calls ended")
            return {"state": "ended", "events": [{"event": "joined", "t": 0.1}]}

        def cpu_seconds(self) -> dict[str, float]:
            order.append("generator cpu")
            self.cpu += 2.0
            return {"media": self.cpu, "judging": 0.0}

    def usage(self: ramp.Ramp) -> dict[str, Any]:
        order.append("deployment statistics")
        return {}

    monkeypatch.setattr(ramp.Ramp, "_usage", usage)
    monkeypatch.setattr(ramp.Ramp, "_collect", lambda self, ids, measure_from, callers: [])
    settings = Settings(livekit_url="ws://127.0.0.1:9", livekit_node_urls=("http://127.0.0.1:9",),
                        livekit_api_key=KEY, livekit_api_secret=SECRET, voice_prober_url="",
                        prometheus_url="", agent_name="nobody")  # fmt: skip
    plan = ramp.Plan(steps=(1,), step_s=5, warmup_s=0)
    step = ramp.Ramp(settings, plan, lambda _text: None, Backend()).step(1)
    assert order == ["deployment statistics", "generator cpu", "calls ended", "generator cpu",
                     "deployment statistics"]
    assert step["generator"]["cpu_cores"]["media"] > 0  # 2 CPU seconds over the step's wall


def test_a_step_counts_the_turns_whose_verdict_waited_for_a_batch() -> None:
    """The Go callers judge a sampled turn once a batch of replies is transcribed: a turn that
    ended in the step but was judged after it still counts, once the backend has settled."""
    measure_from = time.time()

    class Backend:
        settled = 0.0

        def start(self, options: Any) -> tuple[str, str]:
            return "c1", "room-1"

        def turns(self, call_id: str, after: int, wait_s: float) -> dict[str, Any]:
            if not self.settled:  # held back for a batch till the step's end
                return {"turns": [], "state": "talking"}
            turns = [{"turn": 1, "ok": True, "ended_at": measure_from + 2.0},
                     {"turn": 2, "ok": True, "ended_at": measure_from + 60.0}]  # after it
            return {"turns": [t for t in turns if t["turn"] > after], "state": "talking"}

        def end(self, call_id: str, at_once: bool = False) -> dict[str, Any]:
            return {"state": "ended"}

        def settle(self, wait_s: float) -> None:
            self.settled = wait_s

    backend = Backend()
    settings = Settings(livekit_url="ws://127.0.0.1:9", livekit_node_urls=("http://127.0.0.1:9",),
                        livekit_api_key=KEY, livekit_api_secret=SECRET, voice_prober_url="",
                        prometheus_url="", agent_name="nobody")  # fmt: skip
    plan = ramp.Plan(steps=(1,), step_s=5, warmup_s=0)
    measured = ramp.Ramp(settings, plan, lambda _text: None, backend)._collect(
        ["c1"], measure_from, 1)
    assert backend.settled == ramp.SETTLE_S
    assert [t["turn"] for t in measured] == [1]


def test_a_ramp_without_an_agent_breaks_at_its_first_step_and_leaves_nothing(
    livekit: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    settings = Settings(livekit_url=livekit.replace("http", "ws"), livekit_node_urls=(livekit,),
                        livekit_api_key=KEY, livekit_api_secret=SECRET, voice_prober_url="",
                        prometheus_url="", agent_name="nobody")  # fmt: skip
    said: list[str] = []
    plan = ramp.Plan(steps=(1, 2), step_s=5, warmup_s=0, stagger_s=0.1)
    result = ramp.Ramp(settings, plan, said.append).run()
    assert [s["callers"] for s in result["steps"]] == [1] and result["knee"] == 1
    assert result["stopped_early"] and result["rooms"] == 1
    step = result["steps"][0]
    assert step["connected"] == 1 and step["breaks"]
    assert "no container statistics" in step["usage"]["note"]
    assert step["livekit"] == {"note": "no Prometheus URL: LiveKit's packet loss and jitter "
                                       "unknown"}  # fmt: skip
    assert result["leftover"] == {}
    assert said and said[-1].startswith("   1 callers: 1 connected") and "BREAKS" in said[-1]
    assert "Knee: 1 callers." in ramp.table(result)
    history = f"sqlite:///{tmp_path / 'history.sqlite'}"  # a real ramp's result is recorded
    open_history(history).close()
    load_id = record.record(result, "a dev server", history)
    [kept] = record.recent(history)
    assert kept["load_id"] == load_id and kept["knee"] == 1 and kept["held_callers"] is None
    assert kept["steps_measured"][0]["cpu_cores"] is None  # no engine: unknown, not zero
    assert record.result(load_id, history)["steps"][0]["breaks"] == step["breaks"]


def test_the_command_refuses_bad_steps_before_calling_anyone() -> None:
    done = CliRunner().invoke(main, ["load", "--steps", "4,2"])
    assert done.exit_code == 2 and "steps must rise" in done.output
    done = CliRunner().invoke(main, ["load", "--judge-cpu", "-1"])
    assert done.exit_code == 2 and "--judge-cpu" in done.output


def test_a_step_counts_the_samples_left_to_the_agents_report() -> None:
    turns = [{**_turn(True, 0.5), "checked_by": "audio"},
             {**_turn(True, 0.6), "checked_by": "agent", "sample": "over budget"},
             {**_turn(True, 0.7), "checked_by": "agent"}]  # fmt: skip
    step = ramp.step_figures(turns, [], 1, [0.0])
    assert step["checked_by"] == {"audio": 1, "agent": 2}
    assert step["samples_over_budget"] == 1


def test_an_outputs_missing_folders_are_made_before_the_ramp(tmp_path: Path) -> None:
    """As `validate --json`, `report -o` and `gameday run --junit` do."""
    from lkchaos.load.cli import _check_outputs

    _check_outputs(str(tmp_path / "ramps" / "2026" / "ramp.json"), None)
    assert (tmp_path / "ramps" / "2026").is_dir()


@pytest.mark.parametrize(("args", "says"), [
    (["--steps", "1,2", "--require", "50"], "the ramp's top step is 2 callers, so it could "
                                             "never show 50 held"),
    (["--steps", "1,2", "--require", "0"], "--require takes a number of callers >= 1"),
    (["--json", "{tmp}/notes.txt/ramp.json"], "its folder {tmp}/notes.txt cannot be made"),
    (["--markdown", "{tmp}"], "is a folder: give a file name"),
])  # fmt: skip
def test_a_gate_or_output_that_cannot_hold_is_refused_before_the_ramp(
    args: list[str], says: str, tmp_path: Path
) -> None:
    # A gate on more callers than the top step passed without holding them; an output path
    # that cannot be written failed only after the whole ramp.
    (tmp_path / "notes.txt").write_text("a file, where a folder would be made\n")
    done = CliRunner().invoke(main, ["load", *(a.format(tmp=tmp_path) for a in args)])
    assert done.exit_code == 2, done.output
    assert says.format(tmp=tmp_path) in done.output
