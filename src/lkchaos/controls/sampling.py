"""A Chaos Toolkit control that samples probes during the whole run and journals the series.

Chaos Toolkit checks the steady state before and after the method only. This control runs
chosen probes in the background, each in its own daemon thread at its own ``interval_s``,
from the start of the experiment (or of the method) until after the rollbacks (or the end of
the method). It marks when the method, each activity and the rollbacks started and ended,
derives per probe availability, time to detect, time to recover (RTO), longest outage and
the achieved sampling interval (``lkchaos.controls.figures``), and writes it all into the
journal under ``journal["lkchaos"]["sampling"]``. Declare it in the experiment::

    "controls": [{"name": "sampling", "provider": {
        "type": "python", "module": "lkchaos.controls.sampling",
        "arguments": {"probes": [{"type": "probe", "name": "rooms-api", "interval_s": 0.25,
                                  "tolerance": true, "provider": {...}}]}}}]

Arguments (``lkchaos.controls.options``): ``probes`` (required; steady-state probe
definitions plus ``interval_s``, default 1.0, and optional ``summary_keys``),
``max_samples`` (per probe, 20000), ``max_duration_s`` (3600), ``start`` (``experiment`` or
``method``), ``stop`` (``experiment``: after the rollbacks, or ``method``), ``fault_end``
(``last_action`` or ``rollbacks``), ``fault_actions`` (names; default every method action),
``baseline_s`` (sample this long before the method starts), ``tail_s`` and ``settle_s`` (at
the stop, keep sampling up to ``tail_s`` until every probe has been ok for ``settle_s`` since
the fault ended; not after Ctrl-C or an abort), ``join_timeout_s`` (1: a call under way at the
stop is dropped anyway, waiting for it only delays the journal). Bad arguments fail
the validation (``validate_control``) or, unvalidated, interrupt the run before anything is
sampled.

How probes reach the running sampler: a module-level registry holds the sampler of each
running experiment, keyed by the experiment object Chaos Toolkit passes to every hook, from
``before_experiment_control`` until ``after_experiment_control``. The probe
``lkchaos.controls.probes.recovery`` looks a sampler up by probe name (the latest started
one, Chaos Toolkit running one experiment at a time per process).

Threads are stopped and joined (``join_timeout_s`` in all) at ``after_experiment_control``
(also after an interruption, which Chaos Toolkit ends with that hook too) and at
``cleanup_control``, which Chaos Toolkit always calls, and which stops every sampler left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lkchaos.controls.figures import not_steady_before_fault
from lkchaos.controls.options import parse_options
from lkchaos.controls.sampler import Sampler
from lkchaos.safety import gate

__all__ = [
    "validate_control",
    "before_experiment_control",
    "after_experiment_control",
    "before_hypothesis_control",
    "after_hypothesis_control",
    "before_method_control",
    "after_method_control",
    "before_rollback_control",
    "after_rollback_control",
    "before_activity_control",
    "after_activity_control",
    "cleanup_control",
    "find_sampler",
    "sampled_probes",
    "JOURNAL_KEY",
]

logger = logging.getLogger("chaostoolkit")

#: Where the journal holds the section: ``journal[JOURNAL_KEY[0]][JOURNAL_KEY[1]]``.
JOURNAL_KEY = ("lkchaos", "sampling")


@dataclass
class _Entry:
    experiment: Any
    sampler: Sampler | None = None
    error: str | None = None
    #: ids of the hypotheses and activities started and not yet ended (see ``_opens``).
    open: set[int] = field(default_factory=set)


_lock = threading.Lock()
_runs: dict[int, _Entry] = {}


def _entry(experiment: Any, pop: bool = False) -> _Entry | None:
    with _lock:
        entry = _runs.get(id(experiment))
        if entry is None or entry.experiment is not experiment:
            return None
        if pop:
            del _runs[id(experiment)]
        return entry


def _sampler(experiment: Any) -> Sampler | None:
    entry = _entry(experiment)
    return entry.sampler if entry is not None else None


def _opens(experiment: Any, context: Any) -> Sampler | None:
    """The sampler, at the first start of a hypothesis or activity; None at a repeat.

    Chaos Toolkit calls an experiment's own controls at the hypothesis and activity levels
    once per control declared in its settings (``chaoslib.control.get_context_controls``): with
    the safety control there too, or under a game day, each start and end would be marked two
    or three times. One start and one end per run of a hypothesis or activity: a start while
    the same one is open, or an end when it is not, is a repeat and is ignored."""
    entry = _entry(experiment)
    if entry is None or entry.sampler is None or id(context) in entry.open:
        return None
    entry.open.add(id(context))
    return entry.sampler


def _closes(experiment: Any, context: Any) -> Sampler | None:
    """The sampler, at the first end of an open hypothesis or activity; None at a repeat."""
    entry = _entry(experiment)
    if entry is None or entry.sampler is None or id(context) not in entry.open:
        return None
    entry.open.discard(id(context))
    return entry.sampler


def find_sampler(probe: str) -> Sampler | None:
    """The running sampler that samples ``probe`` (the latest started), or None."""
    with _lock:
        found = [e.sampler for e in _runs.values() if e.sampler and e.sampler.has_probe(probe)]
    return found[-1] if found else None


def sampled_probes() -> list[str]:
    """Names of the probes the running samplers sample."""
    with _lock:
        samplers = [e.sampler for e in _runs.values() if e.sampler is not None]
    return sorted({spec.name for s in samplers for spec in s.options.probes})


def _finish(sampler: Sampler, tail: bool = True) -> None:
    """The tail (if any, and if ``tail``), then stop and join."""
    try:
        options = sampler.options
        if tail and options.tail_s > 0 and sampler.running:
            sampler.wait_settled(options.settle_s, options.tail_s)
    finally:
        sampler.stop()


# -- Chaos Toolkit hooks -------------------------------------------------------------------
def validate_control(control: Mapping[str, Any]) -> None:
    """Check the arguments when Chaos Toolkit validates the experiment (``${...}`` allowed)."""
    arguments = (control.get("provider") or {}).get("arguments") or {}
    parse_options(arguments, allow_placeholders=True)


def before_experiment_control(
    context: Any,
    experiment: Any = None,
    configuration: Any = None,
    secrets: Any = None,
    **arguments: Any,
) -> None:
    """Check the experiment (the preflight, once per experiment, whichever lkchaos control
    starts first) and the arguments, then start sampling (unless ``start`` is ``method``).
    A refusal ends the run before anything is sampled, with no rollback played."""
    exp = experiment if experiment is not None else context
    try:
        gate.check(exp, configuration, secrets)
    except gate.Refused as exc:
        if _entry(exp) is None:  # the journal's section says why nothing was sampled
            with _lock:
                _runs[id(exp)] = _Entry(exp, error=exc.message)
        raise
    if _entry(exp) is not None:  # the first declaration keeps sampling and writes the journal
        gate.refuse(exp, "lkchaos sampling control: declared more than once in the "
                    "experiment; put all the probes to sample in one declaration",
                    configuration, secrets)  # fmt: skip
    try:
        options = parse_options(arguments, method=list(exp.get("method") or []))
    except Exception as exc:
        with _lock:
            _runs[id(exp)] = _Entry(exp, error=str(exc))
        gate.refuse(exp, str(exc), configuration, secrets)
    sampler = Sampler(options, configuration, secrets)
    with _lock:
        _runs[id(exp)] = _Entry(exp, sampler=sampler)
    sampler.mark("experiment_start")
    dry = exp.get("dry")
    dry = getattr(dry, "value", dry)
    if dry in ("probes", "activities"):
        sampler.disable(f"dry run ({dry}): no probe was sampled")
    elif options.start == "experiment":
        sampler.start()


def before_hypothesis_control(context: Any, experiment: Any = None, **_: Any) -> None:
    if (sampler := _opens(experiment, context)) is not None:
        sampler.mark("hypothesis_start")


def after_hypothesis_control(
    context: Any, experiment: Any = None, state: Any = None, **_: Any
) -> None:
    if (sampler := _closes(experiment, context)) is not None:
        met = state.get("steady_state_met") if isinstance(state, Mapping) else None
        sampler.mark("hypothesis_end", met=met)


def before_method_control(context: Any, experiment: Any = None, **_: Any) -> None:
    """Start sampling if ``start`` is ``method``; hold the method for ``baseline_s``."""
    if (sampler := _sampler(experiment)) is None:
        return
    sampler.phase = "method"
    if sampler.options.start == "method":
        sampler.start()
    sampler.wait_baseline(sampler.options.baseline_s)
    sampler.mark("method_start")


def after_method_control(context: Any, experiment: Any = None, **_: Any) -> None:
    if (sampler := _sampler(experiment)) is None:
        return
    sampler.mark("method_end")
    sampler.phase = "after_method"
    if sampler.options.stop == "method":
        _finish(sampler)


def before_rollback_control(context: Any, experiment: Any = None, **_: Any) -> None:
    if (sampler := _sampler(experiment)) is not None:
        sampler.phase = "rollbacks"
        sampler.mark("rollbacks_start")


def after_rollback_control(context: Any, experiment: Any = None, **_: Any) -> None:
    if (sampler := _sampler(experiment)) is not None:
        sampler.mark("rollbacks_end")
        sampler.phase = "after_rollbacks"


def before_activity_control(context: Any, experiment: Any = None, **_: Any) -> None:
    if isinstance(context, Mapping) and (sampler := _opens(experiment, context)) is not None:
        sampler.mark("activity_start", name=context.get("name"), type=context.get("type"))


def after_activity_control(
    context: Any, experiment: Any = None, state: Any = None, **_: Any
) -> None:
    if isinstance(context, Mapping) and (sampler := _closes(experiment, context)) is not None:
        run = state if isinstance(state, Mapping) else {}
        sampler.mark(
            "activity_end", name=context.get("name"), type=context.get("type"),
            status=run.get("status"), call_start_t=sampler.t_of(run.get("start")),
            call_end_t=sampler.t_of(run.get("end")),
        )  # fmt: skip


def after_experiment_control(
    context: Any, state: Any = None, experiment: Any = None, **_: Any
) -> None:
    """Finish sampling (tail, stop, join) and write the section into the journal."""
    exp = experiment if experiment is not None else context
    entry = _entry(exp)
    if entry is None:
        return
    section: dict[str, Any]
    try:
        if entry.sampler is None:
            section = {"error": entry.error}
        else:
            entry.sampler.mark("experiment_end")
            # Whoever interrupted the run wants it over: no tail after Ctrl-C or an abort.
            status = state.get("status") if isinstance(state, dict) else None
            _finish(entry.sampler, tail=status not in ("interrupted", "aborted"))
            section = entry.sampler.report()
    finally:
        _entry(exp, pop=True)
        if entry.sampler is not None:
            entry.sampler.stop()
    if isinstance(state, dict):
        _judge_baseline(state, section)
        top, key = JOURNAL_KEY
        if not isinstance(state.get(top), dict):
            state[top] = {}
        state[top][key] = section


def _judge_baseline(state: dict[str, Any], section: dict[str, Any]) -> None:
    """Fail a run in which a sampled probe failed all its samples before the fault
    (:func:`lkchaos.controls.figures.not_steady_before_fault`): its figures would report an
    outage, and an RTO, that the fault did not cause. Named in the section under
    ``not_steady_before_fault``."""
    unsteady = not_steady_before_fault(section.get("probes") or {})
    if not unsteady:
        return
    section["not_steady_before_fault"] = unsteady
    if state.get("status") in (None, "completed"):
        state["status"] = "failed"
    named = ", ".join(f"{name!r} (all {b['samples']} failed)" for name, b in unsteady.items())
    logger.error(
        f"lkchaos: the run FAILED: sampled probe(s) {named} failed every sample before the "
        "first fault, so their time to detect and RTO say nothing of it: the deployment was "
        "not steady for them, or they cannot reach what they ask (a wrong URL, port or key: "
        "`lkchaos target check` says which; the series are in the journal)")


def cleanup_control() -> None:
    """Stop and forget every sampler still registered (Chaos Toolkit always calls this)."""
    with _lock:
        entries = list(_runs.values())
        _runs.clear()
    for entry in entries:
        if entry.sampler is not None:
            entry.sampler.stop()
    gate.forget()
