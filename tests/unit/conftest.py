"""Settings for the unit tests."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_fault_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults the unit tests record are never marked in a Pushgateway (the reference stack's
    may be running on this machine); a test of the marks sets its own."""
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", "")
