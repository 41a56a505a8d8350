"""Every activity is discoverable with the right kind, a docstring and typed arguments."""

from __future__ import annotations

import importlib

import pytest

import lkchaos
from lkchaos.discovery import ACTIVITY_MODULES


def test_public_api_is_pinned() -> None:
    assert lkchaos.__all__ == ["__version__", "discover"]


def test_discovery_lists_every_exported_function_once() -> None:
    activities = lkchaos.discover()["activities"]
    listed = {(a["mod"], a["name"]) for a in activities}
    assert len(listed) == len(activities)
    expected = {
        (module, name)
        for module, _ in ACTIVITY_MODULES
        for name in importlib.import_module(module).__all__
    }
    assert listed == expected


@pytest.mark.parametrize("activity", lkchaos.discover()["activities"], ids=lambda a: a["name"])
def test_activity_kind_doc_and_argument_types(activity: dict[str, object]) -> None:
    module = str(activity["mod"])
    assert activity["type"] == ("probe" if module.endswith(".probes") else "action")
    assert str(activity["doc"]).strip(), f"{activity['name']} has no docstring"
    for arg in activity["arguments"]:  # type: ignore[attr-defined]
        if arg["name"] in ("configuration", "secrets"):
            continue
        assert arg.get("type") not in (None, "object"), (
            f"{module}.{activity['name']}({arg['name']}) has no type Chaos Toolkit understands"
        )


#: Arguments without which the activity can only refuse to run: discovery must say so.
REQUIRED = [("lkchaos.prometheus.probes", "query", "expr"),
            ("lkchaos.prometheus.probes", "alert_state", "alertname"),
            ("lkchaos.prometheus.probes", "wait_for_alert", "alertname"),
            ("lkchaos.tls.actions", "swap_certificate", "kind")]


@pytest.mark.parametrize(("module", "func", "name"), REQUIRED)
def test_arguments_an_activity_cannot_do_without_are_required(
        module: str, func: str, name: str) -> None:  # fmt: skip
    [activity] = [a for a in lkchaos.discover()["activities"]
                  if a["mod"] == module and a["name"] == func]
    [arg] = [a for a in activity["arguments"] if a["name"] == name]
    assert "default" not in arg, arg
