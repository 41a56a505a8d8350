"""Settings for the whole test session."""

from __future__ import annotations

import signal

import pytest


def pytest_configure() -> None:
    # A shell running a command in the background without job control (`cmd &` in a script,
    # as CI runners and `nohup` do) starts it with SIGINT ignored, and an ignored signal stays
    # ignored across exec: every `chaos run` the tests start would then shrug off the Ctrl-C
    # that the interruption tests send. Restore Python's default so children get SIG_DFL.
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(autouse=True)
def _no_target_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's own ``LKCHAOS_TARGET`` must not change what the tests see; a test that
    needs one sets it itself."""
    monkeypatch.delenv("LKCHAOS_TARGET", raising=False)
