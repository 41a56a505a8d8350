"""Activities for running real Chaos Toolkit experiments in unit tests (no network)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def append(path: str, line: str, configuration: dict[str, Any] | None = None) -> None:
    """An action (and rollback) that leaves a trace in a file."""
    with open(path, "a") as handle:
        handle.write(line + "\n")


def sigterm() -> None:
    """An action during which the runner is sent SIGTERM (a CI job cancelled, say)."""
    import os
    import signal
    import time

    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(1)  # the handler interrupts this sleep


def interrupt() -> None:
    """An action during which the user presses Ctrl-C."""
    raise KeyboardInterrupt


def lines(path: str) -> list[str]:
    file = Path(path)
    return file.read_text().splitlines() if file.is_file() else []


def experiment(trace: str, method: list[dict[str, Any]]) -> dict[str, Any]:
    def act(name: str, func: str, **arguments: Any) -> dict[str, Any]:
        return {"type": "action", "name": name, "provider": {
            "type": "python", "module": __name__, "func": func, "arguments": arguments}}

    return json.loads(json.dumps({
        "version": "1.0.0",
        "title": "safety test",
        "description": "unit test",
        "controls": [{"name": "lkchaos-safety",
                      "provider": {"type": "python", "module": "lkchaos.safety.control"}}],
        "method": [act("inject", "append", path=trace, line="fault"), *method],
        "rollbacks": [act("undo", "append", path=trace, line="rollback")],
    }))


def action(func: str, **arguments: Any) -> dict[str, Any]:
    return {"type": "action", "name": func, "provider": {
        "type": "python", "module": __name__, "func": func, "arguments": arguments}}


def value(result: Any) -> Any:
    """A probe that returns ``result``."""
    return result


def broken(message: str) -> None:
    """An action that fails, as an lkchaos action does when it cannot verify its effect."""
    from chaoslib.exceptions import ActivityFailed

    raise ActivityFailed(message)


def record_fault(trace: str, target: str, undo: str = "append",
                 configuration: dict[str, Any] | None = None) -> None:  # fmt: skip
    """An action that records a fault in the ledger (as lkchaos actions do) and injects it."""
    from lkchaos.safety import ledger
    from lkchaos.settings import Settings

    ledger.record(Settings.load(configuration).state_dir, ledger.Fault(
        "marked", target, __name__, undo, {"path": trace, "line": f"undo {target}"}))
    append(trace, f"inject {target}")


def failing_undo(path: str, line: str, configuration: dict[str, Any] | None = None) -> None:
    """An undo that fails."""
    raise RuntimeError(f"cannot undo {line}")


def probe(name: str, func: str, tolerance: Any = None, **arguments: Any) -> dict[str, Any]:
    activity: dict[str, Any] = {"type": "probe", "name": name, "provider": {
        "type": "python", "module": __name__, "func": func, "arguments": arguments}}
    if tolerance is not None:
        activity["tolerance"] = tolerance
    return activity


def isolate(monkeypatch: Any, tmp_path: Path) -> Path:
    """A private state folder for one test; no Docker engine, Toxiproxy or Redis to reach.
    Returns the state folder."""
    state = tmp_path / "state"
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(state))
    monkeypatch.setenv("LKCHAOS_ROOT", str(tmp_path / "nowhere"))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    monkeypatch.setenv("LKCHAOS_TOXIPROXY_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("LKCHAOS_SENTINELS", "127.0.0.1:9")
    return state


def acquire_elsewhere(state_dir: Path) -> str:
    """What another process that tries to take the stack's run lock right now is told: the
    refusal, or "taken" (then released at once, as that process ends)."""
    import subprocess
    import sys

    code = ("import sys; from lkchaos.safety import runlock\n"
            "try:\n    runlock.acquire(sys.argv[1], 'an experiment')\nexcept runlock.LockHeld "
            "as exc:\n    print(exc)\nelse:\n    print('taken')")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code, str(state_dir)], capture_output=True,
                          text=True, timeout=60, check=True)  # fmt: skip
    return done.stdout.strip()


@contextlib.contextmanager
def held_elsewhere(state_dir: Path, title: str) -> Iterator[int]:
    """Another process holding the stack's run lock as a runner does during an experiment,
    for the ``with`` block; yields its pid."""
    import subprocess
    import sys

    code = ("import sys, time; from lkchaos.safety import runlock; "
            "runlock.acquire(sys.argv[1], sys.argv[2]); print('held', flush=True); "
            "time.sleep(60)")  # fmt: skip
    root = Path(__file__).resolve().parents[2]
    child = subprocess.Popen([sys.executable, "-c", code, str(state_dir), title], cwd=root,
                             stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        yield child.pid
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
