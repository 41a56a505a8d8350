"""The fault ledger: a small JSON file in the stack's state folder, guarded by a file lock.

An entry says what was done and how to undo it: the undo is a function of an lkchaos
activity module and its arguments, so recovery needs nothing but the file. Each entry carries
the id of the run that made it (set by the safety control when an experiment starts, or
``LKCHAOS_RUN_ID`` in the environment), so the end of a run undoes that run's faults only.
An undo that fails stays in the ledger with its ``attempts`` and ``last_error``, for
``lkchaos recover`` to retry. Every entry recorded, forgotten or undone is also written to the
audit log (:mod:`lkchaos.safety.audit`).

Each entry also names the target file it was made on (``deployment``): an undo runs only
from a process working on that target, since on another it would act on the wrong
deployment's containers; ``lkchaos recover`` lists such entries with the command that undoes
them. :func:`pending` gives the faults of the target in use unless asked for every target's,
so a run on one deployment is neither refused nor warned by faults live on another that
shares the state folder.

Reading never rewrites the file. Writes replace it atomically and durably (a temporary file,
fsynced, renamed, the folder fsynced). A file that cannot be read (truncated, not a list) is
never emptied: it is kept as ``faults.json.corrupt-<time>``, an audit line and an error say
so, and :class:`LedgerDamaged` tells to run ``lkchaos recover``, whose sweeps still find what
lkchaos can leave behind.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import fcntl
import importlib
import json
import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lkchaos.errors import LkChaosError
from lkchaos.prometheus import marks
from lkchaos.safety import audit

logger = logging.getLogger("chaostoolkit")

UNDO_MODULE_PREFIX = "lkchaos."
RUN_ID_ENV = "LKCHAOS_RUN_ID"

_current_run: dict[str, str] = {}
#: The target file the last settings of this process were read for ("" for the built-in
#: defaults): :meth:`lkchaos.settings.Settings.load` notes it, every entry carries it.
_deployment: dict[str, str] = {"path": ""}


def note_deployment(path: str) -> None:
    """Say which target file the faults recorded from now on are made on."""
    _deployment["path"] = path


def current_deployment() -> str:
    return _deployment["path"]


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
    run_id: str = ""
    experiment: str = ""
    #: The target file the fault was made on ("" for the built-in defaults or an old entry).
    deployment: str = ""
    attempts: int = 0
    last_error: str = ""

    def describe(self) -> str:
        return f"{self.kind} on {self.target}"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def begin_run(title: str = "", run_id: str | None = None) -> str:
    """Start stamping recorded faults with a run id (a new one unless given); returns it."""
    run_id = run_id or uuid.uuid4().hex
    _current_run.clear()
    _current_run.update(run_id=run_id, experiment=title)
    return run_id


def end_run() -> None:
    _current_run.clear()


def current_run_id() -> str:
    """The run faults are recorded for: the experiment running, else ``LKCHAOS_RUN_ID``."""
    return _current_run.get("run_id") or os.environ.get(RUN_ID_ENV, "")


def ledger_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "faults.json"


class LedgerDamaged(LkChaosError):
    """The ledger file could not be read; it was kept aside, and a new ledger starts."""


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write(path: Path, entries: list[dict[str, Any]]) -> None:
    """Replace the ledger atomically and durably: a temporary file, fsynced, renamed over
    the ledger, and the folder fsynced so that the rename survives a crash."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(json.dumps(entries, indent=2) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    tmp.replace(path)
    _fsync_dir(path.parent)


def _set_aside(path: Path, reason: str) -> LedgerDamaged:
    """Keep a damaged ledger as ``faults.json.corrupt-<time>`` (never drop its entries), say
    so in the audit log and the log; returns the error to raise."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    kept = path.with_name(f"{path.name}.corrupt-{stamp}")
    count = 1
    while kept.exists():
        count += 1
        kept = path.with_name(f"{path.name}.corrupt-{stamp}-{count}")
    os.replace(path, kept)
    _fsync_dir(path.parent)
    message = (
        f"the fault ledger {path} is damaged ({reason}). It was kept as {kept}, untouched, "
        "and a new ledger is started: the faults it named cannot be undone from it. Run "
        "`lkchaos recover`, whose sweeps still remove lkchaos's toxics and disabled links, "
        "paused or stopped services, network rules, swapped certificates and resolver "
        f"changes; then read {kept} for anything else it names and undo that by hand."
    )
    audit.write(path.parent, {"kind": "ledger", "target": str(kept)}, "ledger set aside",
                message)  # fmt: skip
    logger.error(message)
    return LedgerDamaged(message)


def _load(path: Path) -> list[dict[str, Any]]:
    """The ledger's entries; a damaged file is set aside and :class:`LedgerDamaged` raised."""
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise _set_aside(path, f"not valid JSON: {exc}") from exc
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise _set_aside(path, "not a list of entries")
    return entries


