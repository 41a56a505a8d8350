"""The fault ledger: a small JSON file in the stack's state folder, guarded by a file lock.

An entry says what was done and how to undo it: the undo is a function of an lkchaos
activity module and its arguments, so recovery needs nothing but the file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import importlib
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lkchaos.errors import LkChaosError

UNDO_MODULE_PREFIX = "lkchaos."


@dataclass(frozen=True)
class Fault:
    """One injected fault and how to undo it."""

    kind: str
    target: str
    undo_module: str
    undo_func: str
    undo_arguments: dict[str, Any] = field(default_factory=dict)
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat())
    pid: int = field(default_factory=os.getpid)

    def describe(self) -> str:
        return f"{self.kind} on {self.target}"


def ledger_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "faults.json"


@contextmanager
def _locked(path: Path) -> Iterator[list[dict[str, Any]]]:
    """Read-modify-write the ledger under an exclusive lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            try:
                entries = json.loads(path.read_text()) if path.is_file() else []
            except ValueError:
                entries = []  # a torn write; recovery sweeps anyway
            if not isinstance(entries, list):
                entries = []
            yield entries
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(entries, indent=2) + "\n")
            tmp.replace(path)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(state_dir: str | Path, fault: Fault) -> Fault:
    if not fault.undo_module.startswith(UNDO_MODULE_PREFIX):
        raise LkChaosError(f"undo must be an lkchaos function, not {fault.undo_module}")
    with _locked(ledger_path(state_dir)) as entries:
        entries.append(asdict(fault))
    return fault


def forget(state_dir: str | Path, kind: str, target: str) -> int:
    """Remove the entries for one fault (undone by a rollback); returns how many."""
    with _locked(ledger_path(state_dir)) as entries:
        keep = [e for e in entries if not (e.get("kind") == kind and e.get("target") == target)]
        removed = len(entries) - len(keep)
        entries[:] = keep
    return removed


def pending(state_dir: str | Path) -> list[Fault]:
    path = ledger_path(state_dir)
    if not path.is_file():
        return []
    with _locked(path) as entries:
        return [Fault(**e) for e in entries]


def undo_all(
    state_dir: str | Path, configuration: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Undo every recorded fault, newest first; each result says what happened."""
    results = []
    for fault in reversed(pending(state_dir)):
        try:
            module = importlib.import_module(fault.undo_module)
            getattr(module, fault.undo_func)(**fault.undo_arguments, configuration=configuration)
            outcome = "undone"
        except Exception as exc:  # keep going: one failed undo must not block the others
            outcome = f"undo failed: {type(exc).__name__}: {exc}"
        forget(state_dir, fault.kind, fault.target)
        results.append({"fault": fault.describe(), "id": fault.id, "outcome": outcome})
    return results
