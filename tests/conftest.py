"""Settings for the whole test session."""

from __future__ import annotations

import os
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """With ``LKCHAOS_NO_SKIPS=1`` (CI sets it), a skipped test fails: a test that needs a
    built binary or an installed tool must find it there, never pass by not running."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("LKCHAOS_NO_SKIPS") == "1" and not hasattr(
            report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped where skips are not allowed (LKCHAOS_NO_SKIPS=1): {reason}"
