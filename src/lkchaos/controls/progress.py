"""A Chaos Toolkit control that reports a run's progress as JSON lines, for a live display.

``lkchaos gameday run`` declares it (at settings level) and tails the file. It appends one
JSON object per line to the file named by ``$LKCHAOS_PROGRESS_FILE``, and does nothing when
that variable is unset. It never fails or changes the run: a line that cannot be written is
dropped. Lines (``t`` is the Unix time in seconds)::

    {"t": ..., "event": "experiment", "edge": "start", "title": "..."}
    {"t": ..., "event": "phase", "edge": "start", "phase": "steady-state-before"}
        # phases: steady-state-before, method, rollbacks, steady-state-after
    {"t": ..., "event": "activity", "edge": "start", "name": "kill-agent",
     "type": "action", "module": "lkchaos.docker.actions", "phase": "method"}
    {"t": ..., "event": "activity", "edge": "end", "name": ..., "type": ..., "module": ...,
     "phase": ..., "status": "succeeded", "result": "short text"}   # or "error": "..."
    {"t": ..., "event": "experiment", "edge": "end", "status": "completed", "deviated": false}

Declare it in Chaos Toolkit's settings::

    controls:
      lkchaos-progress:
        provider: {type: python, module: lkchaos.controls.progress}

Chaos Toolkit (chaoslib 1.44) gives a control declared only in the settings no method or
rollback hooks when the experiment declares controls of its own (at those two levels it
applies the experiment's alone), so the method and the rollbacks are also told from each
activity: one of the experiment's ``method`` starts the method, one of its ``rollbacks``
the rollbacks.
"""

from __future__ import annotations

import json
import os
import re
import time
from typing import Any

ENV = "LKCHAOS_PROGRESS_FILE"
#: Longest result or error text kept in a line, in characters.
SHORT = 160

_state: dict[str, Any] = {"phase": "", "method_done": False, "experiment": None}


def _emit(event: str, **fields: Any) -> None:
    path = os.environ.get(ENV)
    if not path:
        return
    line = json.dumps({"t": round(time.time(), 3), "event": event, **fields}, default=str)
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(line + "\n")
    except OSError:
        pass  # progress is a courtesy: never fail the run for it


def short(value: Any, limit: int = SHORT) -> str:
    """``value`` as compact text of at most ``limit`` characters."""
    try:
        text = value if isinstance(value, str) else json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _phase(name: str, edge: str) -> None:
    if edge == "start":
        if _state["phase"] == name:
            return  # told already (by an activity, then by the level's own hook)
        _close_open_phase()
        _state["phase"] = name
    elif _state["phase"] != name:
        return  # ended already
    else:
        _state["phase"] = f"{name}:ended"
    _emit("phase", edge=edge, phase=name)


def _close_open_phase() -> None:
    """End the method or the rollbacks when the next phase starts without their own end."""
    if _state["phase"] in ("method", "rollbacks"):
        _emit("phase", edge="end", phase=_state["phase"])
        _state["phase"] = f"{_state['phase']}:ended"


def before_experiment_control(context: dict[str, Any], **kwargs: Any) -> None:
    _state.update(phase="", method_done=False, before_done=False, experiment=context)
    _emit("experiment", edge="start", title=str(context.get("title", "")))


def after_experiment_control(context: dict[str, Any], state: Any = None, **kwargs: Any) -> None:
    _close_open_phase()
    journal = state if isinstance(state, dict) else {}
    _emit("experiment", edge="end", status=journal.get("status"),
          deviated=bool(journal.get("deviated")))


def _part_of(activity: Any) -> str | None:
    """``method`` or ``rollbacks`` when ``activity`` is one of the experiment's, else None."""
    experiment = _state.get("experiment")
    if not isinstance(experiment, dict):
        return None
    for part in ("method", "rollbacks"):
        if any(activity is a for a in experiment.get(part) or []):
            return part
    return None


def _hypothesis_phase() -> str:
    """The steady state before the method, or after it: after once the method or the
    rollbacks ran, or once the one before ended (an experiment with no method runs its
    hypothesis twice with nothing between)."""
    after = _state["method_done"] or _state.get("before_done")
    return "steady-state-after" if after else "steady-state-before"


def before_hypothesis_control(context: Any, **kwargs: Any) -> None:
    _close_open_phase()
    _phase(_hypothesis_phase(), "start")


def after_hypothesis_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    met = state.get("steady_state_met") if isinstance(state, dict) else None
    phase = _hypothesis_phase()
    _emit("phase", edge="end", phase=phase, met=met)
    _state["phase"] = f"{phase}:ended"
    _state["before_done"] = True


def before_method_control(context: Any, **kwargs: Any) -> None:
    _phase("method", "start")


def after_method_control(context: Any, **kwargs: Any) -> None:
    _state["method_done"] = True
    _phase("method", "end")


def before_rollback_control(context: Any, **kwargs: Any) -> None:
    _state["method_done"] = True
    _phase("rollbacks", "start")


def after_rollback_control(context: Any, **kwargs: Any) -> None:
    _phase("rollbacks", "end")


def _describe(activity: Any) -> dict[str, Any]:
    activity = activity if isinstance(activity, dict) else {}
    provider = activity.get("provider") or {}
    return {"name": activity.get("name"), "type": activity.get("type"),
            "module": provider.get("module") or provider.get("path") or provider.get("url"),
            "phase": str(_state["phase"]).removesuffix(":ended")}


def before_activity_control(context: Any, **kwargs: Any) -> None:
    part = _part_of(context)
    if part is not None:
        _state["method_done"] = True
        _phase(part, "start")
    _emit("activity", edge="start", **_describe(context))


#: An exception's dotted class name before its message (``chaoslib.exceptions.ActivityFailed:
#: ``): Chaos Toolkit writes it once, and again when it wraps one activity error in another.
_EXCEPTION_NAME = re.compile(r"^(?:[A-Za-z_]\w*\.)+[A-Z]\w*: ")


def _message(line: str) -> str:
    """The exception line's message, without the class names before it."""
    while (found := _EXCEPTION_NAME.match(line)) is not None and found.end() < len(line):
        line = line[found.end():]
    return line


def after_activity_control(context: Any, state: Any = None, **kwargs: Any) -> None:
    run = state if isinstance(state, dict) else {}
    fields = _describe(context)
    fields["status"] = run.get("status")
    if run.get("status") == "failed":
        lines = [line.strip() for line in run.get("exception") or [] if str(line).strip()]
        fields["error"] = short(_message(lines[-1]) if lines else "failed")
    elif "output" in run:
        fields["result"] = short(run.get("output"))
    _emit("activity", edge="end", **fields)
