"""The preflight check's guards: activity kinds, integer arguments, secrets in messages and in
the configuration, experiment shapes, loss precision, signals, and the audit's --since."""

from __future__ import annotations

import json
import logging
import signal as signals
from pathlib import Path
from typing import Any

import pytest
from chaoslib.exceptions import ActivityFailed, InterruptExecution, InvalidActivity, InvalidControl
from chaoslib.experiment import ensure_experiment_is_valid
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lkchaos import preflight
from lkchaos.cli import main
from lkchaos.controls.options import parse_options
from lkchaos.docker import actions as docker_actions
from lkchaos.network import rules as network_rules
from lkchaos.settings import Settings

SECRET = "s3cr3t-value-'with\"quotes-0123456789"
MARK = "s3cr3t"  # a part of the secret that no message holds otherwise


def experiment(*method: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"title": "t", "description": "d", "method": list(method), **extra}


def activity(name: str, module: str, func: str, kind: str = "action",
             **arguments: Any) -> dict[str, Any]:  # fmt: skip
    return {"type": kind, "name": name, "provider": {
        "type": "python", "module": module, "func": func, "arguments": arguments}}


def sampling(*probes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "sampling", "provider": {"type": "python",
            "module": "lkchaos.controls.sampling", "arguments": {"probes": list(probes)}}}


# -- 1. a probe never calls an action, an action never calls a probe ---------------------------
def test_probes_and_actions_keep_to_their_kind() -> None:
    exp = experiment(
        activity("pause-as-probe", "lkchaos.docker.actions", "pause_service", "probe",
                 service="agent"),
        activity("health-as-action", "lkchaos.docker.probes", "service_health",
                 service="agent"),
        **{"steady-state-hypothesis": {"title": "h", "probes": [
            activity("restart-in-hypothesis", "lkchaos.docker.actions", "restart_service",
                     "probe", service="agent")]},
           "controls": [sampling({**activity("kill-every-second", "lkchaos.docker.actions",
                                             "kill_service", "probe", service="agent"),
                                  "interval_s": 1})]})  # fmt: skip
    problems = preflight.errors(preflight.check_experiment(exp, deployment=False))
    found = {(p.phase, p.activity): p.message for p in problems}
    assert set(found) == {("method", "pause-as-probe"), ("method", "health-as-action"),
                          ("hypothesis", "restart-in-hypothesis"),
                          ("control", "kill-every-second")}  # fmt: skip
    assert "is an action" in found[("control", "kill-every-second")]
    assert '"type": "action"' in found[("method", "pause-as-probe")]
    assert '"type": "probe"' in found[("method", "health-as-action")]


def test_the_sampling_control_alone_refuses_an_action_as_probe() -> None:
    probe = {**activity("kill", "lkchaos.docker.actions", "kill_service", "probe",
                        service="agent"), "interval_s": 1}  # fmt: skip
    with pytest.raises(InvalidControl, match="is an action"):
        parse_options({"probes": [probe]}, check_activities=False)
    exp = experiment(controls=[sampling(probe)])
    with pytest.raises(InvalidControl, match="is an action"):
        ensure_experiment_is_valid(exp)


# -- 2. integer arguments: what the preflight accepts, the activity accepts ------------------
class Reached(Exception):
    """The activity's own argument checks passed: it went on to load its settings."""


#: Every int argument, with the other arguments the activity needs.
INT_ARGUMENTS = [
    ("lkchaos.docker.actions", "stop_service", "timeout", {"service": "agent"}),
    ("lkchaos.docker.actions", "restart_service", "timeout", {"service": "agent"}),
    ("lkchaos.livekit.actions", "create_room", "empty_timeout", {"name": "r"}),
    ("lkchaos.livekit.actions", "create_room", "node", {"name": "r"}),
    ("lkchaos.livekit.actions", "delete_room", "node", {"name": "r"}),
    ("lkchaos.livekit.actions", "hold_participants", "count", {"room": "r"}),
    ("lkchaos.livekit.probes", "compare_room_state", "min_participants", {}),
    ("lkchaos.voice.probes", "voice_round_trips", "calls", {}),
    ("lkchaos.voice.probes", "voice_round_trips", "min_answered", {"calls": 3}),
    ("lkchaos.tls.probes", "hsts", "min_max_age", {"name": "lk.chaos.test"}),
    ("lkchaos.toxiproxy.probes", "link_latency", "samples", {"proxy": "agent_livekit"}),
]


