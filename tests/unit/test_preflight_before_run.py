"""What Chaos Toolkit only finds out while an experiment runs is checked before it runs: a
pause it could not sleep ended a run in a traceback after its fault was injected; a target
that is not a path ended `chaos validate` in one; a misspelled lkchaos control was skipped
with a warning, the run going on without it; faults with no safety control anywhere."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from lkchaos import preflight
from lkchaos.cli import main

ROOT = Path(__file__).resolve().parents[2]
AGENT_CRASH = ROOT / "experiments" / "agent-crash.json"


def experiment(pauses: Any, configuration: dict[str, Any] | None = None) -> dict[str, Any]:
    """A one-action experiment (any provider: pauses apply to every activity)."""
    return {"version": "1.0.0", "title": "t", "description": "d",
            "configuration": configuration or {"fault_s": 8},
            "method": [{"type": "action", "name": "wait", "pauses": pauses,
                        "provider": {"type": "python", "module": "os", "func": "getcwd"}}]}


def problems(exp: dict[str, Any]) -> list[str]:
    return [str(p) for p in preflight.errors(preflight.check_experiment(exp, deployment=False))]


@pytest.mark.parametrize("pauses", [
    {"after": 0}, {"after": 8.5}, {"before": 1, "after": "${fault_s}"}, {"after": 86_400},
])  # fmt: skip
def test_a_pause_of_seconds_passes(pauses: dict[str, Any]) -> None:
    assert problems(experiment(pauses)) == []


@pytest.mark.parametrize(("pauses", "says"), [
    ({"after": -5}, "from 0 to 86400 (a day), not -5"),
    ({"after": 1e9}, "not 1000000000.0"),
    ({"after": float("nan")}, "not nan"),
    ({"before": float("inf")}, "not inf"),
    ({"after": "ten"}, "a number of seconds, or a ${name} of the configuration"),
    ({"after": True}, "not bool"),
    ({"after": "${faults_s}"}, "${faults_s} names no configuration key (the experiment's "
                               "configuration has: fault_s)"),
    ({"afterwards": 3}, "unknown pause: Chaos Toolkit has `before` and `after`"),
    ([8], "must be an object such as"),
])  # fmt: skip
def test_a_pause_that_cannot_be_slept_is_refused_naming_it(pauses: Any, says: str) -> None:
    [problem] = problems(experiment(pauses))
    assert problem.startswith("method activity 'wait', argument 'pauses")
    assert says in problem


@pytest.mark.parametrize(("value", "says"), [
    ("-5", "not -5.0 (configuration `fault_s`, from $LKCHAOS_FAULT_S)"),
    ("inf", "not inf (configuration `fault_s`, from $LKCHAOS_FAULT_S)"),
    ("1e9", "not 1000000000.0"),
])  # fmt: skip
def test_a_fault_window_from_the_environment_is_checked_and_named(
    value: str, says: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LKCHAOS_FAULT_S", value)
    found = problems(preflight.load_file(AGENT_CRASH))
    assert len(found) == 1 and says in found[0], found
    monkeypatch.setenv("LKCHAOS_FAULT_S", "8")
    assert problems(preflight.load_file(AGENT_CRASH)) == []


def test_text_from_the_environment_names_the_variable_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LKCHAOS_FAULT_S", "abc")
    # The unloadable key is reported where it is loaded, not again at each pause using it.
    [problem] = problems(preflight.load_file(AGENT_CRASH))
    assert problem.startswith("experiment, argument 'configuration.fault_s': cannot be loaded "
                              "from $LKCHAOS_FAULT_S ('abc'; fix or unset $LKCHAOS_FAULT_S)")


def test_an_env_value_without_its_type_is_text_and_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LKCHAOS_T_PAUSE", "8")
    exp = experiment({"after": "${fault_s}"},
                     {"fault_s": {"type": "env", "key": "LKCHAOS_T_PAUSE"}})  # fmt: skip
    [problem] = problems(exp)
    assert "is the text '8'" in problem and '"env_var_type": "float"' in problem
    assert "from $LKCHAOS_T_PAUSE" in problem


@pytest.mark.parametrize("target", [42, ["a.yaml"], {"path": "a.yaml"}, True])
def test_a_target_that_is_not_a_path_is_a_problem_not_a_traceback(
    target: Any, tmp_path: Path
) -> None:
    exp = copy.deepcopy(preflight.load_file(AGENT_CRASH))
    exp["configuration"]["lkchaos_target"] = target
    [problem] = problems(exp)
    assert "`lkchaos_target` must be the path of a target file" in problem
    assert f"not {type(target).__name__}" in problem
    path = tmp_path / "bad-target.json"
    path.write_text(json.dumps(exp))
    done = CliRunner().invoke(main, ["check", "--offline", str(path)])
    assert done.exit_code == 2, done.output
    assert "must be the path of a target file" in done.output
    assert "Traceback" not in done.output


def with_controls(controls: list[dict[str, Any]]) -> dict[str, Any]:
    exp = copy.deepcopy(preflight.load_file(AGENT_CRASH))
    exp["controls"] = controls
    return exp


def control(module: str) -> dict[str, Any]:
    return {"name": module, "provider": {"type": "python", "module": module}}


@pytest.mark.parametrize("module", ["lkchaos.safety.contrl", "lkchaos.controls.sampler",
                                    "lkchaos"])
def test_an_unknown_lkchaos_control_is_refused_with_the_known_ones(module: str) -> None:
    exp = with_controls([*preflight.load_file(AGENT_CRASH)["controls"], control(module)])
    [problem] = problems(exp)
    assert f"no lkchaos control module {module!r}" in problem
    assert "lkchaos.safety.control, lkchaos.controls.sampling" in problem


def test_faults_without_the_safety_control_are_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = tmp_path / "settings.yaml"
    monkeypatch.setattr(preflight, "TOOLKIT_SETTINGS", settings)
    shipped = preflight.load_file(AGENT_CRASH)["controls"]
    without = with_controls([c for c in shipped if c["name"] != "lkchaos-safety"])
    found = preflight.check_experiment(without, deployment=False)
    assert preflight.errors(found) == [] and len(found) == 1
    assert found[0].level == "warning"
    assert "no safety control (lkchaos.safety.control)" in str(found[0])
    # Declared once for every experiment in Chaos Toolkit's settings: nothing to warn of.
    settings.write_text("controls:\n  lkchaos-safety:\n    provider:\n      type: python\n"
                        "      module: lkchaos.safety.control\n")
    assert preflight.check_experiment(without, deployment=False) == []
    # A steady-state check injects nothing: no warning either.
    settings.unlink()
    assert preflight.check_experiment({**without, "method": []}, deployment=False) == []


def test_lkchaos_controls_in_chaos_toolkits_settings_are_checked_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Declared once for every experiment, a misspelt argument there would be ignored in
    every run: refused as in an experiment, naming the settings. Other controls are Chaos
    Toolkit's own."""
    from chaoslib.settings import loaded_settings

    settings = tmp_path / "settings.yaml"
    monkeypatch.setattr(preflight, "TOOLKIT_SETTINGS", settings)
    settings.write_text(
        "controls:\n"
        "  lkchaos-history:\n    provider:\n      type: python\n"
        "      module: lkchaos.controls.history\n      arguments: {ulr: 'sqlite:///h.db'}\n"
        "  lkchaos-progress:\n    provider: {type: python, module: lkchaos.controls.progres}\n"
        "  someone-elses:\n    provider:\n      type: python\n      module: chaosreliably.x\n"
        "      arguments: {anything: 1}\n")
    found = [str(p) for p in preflight.check_experiment(preflight.load_file(AGENT_CRASH),
                                                          deployment=False)]  # fmt: skip
    assert len(found) == 2, found
    assert (f"{settings}: controls.lkchaos-history.provider.arguments: unknown argument 'ulr' "
            "of lkchaos.controls.history: it takes url; did you mean 'url'?") in found[0]
    assert (f"{settings}: controls.lkchaos-progress: no lkchaos control module "
            "'lkchaos.controls.progres'") in found[1]
    done = CliRunner().invoke(main, ["check", "--offline", str(AGENT_CRASH)])
    assert done.exit_code == 2 and "did you mean 'url'?" in done.output, done.output
    # In a run, the settings `chaos` loaded (its --settings) are the ones checked.
    token = loaded_settings.set({"controls": {"h": {"provider": {
        "type": "python", "module": "lkchaos.controls.history", "arguments": {"uri": "x"}}}}})
    try:
        [problem] = preflight.check_experiment(preflight.load_file(AGENT_CRASH),
                                               deployment=False)  # fmt: skip
    finally:
        loaded_settings.reset(token)
    assert str(problem).endswith("Chaos Toolkit's settings: controls.h.provider.arguments: "
                                 "unknown argument 'uri' of lkchaos.controls.history: it takes "
                                 "url; did you mean 'url'?")