@contextmanager
def _locked(path: Path, write: bool = True) -> Iterator[list[dict[str, Any]]]:
    """Read (and with ``write``, then replace) the ledger under an exclusive lock. A read
    never writes; a damaged file raises :class:`LedgerDamaged` after being kept aside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            entries = _load(path)
            yield entries
            if write:
                _write(path, entries)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def record(state_dir: str | Path, fault: Fault) -> Fault:
    """Write ``fault`` (stamped with the current run) before it is injected; returns it.

    The audit line is written first: if it cannot be, nothing is recorded and the caller,
    which records before acting, injects nothing.
    """
    if not fault.undo_module.startswith(UNDO_MODULE_PREFIX):
        raise LkChaosError(f"undo must be an lkchaos function, not {fault.undo_module}")
    if not fault.run_id:
        fault = dataclasses.replace(
            fault, run_id=current_run_id(), experiment=_current_run.get("experiment", "")
        )
    if not fault.deployment:
        fault = dataclasses.replace(fault, deployment=current_deployment())
    audit.write(state_dir, asdict(fault), "injected", strict=True)
    with _locked(ledger_path(state_dir)) as entries:
        entries.append(asdict(fault))
    marks.fault_started(asdict(fault))  # best effort, bounded: see lkchaos.prometheus.marks
    return fault


def withdraw(state_dir: str | Path, fault: Fault, why: str) -> None:
    """Remove ``fault`` (as :func:`record` returned it) when its injection is known to have
    changed nothing: the request that would have made it never reached the service, or the
    service refused it. Audited ``not injected`` with ``why``. An entry left for a fault
    that never was would be undone in vain, and refuse every later run on the target."""
    with _locked(ledger_path(state_dir)) as entries:
        gone = [e for e in entries if e.get("id") == fault.id]
        entries[:] = [e for e in entries if e.get("id") != fault.id]
    for entry in gone:
        audit.write(state_dir, entry, "not injected", why)
        marks.fault_ended(entry)


def _here(entry: dict[str, Any]) -> bool:
    """Whether an entry was made on the target this process works on (or says none)."""
    made_on = str(entry.get("deployment") or "")
    return not made_on or made_on == current_deployment()


def forget(state_dir: str | Path, kind: str, target: str) -> int:
    """Remove the entries for one fault (undone by a rollback) made on the target in use;
    returns how many."""
    with _locked(ledger_path(state_dir)) as entries:
        gone = [e for e in entries if e.get("kind") == kind and e.get("target") == target
                and _here(e)]  # fmt: skip
        entries[:] = [e for e in entries if e not in gone]
    for entry in gone:
        audit.write(state_dir, entry, "undone")
        marks.fault_ended(entry)
    return len(gone)


def pending(state_dir: str | Path, every_target: bool = False) -> list[Fault]:
    """The faults recorded on the target in use (its settings were the last this process
    loaded; an entry that names none counts as made here), or on every target with
    ``every_target``, oldest first. Reading never changes the file (a damaged one is kept
    aside and :class:`LedgerDamaged` raised, saying what to do)."""
    path = ledger_path(state_dir)
    if not path.is_file():
        return []
    with _locked(path, write=False) as entries:
        return [Fault.from_dict(e) for e in entries if every_target or _here(e)]


def _settle(state_dir: str | Path, fault_id: str, error: str | None) -> dict[str, Any] | None:
    """After an undo: drop the entry (``error`` None) or mark it failed; returns the entry as
    it was when still there (None if the undo function had already forgotten it)."""
    with _locked(ledger_path(state_dir)) as entries:
        for index, entry in enumerate(entries):
            if entry.get("id") != fault_id:
                continue
            if error is None:
                del entries[index]
            else:
                entry["attempts"] = int(entry.get("attempts") or 0) + 1
                entry["last_error"] = error
            return dict(entry)
    return None


def undo_all(
    state_dir: str | Path, configuration: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Undo recorded faults, newest first (those of ``run_id`` only, when given).

    Each result is ``{"fault", "id", "run_id", "outcome"}``; a failed undo adds ``"ok":
    False``, ``"attempts"`` and ``"error"``, and its entry stays in the ledger, marked.
    """
    secrets = audit.known_secrets(state_dir)
    results = []
    for fault in reversed(pending(state_dir, every_target=True)):
        if run_id is not None and fault.run_id != run_id:
            continue
        result: dict[str, Any] = {"fault": fault.describe(), "id": fault.id,
                                  "run_id": fault.run_id or None}
        if not _here(asdict(fault)):
            # Undoing it here would act on the wrong deployment's containers.
            result.update(outcome=f"left alone: made on the target {fault.deployment}; run "
                                  f"`lkchaos recover --target {fault.deployment}`", ok=False,
                          attempts=fault.attempts, error="another target")  # fmt: skip
            results.append(result)
            continue
        try:
            module = importlib.import_module(fault.undo_module)
            getattr(module, fault.undo_func)(**fault.undo_arguments, configuration=configuration)
        except Exception as exc:  # keep going: one failed undo must not block the others
            error = str(audit.scrub(f"{type(exc).__name__}: {exc}", secrets))
            entry = _settle(state_dir, fault.id, error)
            if entry is None:  # the undo function forgot it, then failed: keep it anyway
                entry = asdict(dataclasses.replace(
                    fault, attempts=fault.attempts + 1, last_error=error))
                with _locked(ledger_path(state_dir)) as entries:
                    entries.append(entry)
            attempts = int(entry["attempts"])
            audit.write(state_dir, entry, "undo failed", error)
            result.update(outcome=f"undo failed: {error}", ok=False, attempts=attempts,
                          error=error)
        else:
            entry = _settle(state_dir, fault.id, None)
            if entry is not None:  # the undo function did not forget it itself
                audit.write(state_dir, entry, "undone")
                marks.fault_ended(entry)
            result.update(outcome="undone", ok=True)
        results.append(result)
    return results