@pytest.mark.parametrize(("module", "func", "name", "others"), INT_ARGUMENTS,
                         ids=lambda v: v if isinstance(v, str) else "")  # fmt: skip
@pytest.mark.parametrize("value", [2, 2.0, 2.5, True, -1], ids=repr)
def test_int_arguments_agree_with_the_activity(
    module: str, func: str, name: str, others: dict[str, Any], value: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    import importlib

    def reached(*args: Any, **kwargs: Any) -> Settings:
        raise Reached

    monkeypatch.setattr(Settings, "load", reached)
    arguments = {**others, name: value}
    accepted = preflight.check_call(module, func, arguments) == []
    activity_function = getattr(importlib.import_module(module), func)
    try:
        activity_function(**arguments)
        ran = True
    except Reached:
        ran = True
    except ActivityFailed:
        ran = False
    assert accepted == ran, (arguments, preflight.check_call(module, func, arguments))


def test_hold_and_release_are_checked() -> None:
    module = "lkchaos.livekit.actions"
    assert preflight.check_call(module, "hold_participants", {"room": "r", "count": 2}) == []
    for bad in ({"count": 21}, {"room": "-x"}, {"duration_s": 0}, {"duration_s": 7200}):
        args = {"room": "r", "count": 2, **bad}
        problems = preflight.check_call(module, "hold_participants", args)
        assert [p.argument for p in problems] == list(bad), problems
    problems = preflight.check_call(module, "release_participants", {"room": "a b"})
    assert [p.argument for p in problems] == ["room"]


# -- 3. Docker timeouts are ints -----------------------------------------------------------
def test_a_whole_float_timeout_goes_to_docker_as_an_int() -> None:
    assert docker_actions._check_timeout(10.0) == 10
    assert isinstance(docker_actions._check_timeout(10.0), int)
    with pytest.raises(ActivityFailed, match="whole number"):
        docker_actions._check_timeout(10.5)
    problems = preflight.check_call("lkchaos.docker.actions", "stop_service",
                                    {"service": "agent", "timeout": 10.5})  # fmt: skip
    assert [p.argument for p in problems] == ["timeout"]


# -- 4. secrets never in a message; never in the configuration --------------------------------
def _leaky() -> dict[str, Any]:
    return experiment(
        activity("kill", "lkchaos.docker.actions", "kill_service", service="${api_secret}"),
        secrets={"livekit": {"api_secret": {"type": "env", "key": "LIVEKIT_API_SECRET"}}})


def test_no_message_shows_the_secret(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    exp = _leaky()
    problems = preflight.check_experiment(exp, deployment=False)
    assert problems and all(SECRET not in str(p) and repr(SECRET)[1:-1] not in str(p)
                            for p in problems)  # fmt: skip
    with pytest.raises(InterruptExecution) as stopped:
        preflight.check_or_raise(exp, {}, {"livekit": {"api_secret": SECRET}})
    assert "service" in str(stopped.value) and MARK not in str(stopped.value)
    monkeypatch.setattr(preflight, "_experiment_being_validated", lambda: exp)
    with pytest.raises(InvalidActivity) as invalid:
        preflight.validate_for_toolkit({})
    assert "service" in str(invalid.value) and MARK not in str(invalid.value)
    path = tmp_path / "leaky.json"
    path.write_text(json.dumps(exp))
    done = CliRunner().invoke(main, ["check", "--offline", str(path)])
    assert done.exit_code == 2 and "service" in done.output
    assert MARK not in done.output


def test_the_settings_secret_is_scrubbed_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIVEKIT_API_SECRET", SECRET)
    exp = experiment(activity("slow", "lkchaos.toxiproxy.actions", "add_latency",
                              proxy="agent_mcp", latency_ms=SECRET))  # fmt: skip
    problems = preflight.check_experiment(exp, deployment=False)
    assert problems and all(MARK not in str(p) for p in problems)


@pytest.mark.parametrize("configuration", [
    {"livekit_api_secret": "x" * 12}, {"livekit_api_key": "APIabc"},
    {"livekit_api_secret": {"type": "env", "key": "LIVEKIT_API_SECRET"}},
    {"nested": {"my_api_secret": "x"}},
])  # fmt: skip
def test_secret_material_in_the_configuration_is_refused(configuration: dict[str, Any]) -> None:
    exp = experiment(configuration=configuration)
    problems = preflight.errors(preflight.check_experiment(exp, deployment=False))
    refused = [p for p in problems if "move it to secrets" in p.message]
    assert refused and all(p.argument and "secret" in p.message for p in refused)
    assert '{"type": "env", "key": "LIVEKIT_API_SECRET"}' in refused[0].message
    assert "x" * 12 not in str(problems)


def test_an_inline_secret_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("K", "APIkey")
    exp = experiment(secrets={"livekit": {"api_secret": SECRET,
                                          "api_key": {"type": "env", "key": "K"}}})
    problems = preflight.check_experiment(exp, deployment=False)
    assert [(p.level, p.argument) for p in problems] == [
        ("warning", "secrets.livekit.api_secret")]
    assert SECRET not in str(problems[0]) and "LIVEKIT_API_SECRET" in problems[0].message
    path = tmp_path / "inline.json"
    path.write_text(json.dumps(exp))
    done = CliRunner().invoke(main, ["check", "--offline", str(path)])
    assert done.exit_code == 0, done.output
    assert "warning: experiment, argument 'secrets.livekit.api_secret'" in done.output
    with caplog.at_level(logging.WARNING, logger="chaostoolkit"):
        preflight.check_or_raise(exp, {}, {"livekit": {"api_secret": SECRET}})
    assert "secrets.livekit.api_secret" in caplog.text and MARK not in caplog.text


# -- 5. experiments of the wrong shape: problems, never a traceback --------------------------
GOOD_ACTION = activity("recover", "lkchaos.safety.actions", "recover")
SHAPES: list[tuple[Any, str]] = [
    ({"foo": 1}, "title"),
    ({"title": "t", "description": "d"}, "method"),
    (experiment() | {"method": "notalist"}, "method: must be a list"),
    (experiment() | {"method": [1, "x", None]}, "method[0]"),
    (experiment(GOOD_ACTION, controls="x"), "controls: must be a list"),
    (experiment(GOOD_ACTION, controls=[{"name": "s", "provider": {
        "type": "python", "module": "lkchaos.controls.sampling",
        "arguments": {"probes": "x"}}}]), "non-empty list of probe definitions"),
    (experiment(GOOD_ACTION, controls=[sampling()]), "non-empty list"),
    (experiment(GOOD_ACTION, configuration=["a"]), "configuration: must be an object"),
    (experiment(GOOD_ACTION, secrets={"livekit": "str"}), "secrets.livekit"),
    (experiment(GOOD_ACTION, secrets=[1]), "secrets: must be an object"),
    (experiment(GOOD_ACTION, rollbacks={"a": 1}), "rollbacks: must be a list"),
    (experiment(GOOD_ACTION, **{"steady-state-hypothesis": []}), "steady-state-hypothesis"),
    (experiment(GOOD_ACTION, **{"steady-state-hypothesis": {"title": "h", "probes": 3}}),
     "probes: must be a list"),
    (experiment({"type": "action", "name": "x", "provider": "lkchaos"}), "provider must be"),
    (experiment({"type": "fault", "name": "x", "provider": {"type": "python",
                 "module": "lkchaos.safety.actions", "func": "recover"}}), "type must be"),
    (experiment(activity("x", "lkchaos.safety.actions", "recover") | {
        "provider": {"type": "python", "module": "lkchaos.safety.actions", "func": "recover",
                     "arguments": [1]}}), "arguments must be an object"),
    (experiment(GOOD_ACTION, controls=[1, {"name": "c"}]), "controls[0]"),
    (experiment(GOOD_ACTION, configuration={"x": {"type": "env"}}), "configuration.x"),
]  # fmt: skip


@pytest.mark.parametrize(("exp", "phrase"), SHAPES, ids=range(len(SHAPES)))
def test_a_wrong_shape_is_a_problem(exp: Any, phrase: str, tmp_path: Path) -> None:
    problems = preflight.check_experiment(exp, deployment=False)
    assert any(phrase in str(p) for p in preflight.errors(problems)), [str(p) for p in problems]
    path = tmp_path / "shape.json"
    path.write_text(json.dumps(exp))
    done = CliRunner().invoke(main, ["check", "--offline", str(path)])
    assert done.exit_code == 2 and "Traceback" not in done.output, done.output
    assert phrase in done.output


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.sampled_from(["lkchaos.controls.sampling", "lkchaos.docker.actions", "python", "probe",
                       "action", "kill_service", "${x}", "env"]),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
        st.sampled_from(["title", "description", "method", "rollbacks", "controls", "secrets",
                         "configuration", "steady-state-hypothesis", "probes", "provider",
                         "type", "name", "module", "func", "arguments", "livekit", "key",
                         "api_secret", "ref", "tolerance", "interval_s"]) | st.text(max_size=4),
        inner, max_size=6),
    max_leaves=30,
)  # fmt: skip
SKELETON = st.fixed_dictionaries({"title": JSON, "description": JSON, "method": JSON},
                                 optional={"controls": JSON, "secrets": JSON,
                                           "configuration": JSON, "rollbacks": JSON,
                                           "steady-state-hypothesis": JSON})  # fmt: skip


