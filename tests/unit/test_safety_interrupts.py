"""The safety control's SIGINT and SIGTERM handler: the first stops the run, later ones are
refused once the run is undoing its faults (a second Ctrl-C would abort the rollbacks)."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from lkchaos.safety import control


@pytest.fixture()
def run(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, object]]:
    """A run under way (its state; no lock or ledger behind it)."""
    monkeypatch.setattr(control, "_run", {"state_dir": "/nonexistent"})
    monkeypatch.setattr(control, "_lingering", {})
    monkeypatch.setattr(control.runlock, "release", lambda state_dir: None)
    monkeypatch.setattr(control.ledger, "end_run", lambda: None)
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


def test_after_an_interrupted_runs_undo_interrupts_are_refused_until_the_run_finishes(
    run: dict[str, object], monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    previous = signal.getsignal(signal.SIGINT)

    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not expected")

    signal.signal(signal.SIGINT, control._on_signal)
    run["previous_signals"] = {signal.SIGINT: mine}
    monkeypatch.setattr(control, "_lingering", {})
    monkeypatch.setattr(control, "_registries", {object()})  # a runner's event registry
    try:
        with pytest.raises(KeyboardInterrupt):
            control._on_signal(signal.SIGINT, None)
        control._undoing()
        control._finish()  # the faults are undone; other controls and the journal remain
        assert signal.getsignal(signal.SIGINT) is control._on_signal
        control._on_signal(signal.SIGINT, None)  # refused, not raised
        assert "writing the journal" in capfd.readouterr().err
        control._RuntimeSettings().finish({})  # Chaos Toolkit is done with the run
        assert signal.getsignal(signal.SIGINT) is mine
        assert control._lingering == {}
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_finished_run_that_was_not_interrupted_puts_the_handlers_back_at_once(
    run: dict[str, object], monkeypatch: pytest.MonkeyPatch
) -> None:
    previous = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, control._on_signal)
    run["previous_signals"] = {signal.SIGINT: signal.default_int_handler}
    monkeypatch.setattr(control, "_lingering", {})
    try:
        control._undoing()
        control._finish()
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert control._lingering == {}
    finally:
        signal.signal(signal.SIGINT, previous)
