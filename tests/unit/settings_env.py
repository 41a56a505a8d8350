"""A clean environment for tests of how settings are chosen: no lkchaos or LiveKit variable
from the machine (nor the named others), and a state folder of the test's own."""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def clean_settings_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                       also: tuple[str, ...] = ()) -> Path:  # fmt: skip
    """Unset every ``LKCHAOS_*`` and ``LIVEKIT_*`` variable and those of ``also``, make
    ``tmp_path/state`` the state folder and ``tmp_path`` the current folder; returns the state
    folder."""
    for name in list(os.environ):
        if name.startswith(("LKCHAOS_", "LIVEKIT_")) or name in also:
            monkeypatch.delenv(name)
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(state))
    monkeypatch.chdir(tmp_path)
    return state
