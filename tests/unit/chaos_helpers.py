"""Activities for running real Chaos Toolkit experiments in unit tests (no network)."""

from __future__ import annotations

import json
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