@settings(max_examples=200, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.one_of(JSON, SKELETON))
def test_any_json_is_checked_without_a_traceback(tmp_path: Path, document: Any) -> None:
    path = tmp_path / "any.json"
    path.write_text(json.dumps(document))
    done = CliRunner().invoke(main, ["check", "--offline", str(path)])
    assert done.exit_code in (0, 2), (done.output, done.exc_info)
    assert "Traceback" not in done.output and "could not be checked" not in done.output
    if isinstance(document, dict):
        preflight.check_experiment(document, deployment=False)  # raises nothing


# -- 6. a loss never rounds to nothing --------------------------------------------------------
def test_a_tiny_loss_is_refused_or_written_exactly() -> None:
    with pytest.raises(network_rules.RuleError, match="at least 0.0001"):
        network_rules.check_percent(0.00001)
    assert network_rules.check_percent(0) == 0.0
    assert network_rules.probability(network_rules.check_percent(0.0001)) == "0.000001"
    assert network_rules.probability(0.00015) == "0.0000015"
    assert network_rules.probability(20) == "0.2"


@given(st.floats(min_value=network_rules.MIN_LOSS_PERCENT, max_value=100))
def test_an_accepted_loss_has_a_probability_above_zero(percent: float) -> None:
    assert float(network_rules.probability(network_rules.check_percent(percent))) > 0


