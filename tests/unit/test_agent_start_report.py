"""The reference agent's report of a start that hangs (stack/voice/voicestack/start_report.py):
no registration with LiveKit after a while, and the log says where each thread is."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import pytest
from voicestack.start_report import report_if_unregistered


def test_an_agent_not_registered_in_time_logs_where_each_thread_is(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="voicestack.agent")
    blocked = threading.Event()
    hung = threading.Thread(target=blocked.wait, name="hung-start", daemon=True)
    hung.start()
    try:
        report_if_unregistered(tmp_path / "registered", after_s=0.05).join(5)
    finally:
        blocked.set()
    assert "has not registered with LiveKit 0 s after start-up" in caplog.text
    dump = capfd.readouterr().err
    # faulthandler's dump: every thread, the waiting one in threading's wait
    assert "Thread 0x" in dump and "in wait" in dump, dump


def test_a_registered_agent_reports_nothing(
    tmp_path: Path, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    ready = tmp_path / "registered"
    ready.write_text("AW_test\n")
    report_if_unregistered(ready, after_s=0.05).join(5)
    assert "has not registered" not in caplog.text
    assert "Thread 0x" not in capfd.readouterr().err
