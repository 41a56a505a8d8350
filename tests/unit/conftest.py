"""Settings for the unit tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _no_fault_marks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Faults the unit tests record are never marked in a Pushgateway (the reference stack's
    may be running on this machine); a test of the marks sets its own."""
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", "")


@pytest.fixture(autouse=True)
def _no_deployment_from_an_earlier_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """The target the process last loaded settings for is process-wide (the fault ledger
    stamps entries with it): each test starts with none, as a fresh process does, rather than
    with whichever target an earlier test in the same worker selected."""
    from lkchaos.safety import ledger

    monkeypatch.setitem(ledger._deployment, "path", "")


@pytest.fixture(autouse=True)
def _state_of_its_own(monkeypatch: pytest.MonkeyPatch,
                      tmp_path_factory: pytest.TempPathFactory) -> None:  # fmt: skip
    """Each test's fault ledger, audit log, run lock and history live in a state folder of its
    own, never in the checkout's ``.lkchaos``: that one is the reference stack's, whose
    integration tests (run beside the unit tests by scripts/test.sh) check that nothing was
    injected there. A test that needs another folder sets ``LKCHAOS_STATE_DIR`` itself."""
    folder: Path = tmp_path_factory.mktemp("state")
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(folder))