# -- 7. audit --since out of range --------------------------------------------------------------
@pytest.mark.parametrize("since", ["99999999999w", "1" + "0" * 400 + "s"])
def test_audit_since_out_of_range(since: str, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path))
    done = CliRunner().invoke(main, ["audit", "--since", since])
    assert done.exit_code == 2, done.output
    assert "--since" in done.output and "Traceback" not in done.output


# -- 8. signals lkchaos can verify and undo -----------------------------------------------------
def test_the_allowed_signals_are_the_ending_ones() -> None:
    allowed = {s.name for s in signals.Signals if s.name.startswith("SIG")
               and not s.name.startswith("SIG_")
               and _allowed(s.name)}  # fmt: skip
    assert allowed == set(docker_actions.ENDING)
    assert docker_actions._signal_name("term") == "SIGTERM"


def _allowed(name: str) -> bool:
    try:
        docker_actions._signal_name(name)
    except ActivityFailed:
        return False
    return True


@pytest.mark.parametrize("signal", ["SIGSTOP", "SIGCONT", "SIGHUP", "SIGUSR1", "SIGRTMIN",
                                    "SIGNOPE", 9])  # fmt: skip
@pytest.mark.parametrize(("module", "func", "others"), [
    ("lkchaos.docker.actions", "kill_service", {"service": "agent"}),
    ("lkchaos.redis.actions", "kill_primary", {}),
])  # fmt: skip
def test_other_signals_are_refused(signal: Any, module: str, func: str,
                                   others: dict[str, Any]) -> None:  # fmt: skip
    problems = preflight.check_call(module, func, {**others, "signal": signal})
    assert [p.argument for p in problems] == ["signal"]
    if isinstance(signal, str):
        assert "SIGKILL, SIGQUIT, SIGTERM" in problems[0].message
        assert "pause_service" in problems[0].message
