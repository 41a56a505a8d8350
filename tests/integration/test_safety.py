"""Interrupting an experiment mid-fault leaves nothing behind: Ctrl-C rolls back by itself,
and after SIGKILL of the runner, the next experiment is refused until `lkchaos recover` has
put everything back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lkchaos.safety import ledger, runlock
from lkchaos.safety.probes import baseline
from lkchaos.settings import Settings
from tests.integration.conftest import wait_baseline

ROOT = Path(__file__).resolve().parents[2]
CHAOS = str(Path(sys.executable).parent / "chaos")
LKCHAOS = str(Path(sys.executable).parent / "lkchaos")


def _action(name: str, func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": name, "provider": {
        "type": "python", "module": "lkchaos.docker.actions", "func": func,
        "arguments": arguments}}


def _experiment(path: Path) -> Path:
    experiment = {
        "version": "1.0.0",
        "title": "interrupted mid-fault",
        "description": "Two faults, then a long wait during which the runner is interrupted.",
        "controls": [{"name": "lkchaos-safety",
                      "provider": {"type": "python", "module": "lkchaos.safety.control"}}],
        "method": [
            _action("stop-mcp", "stop_service", service="mcp", timeout=2),
            {**_action("pause-whisper", "pause_service", service="whisper"),
             "pauses": {"after": 120}},
        ],
        "rollbacks": [
            _action("start-mcp", "start_service", service="mcp"),
            _action("unpause-whisper", "unpause_service", service="whisper"),
        ],
    }
    path.write_text(json.dumps(experiment))
    return path


def default_sigint() -> None:
    """In the child: Ctrl-C's default action. A shell starting this in the background (`&`)
    makes its children ignore SIGINT, and Python keeps an ignored SIGINT ignored."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(tmp_path: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [CHAOS, "--no-version-check", "run", "--journal-path", str(tmp_path / "journal.json"),
         str(_experiment(tmp_path / "experiment.json"))],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        preexec_fn=default_sigint,
    )


def _wait_for_faults(settings: Settings, count: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while len(ledger.pending(settings.state_dir)) < count:
        assert proc.poll() is None, "the experiment ended before injecting its faults"
        assert time.monotonic() < deadline, "the faults were never injected"
        time.sleep(0.2)
    time.sleep(1)  # the pause has begun


@pytest.fixture
def clean_stack(settings: Settings) -> Any:
    yield
    subprocess.run([LKCHAOS, "recover"], cwd=ROOT, timeout=180, check=False)


@pytest.mark.usefixtures("clean_stack")
def test_ctrl_c_mid_fault_rolls_everything_back(settings: Settings, tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_faults(settings, 2, proc)
    interrupted = time.monotonic()
    proc.send_signal(signal.SIGINT)
    # Ctrl-C pressed again while the faults are being undone (about 0.7 s here): refused, or
    # the rollbacks would stop half-way with the faults in effect.
    for pause_s in (0.1, 0.1):
        time.sleep(pause_s)
        proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    cleanup_s = time.monotonic() - interrupted
    journal = json.loads((tmp_path / "journal.json").read_text())
    assert journal["status"] == "interrupted"
    assert journal["lkchaos_safety"]["rollbacks_played_by_lkchaos"] == 2
    # At least one landed in the undo (two, unless the kernel merged them into one).
    assert journal["lkchaos_safety"]["interrupts_ignored"] >= 1
    assert ledger.pending(settings.state_dir) == []
    assert runlock.holder(settings.state_dir) is None
    state = wait_baseline()
    assert state["ok"], state
    print(f"cleanup after Ctrl-C: {cleanup_s:.2f} s")


@pytest.mark.usefixtures("clean_stack")
def test_sigkill_then_recover_restores_the_baseline(settings: Settings, tmp_path: Path) -> None:
    proc = _start(tmp_path)
    _wait_for_faults(settings, 2, proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    left = baseline()
    assert not left["ok"] and len(left["pending_faults"]) == 2, left
    # The next experiment would judge those faults, not its own: refused, nothing touched.
    again = subprocess.run(
        [CHAOS, "--no-version-check", "run", "--journal-path", str(tmp_path / "again.json"),
         str(_experiment(tmp_path / "again-experiment.json"))],
        cwd=ROOT, timeout=120, capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 1, again.stdout + again.stderr
    refused = json.loads((tmp_path / "again.json").read_text())["lkchaos_safety"]["refused"]
    assert "2 fault(s) of earlier runs are still in effect on this deployment" in refused
    assert "Run `lkchaos recover`" in refused
    assert len(ledger.pending(settings.state_dir)) == 2
    result = subprocess.run([LKCHAOS, "recover"], cwd=ROOT, timeout=180, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "stopped on mcp" in result.stdout and "paused on whisper" in result.stdout
    assert "baseline restored" in result.stdout
    assert baseline()["ok"]
    assert runlock.holder(settings.state_dir) is None
