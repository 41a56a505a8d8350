"""Every experiment in experiments/ passes Chaos Toolkit's own validation.

Validation imports each activity's module and binds the declared arguments to the function's
signature, so a renamed function or argument fails here, not in the middle of a game day.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chaoslib.exceptions import InvalidActivity
from chaoslib.experiment import ensure_experiment_is_valid
from chaoslib.loader import load_experiment

EXPERIMENTS = sorted((Path(__file__).resolve().parents[2] / "experiments").glob("*.json"))


def test_there_are_experiments() -> None:
    assert EXPERIMENTS, "experiments/ holds no experiment"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_is_valid(path: Path) -> None:
    experiment = load_experiment(str(path))
    ensure_experiment_is_valid(experiment)
    assert len(experiment["description"]) > 80, "say what it shows and what a deviation means"


def test_a_misspelt_function_is_caught(tmp_path: Path) -> None:
    experiment = json.loads(EXPERIMENTS[0].read_text())
    probes = experiment["steady-state-hypothesis"]["probes"]
    probes[0]["provider"]["func"] = "no_such_probe"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(experiment))
    with pytest.raises(InvalidActivity, match="no_such_probe"):
        ensure_experiment_is_valid(load_experiment(str(path)))


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_experiment_declares_the_safety_control(path: Path) -> None:
    controls = json.loads(path.read_text()).get("controls", [])
    modules = [c.get("provider", {}).get("module") for c in controls]
    assert "lkchaos.safety.control" in modules, "rollbacks must run whatever the outcome"
