"""The safety control's SIGINT and SIGTERM handler: the first stops the run, later ones are
refused once the run is undoing its faults (a second Ctrl-C would abort the rollbacks)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from lkchaos.safety import control


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    monkeypatch.setattr(control, "_run", {"state_dir": "/nonexistent"})
    yield control._run


def test_the_first_interrupt_stops_the_run(run: dict[str, object]) -> None:
    with pytest.raises(KeyboardInterrupt):
        control._on_signal(signal.SIGINT, None)
    with pytest.raises(KeyboardInterrupt, match="signal 15"):
        run.clear()
        run["state_dir"] = "/nonexistent"
        control._on_signal(signal.SIGTERM, None)


def test_later_interrupts_while_undoing_are_refused_and_counted(
    run: dict[str, object], capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(KeyboardInterrupt):
        control._on_signal(signal.SIGINT, None)
    control._undoing()  # Chaos Toolkit's signal_exit, its rollbacks, or the safety's undo
    control._on_signal(signal.SIGINT, None)
    control._on_signal(signal.SIGTERM, None)
    assert run["interrupts_ignored"] == 2
    err = capfd.readouterr().err
    assert "SIGINT ignored: undoing this run's faults" in err
    assert "SIGTERM ignored" in err and "lkchaos recover" in err


def test_an_interrupt_soon_after_the_first_is_refused_before_the_undo_starts(
    run: dict[str, object], capfd: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(KeyboardInterrupt):
        control._on_signal(signal.SIGINT, None)
    control._on_signal(signal.SIGINT, None)  # the runner is still unwinding to its rollbacks
    assert run["interrupts_ignored"] == 1


def test_an_unheeded_interrupt_lets_the_next_one_stop_the_run(
    run: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(KeyboardInterrupt):
        control._on_signal(signal.SIGINT, None)
    run["interrupted_at"] = float(run["interrupted_at"]) - control.INTERRUPT_GRACE_S - 1  # type: ignore[arg-type]
    with pytest.raises(KeyboardInterrupt):
        control._on_signal(signal.SIGINT, None)


def test_a_first_interrupt_during_the_rollbacks_of_a_finished_run_is_refused(
    run: dict[str, object],
) -> None:
    control._undoing()
    control._on_signal(signal.SIGINT, None)
    assert run["interrupts_ignored"] == 1


def test_undoing_outside_a_run_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(control, "_run", {})
    control._undoing()
    assert control._run == {}
