"""probes/README.md and actions/README.md document every activity the extension exposes."""

from __future__ import annotations

from pathlib import Path

import pytest

import lkchaos

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("activity", lkchaos.discover()["activities"], ids=lambda a: a["name"])
def test_activity_is_in_the_catalogue(activity: dict[str, str]) -> None:
    page = ROOT / ("probes" if activity["type"] == "probe" else "actions") / "README.md"
    text = page.read_text()
    assert f"`{activity['mod']}" in text, f"{page.name} has no section for {activity['mod']}"
    assert f"`{activity['name']}(" in text, f"{activity['name']} is missing from {page}"
