"""Run the checklist: every selected item in the document's order, with evidence.

- The check modules are every module of the package :mod:`lkchaos.validate.checks`, found
  with ``pkgutil`` and imported (:func:`load_checks`); each registers its checks with
  :func:`lkchaos.validate.model.check`.
- An item with a check runs it in a thread, at most ``workers`` at once; a check registered
  for several items runs once and its finding is each item's. Checks marked
  :func:`~lkchaos.validate.model.early` (seconds of shared work: media, a scan) start
  first; the others follow in the document's order, and the results are always in it.
  Those marked :func:`~lkchaos.validate.model.alone` (a latency measured, a publish through
  Ingress) run after all of them, one at a time.
  A check that has not returned ``grace_s`` after its ``timeout_s`` is ``error`` ("did not
  finish within N s") and is left behind; an exception in a check is ``error`` with its
  message, never a crash.
- An item without a check is ``manual``, with what a person must confirm
  (:mod:`lkchaos.validate.manual`). A parent item (one with children) without its own check
  takes the worst status of its selected children.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import json
import pkgutil
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from lkchaos.safety import audit
from lkchaos.settings import Settings
from lkchaos.validate import manual
from lkchaos.validate.model import CHECKS, STATUSES, Check, Context, Finding, Item, Status

CHECKS_PACKAGE = "lkchaos.validate.checks"
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_WORKERS = 8
#: Seconds a check may run past its ``timeout_s`` (its own calls' timeouts) before it is
#: given up on.
GRACE_S = 5.0
#: How a parent takes the worst of its children: later is worse.
SEVERITY: tuple[Status, ...] = ("n/a", "pass", "manual", "warn", "error", "fail")


@dataclasses.dataclass(frozen=True)
class ItemResult:
    """One item's outcome. ``automated``: a check ran for it (or for its children, for a
    parent); ``duration_s``: how long its check took (None when none ran)."""

    item: Item
    status: Status
    evidence: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)
    automated: bool = False
    duration_s: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self.item), "status": self.status,
                "evidence": self.evidence, "data": self.data, "automated": self.automated,
                "duration_s": self.duration_s}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Report:
    """A run's results in the document's order, when it ran, and the problems loading the
    check modules (a module that failed to import: its items fall back to manual)."""

    results: tuple[ItemResult, ...]
    started_at: dt.datetime
    ended_at: dt.datetime
    target: str = ""
    load_errors: tuple[str, ...] = ()

    @property
    def duration_s(self) -> float:
        return (self.ended_at - self.started_at).total_seconds()

    def counts(self) -> dict[str, int]:
        """How many items have each status (every status present, 0 included)."""
        counts: dict[str, int] = dict.fromkeys(STATUSES, 0)
        for result in self.results:
            counts[result.status] += 1
        return counts

    def failed(self) -> list[ItemResult]:
        return [r for r in self.results if r.status == "fail"]

    def exit_code(self) -> int:
        """0: every automated item passed, warned or does not apply; 1: an item failed or its
        check could not give an answer (``error``: the item is not shown to hold, so a gate
        must not open); 2: nothing could be checked (a check module failed to load, or every
        automated item is ``error``: the target is not reachable at all)."""
        automated = [r for r in self.results if r.automated]
        if self.load_errors or (automated and all(r.status == "error" for r in automated)):
            return 2
        if any(r.status in ("fail", "error") for r in self.results):
            return 1
        return 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(), "ended_at": self.ended_at.isoformat(),
            "duration_s": round(self.duration_s, 3), "target": self.target,
            "counts": self.counts(), "exit_code": self.exit_code(),
            "load_errors": list(self.load_errors),
            "items": [r.as_dict() for r in self.results],
        }  # fmt: skip


_loaded: list[str] = []
_load_lock = threading.Lock()


def load_checks() -> list[str]:
    """Import every module of :data:`CHECKS_PACKAGE` (once); the problems of those that
    failed to import, one line each (empty when all loaded)."""
    with _load_lock:
        if _loaded:
            return [line for line in _loaded if line]
        package = importlib.import_module(CHECKS_PACKAGE)
        problems = []
        for module in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            name = f"{CHECKS_PACKAGE}.{module.name}"
            try:
                importlib.import_module(name)
            except Exception as exc:  # one broken module must not hide the others
                problems.append(f"{name} failed to import ({type(exc).__name__}: {exc}); "
                                "its items are shown as manual")  # fmt: skip
        _loaded.extend(problems or [""])
        return problems


class RunContext(Context):
    """A :class:`Context` whose :meth:`fact` is safe across the run's threads: a fact is
    computed by one thread while the others needing it wait."""

    def __init__(self, settings: Settings, timeout_s: float) -> None:
        super().__init__(settings=settings, timeout_s=timeout_s)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def fact(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            return super().fact(key, compute)


def _call(func: Check, ctx: Context) -> tuple[Finding, float]:
    start = time.monotonic()
    try:
        finding = func(ctx)
        if not isinstance(finding, Finding):
            finding = Finding("error", f"the check {func.__name__} returned "
                                       f"{type(finding).__name__}, not a Finding")  # fmt: skip
    except Exception as exc:
        message = str(exc) or type(exc).__name__
        finding = Finding("error", f"{type(exc).__name__}: {message}"
                          if type(exc).__name__ not in message else message)  # fmt: skip
    return finding, time.monotonic() - start


def run_checks(funcs: Sequence[Check], ctx: Context, workers: int = DEFAULT_WORKERS,
               grace_s: float = GRACE_S) -> dict[Check, tuple[Finding, float]]:
    """Run each check once in threads (at most ``workers`` at a time; those marked
    :func:`~lkchaos.validate.model.early` started first); each gets ``ctx.timeout_s +
    grace_s`` seconds, after which it is an ``error`` and left behind."""
    limit = ctx.timeout_s + grace_s
    results: dict[Check, tuple[Finding, float]] = {}
    # Those marked early first; a stable sort keeps the document's order within each.
    pending = sorted(funcs, key=lambda f: not getattr(f, "starts_early", False))
    running: dict[Check, float] = {}
    done = threading.Condition()

    def work(func: Check) -> None:
        outcome = _call(func, ctx)
        with done:
            if func in running:  # not given up on
                del running[func]
                results[func] = outcome
            done.notify_all()

    with done:
        while pending or running:
            while pending and len(running) < max(1, workers):
                func = pending.pop(0)
                running[func] = time.monotonic()
                threading.Thread(target=work, args=(func,), daemon=True,
                                 name=f"check-{func.__name__}").start()  # fmt: skip
            now = time.monotonic()
            for func, started in list(running.items()):
                if now - started >= limit:
                    del running[func]
                    results[func] = (Finding("error", f"did not finish within {limit:g} s"),
                                     now - started)  # fmt: skip
            if running:
                next_deadline = min(running.values()) + limit
                done.wait(timeout=max(0.01, next_deadline - time.monotonic()))
    return results


def run_in_turn(funcs: Sequence[Check], ctx: Context, workers: int = DEFAULT_WORKERS,
                grace_s: float = GRACE_S) -> dict[Check, tuple[Finding, float]]:
    """:func:`run_checks` for the checks in parallel, then one by one for those marked
    :func:`~lkchaos.validate.model.alone` (they measure latency)."""
    together = [f for f in funcs if not getattr(f, "runs_alone", False)]
    outcomes = run_checks(together, ctx, workers=workers, grace_s=grace_s)
    for func in funcs:
        if getattr(func, "runs_alone", False):
            outcomes |= run_checks([func], ctx, workers=1, grace_s=grace_s)
    return outcomes


def run(selected: Sequence[Item], settings: Settings, *, timeout_s: float = DEFAULT_TIMEOUT_S,
        workers: int = DEFAULT_WORKERS, automated_only: bool = False, target: str = "",
        checks: Mapping[str, Check] | None = None, grace_s: float = GRACE_S) -> Report:
    """Run ``selected`` (in the document's order) against ``settings``; see the module
    docstring. ``automated_only``: leave out the items no check covers. ``checks``: id ->
    check (the registered ones by default, after :func:`load_checks`)."""
    load_errors: tuple[str, ...] = ()
    if checks is None:
        load_errors = tuple(load_checks())
        checks = CHECKS
    started_at = dt.datetime.now(dt.UTC)
    ctx = RunContext(settings, timeout_s)
    funcs = list(dict.fromkeys(checks[i.id] for i in selected if i.id in checks))
    outcomes = run_in_turn(funcs, ctx, workers=workers, grace_s=grace_s)
    audit.register_settings(settings)
    secrets = audit.known_secrets(settings.state_dir)
    by_id: dict[str, ItemResult] = {}
    for item in selected:
        if item.id in checks:
            finding, took = outcomes[checks[item.id]]
            # An error's text can quote a URL with its access token, or a secret: neither
            # may reach the terminal, the JSON or the sign-off artifacts.
            by_id[item.id] = ItemResult(item, finding.status,
                                        audit.scrub(finding.evidence, secrets),
                                        audit.scrub(dict(finding.data), secrets), True,
                                        round(took, 3))  # fmt: skip
        else:
            by_id[item.id] = ItemResult(item, "manual", manual.instruction(item))
    _roll_up(selected, by_id)
    results = [by_id[i.id] for i in selected]
    if automated_only:
        results = [r for r in results if r.automated]
    ended_at = dt.datetime.now(dt.UTC)
    if funcs:
        remember_run(settings.state_dir, ctx.started_at, ended_at.timestamp())
    return Report(tuple(results), started_at, ended_at, target, load_errors)


#: Where validation runs leave their time windows: their checks provoke error lines on
#: purpose (weak TLS clients, refused tokens, a port scan), which later runs set apart.
RUNS_FILE = "validate-runs.jsonl"
RUNS_KEPT = 500


def remember_run(state_dir: str, started_at: float, ended_at: float) -> None:
    """Append this run's window to the state folder's :data:`RUNS_FILE` (the latest
    :data:`RUNS_KEPT` are kept); a folder that cannot be written is skipped silently, as the
    window only helps later runs read logs."""
    if not state_dir:
        return
    path = Path(state_dir) / RUNS_FILE
    line = json.dumps({"started_at": round(started_at, 3), "ended_at": round(ended_at, 3)})
    try:
        kept = path.read_text().splitlines()[-(RUNS_KEPT - 1):] if path.is_file() else []
        path.write_text("\n".join([*kept, line]) + "\n")
    except OSError:
        return


def run_windows(state_dir: str) -> list[tuple[float, float]]:
    """The windows earlier validation runs left in :data:`RUNS_FILE` (epoch seconds)."""
    path = Path(state_dir) / RUNS_FILE if state_dir else None
    if path is None or not path.is_file():
        return []
    windows = []
    for raw in path.read_text().splitlines():
        try:
            entry = json.loads(raw)
            windows.append((float(entry["started_at"]), float(entry["ended_at"])))
        except (ValueError, KeyError, TypeError):
            continue
    return windows


def _roll_up(selected: Sequence[Item], by_id: dict[str, ItemResult]) -> None:
    """A parent without its own check takes the worst of its selected children."""
    children: dict[str, list[ItemResult]] = {}
    for item in selected:
        if item.parent is not None and item.parent in by_id:
            children.setdefault(item.parent, []).append(by_id[item.id])
    for parent_id, kids in children.items():
        parent = by_id[parent_id]
        if parent.automated or not any(k.automated for k in kids):
            continue
        worst = max((k.status for k in kids), key=SEVERITY.index)
        counts: dict[str, int] = {}
        for kid in kids:
            counts[kid.status] = counts.get(kid.status, 0) + 1
        named = [k.item.id.rsplit(".", 1)[-1] for k in kids if k.status == worst]
        summary = ", ".join(f"{n} {s}" for s, n in counts.items())
        evidence = f"worst of its {len(kids)} items ({summary})"
        if worst not in ("pass", "n/a"):
            evidence += f"; {worst}: {', '.join(named)}"
        by_id[parent_id] = dataclasses.replace(parent, status=worst, evidence=evidence,
                                               automated=True)  # fmt: skip
