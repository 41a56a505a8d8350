"""The safety control: checked arguments, one experiment at a time, rollbacks that run, and a
verdict that counts what the method did.

Declare it in an experiment (the experiments in this repository all do)::

    "controls": [{"name": "lkchaos-safety",
                  "provider": {"type": "python", "module": "lkchaos.safety.control"}}]

or once for every experiment in Chaos Toolkit's settings (``~/.chaostoolkit/settings.yaml``,
see controls/README.md). Declared both ways it acts once.

- Before the experiment it checks every lkchaos activity's arguments (``lkchaos.preflight``,
  through :mod:`lkchaos.safety.gate`: once per experiment, by whichever lkchaos control starts
  first), then takes the stack's run lock and starts a run id that stamps every fault this
  run records in the ledger; a second experiment against the same stack is refused at once,
  and so is a run while faults of earlier runs are in the ledger for this deployment
  (``LKCHAOS_ALLOW_EARLIER_FAULTS=1`` or the configuration key
  ``lkchaos_allow_earlier_faults: true`` runs on them, with a warning).
  A refused run plays no rollback, whatever the strategy (see the gate).
- Verdict: a failed lkchaos activity of the method (an action that raised or could not
  verify its effect, or an lkchaos function declared as a probe that raised) makes the run
  ``failed``; a method probe that declares a ``tolerance`` and misses it (by chaoslib's own
  tolerance code) makes it deviate. ``chaos run`` then exits 1. When the control changes the
  verdict it logs one ERROR line saying so, after Chaos Toolkit's own status line.
- Chaos Toolkit's default strategy skips rollbacks when a run fails or is interrupted
  (Ctrl-C). After the experiment this control plays the declared rollbacks itself whenever
  Chaos Toolkit did not, then undoes what the ledger still holds of this run (and nothing
  else: the full sweep is ``lkchaos recover``). An undo that fails stays in the ledger, marked,
  and the run ends ``failed``. An explicit ``--rollback-strategy never`` is honoured, with a
  warning; ``--dry`` that skips actions plays no rollback and undoes nothing.
- SIGTERM is turned into the same graceful stop as Ctrl-C. Either, while an activity runs,
  ends that activity's ``pauses.after`` (the fault window) at once instead of after it
  (:mod:`lkchaos.safety.pauses`). Once the run turns to its rollbacks and undoing (after an
  interrupt, or Chaos Toolkit's rollbacks), further ones are refused with a message: a
  second Ctrl-C would abort the rollbacks and leave the faults in effect. The journal counts
  them (``interrupts_ignored``). After an interrupt they stay refused until Chaos Toolkit has
  finished the run, so that the journal is written.
- lkchaos's own rooms left on LiveKit nodes that are gone (a node the run killed closes none
  of its rooms) are closed after the undoing (``rooms_closed``; :mod:`lkchaos.livekit.
  dead_nodes`); a room that cannot be closed is logged and does not change the verdict.
- Room-state snapshots left by earlier runs are removed when an experiment starts.
- What it did is written to the journal under ``"lkchaos_safety"``.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import FrameType
from typing import Any

from chaoslib.exceptions import InterruptExecution
from chaoslib.hypothesis import within_tolerance
from chaoslib.rollback import run_rollbacks
from chaoslib.run import RunEventHandler
from chaoslib.settings import get_loaded_settings
from chaoslib.types import Dry

from lkchaos.safety import audit, gate, ledger, pauses, runlock
from lkchaos.settings import Settings, parse_flag

logger = logging.getLogger("chaostoolkit")

#: Activities (actions and probes) of these modules fail the run when they fail.
VERDICT_MODULES: tuple[str, ...] = ("lkchaos.",)

#: Seconds after an interrupt within which the run must have turned to its rollbacks for a
#: further interrupt to be refused (see ``_on_signal``).
INTERRUPT_GRACE_S = 5.0

NEVER_WARNING = (
    "--rollback-strategy never: lkchaos plays no rollback and undoes none of this run's "
    "faults; they stay in effect. Run `lkchaos recover` to remove them."
)

#: Run on top of faults earlier runs left in the ledger (refused otherwise).
ALLOW_EARLIER_FAULTS_ENV = "LKCHAOS_ALLOW_EARLIER_FAULTS"
ALLOW_EARLIER_FAULTS_KEY = "lkchaos_allow_earlier_faults"

_run: dict[str, Any] = {}
_runtime: dict[str, Any] = {}
#: After an interrupted run's undo: the handlers to put back once Chaos Toolkit has finished
#: the run (its other controls, the journal), and since when the run has been stopping.
_lingering: dict[str, Any] = {}
_registries: weakref.WeakSet[Any] = weakref.WeakSet()


def validate_control(control: dict[str, Any]) -> None:
    """Called by ``chaos validate`` and ``chaos run`` on the control's declaration: the
    offline argument checks of every lkchaos activity (``lkchaos.preflight``)."""
    from lkchaos import preflight

    preflight.validate_for_toolkit(control)


class _RuntimeSettings(RunEventHandler):  # type: ignore[misc]
    """Catches the runner's settings (where ``--rollback-strategy`` ends up), and when the
    run turns to undoing its faults (an interrupt, Chaos Toolkit's rollbacks)."""

    def running(self, experiment: Any, journal: Any, configuration: Any, secrets: Any,
                schedule: Any, settings: Any) -> None:  # fmt: skip
        _runtime["settings"] = settings or {}

    def signal_exit(self) -> None:
        _undoing()

    def start_rollbacks(self, experiment: Any) -> None:
        _undoing()

    def finish(self, journal: Any) -> None:
        _restore_lingering()


def configure_control(
    settings: dict[str, Any] | None = None, event_registry: Any = None, **kwargs: Any
) -> None:
    if settings:
        _runtime["settings"] = settings
    if event_registry is not None and event_registry not in _registries:
        _registries.add(event_registry)
        event_registry.register(_RuntimeSettings())


def _rollback_strategy(experiment: dict[str, Any]) -> str:
    for source in (_runtime.get("settings"), get_loaded_settings(), experiment):
        strategy = ((source or {}).get("runtime") or {}).get("rollbacks", {}).get("strategy")
        if strategy:
            return str(strategy)
    return "default"


def _on_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT and SIGTERM during a run: the first is Ctrl-C's graceful stop
    (``KeyboardInterrupt``); any once the run is undoing its faults (rollbacks, the safety
    control's undo) and later ones get a message instead: stopping there would abort the
    rollbacks and leave the faults in effect, and, once they are undone, lose the journal
    and the run's record. Unless the first went unheeded: no rollback or undo started
    within :data:`INTERRUPT_GRACE_S`, the next one stops the run."""
    now = time.monotonic()
    first = _run.get("interrupted_at")
    since = _run.get("undoing_since")
    if not _lingering and since is None and (first is None or now - first > INTERRUPT_GRACE_S):
        _run["interrupted_at"] = now
        raise KeyboardInterrupt() if signum == signal.SIGINT else KeyboardInterrupt(
            f"signal {signum}")
    if _lingering:
        began: float = _lingering["since"]
        doing = "the faults are undone; writing the journal and the run's record"
    else:
        _run["interrupts_ignored"] = _run.get("interrupts_ignored", 0) + 1
        began = since if since is not None else (first if first is not None else now)
        doing = "undoing this run's faults"
    # Written straight to stderr: logging from a signal handler can deadlock on its lock.
    os.write(2, (
        f"\nlkchaos: {signal.Signals(signum).name} ignored: {doing} ({now - began:.0f} s "
        f"so far); stopping now would leave them unfinished. If it hangs, kill -9 "
        f"{os.getpid()} and run `lkchaos recover`.\n"
    ).encode())


def _restore_signals(previous: dict[int, Any]) -> None:
    """Put back the signal handlers ``previous`` (signal number -> handler)."""
    for signum, handler in previous.items():
        try:
            signal.signal(signum, handler)
        except (ValueError, TypeError):  # another thread; a handler set outside Python
            pass


def _restore_lingering() -> None:
    """Put back the signal handlers an interrupted run kept until Chaos Toolkit finished."""
    previous = _lingering.pop("previous", {})
    _lingering.clear()
    _restore_signals(previous)


def _undoing() -> None:
    """The run has turned to its rollbacks and undoing: interrupts no longer stop it."""
    if "state_dir" in _run:
        _run.setdefault("undoing_since", time.monotonic())


def before_experiment_control(
    context: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    if _run.get("experiment") is context and "state_dir" in _run:
        return  # declared in the settings and in the experiment: act once
    _restore_lingering()
    _run.clear()
    audit.mask_tokens_in_log()  # activities' errors may quote a join URL's access token
    # The preflight comes first (once per experiment, whichever lkchaos control starts
    # first). A refusal ends the run with no rollback played, whatever the strategy.
    gate.check(context, configuration, secrets)
    # Chaos Toolkit carries on after any other exception of a control: refuse the run instead.
    try:
        _start(context, configuration, secrets)
    except InterruptExecution as exc:
        _finish()
        gate.refuse(context, str(exc), configuration, secrets)
    except Exception as exc:
        _finish()
        gate.refuse(context, f"the lkchaos safety control could not start the run "
                    f"({type(exc).__name__}: {exc}){_in_state_folder(exc)}; nothing was done. "
                    "Fix the cause and run the experiment again.",
                    configuration, secrets)  # fmt: skip


def _in_state_folder(exc: Exception) -> str:
    """For a file error under the state folder: which folder, and how it is chosen."""
    import os

    from lkchaos.settings import default_state_dir

    if not isinstance(exc, OSError) or not exc.filename:
        return ""
    folder = default_state_dir()
    if not str(exc.filename).startswith(str(folder)):
        return ""
    how = ("LKCHAOS_STATE_DIR" if os.environ.get("LKCHAOS_STATE_DIR") else
           "the default: LKCHAOS_STATE_DIR is unset")  # fmt: skip
    return (f": the state folder {folder} ({how}) cannot be used; set LKCHAOS_STATE_DIR to a "
            "folder this user can create and write")


def _start(
    context: dict[str, Any], configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None,
) -> None:  # fmt: skip
    settings = Settings.load(configuration, secrets)
    audit.register_settings(settings)
    pauses.install()
    title = str(context.get("title", "experiment"))
    try:
        note = runlock.acquire(settings.run_dir, title)
    except runlock.LockHeld as exc:
        raise InterruptExecution(str(exc)) from exc
    other = _stack_of_another_checkout(settings)
    if other is not None:
        runlock.release(settings.run_dir)
        raise InterruptExecution(
            f"the reference stack was started from another checkout of lkchaos ({other}): its "
            "run lock and fault ledger are in that checkout's state folder, so this run would "
            "not see its runs nor they this one's faults. Run the experiment from that "
            "checkout, or bring the stack up from this one (`lkchaos stack up --take-over`)")
    run_id = ledger.begin_run(title)
    warnings: list[str] = []
    _run.update(state_dir=settings.state_dir, run_dir=settings.run_dir, note=note,
                started=time.monotonic(),
                experiment=context, run_id=run_id, warnings=warnings)
    strategy = _rollback_strategy(context)
    _run["strategy"] = strategy
    if strategy == "never":
        logger.warning(NEVER_WARNING)
        warnings.append(NEVER_WARNING)
    earlier = [f for f in ledger.pending(settings.state_dir) if f.run_id != run_id]
    if earlier:
        listed = (", ".join(f.describe() for f in earlier[:5])
                  + (f" and {len(earlier) - 5} more" if len(earlier) > 5 else ""))  # fmt: skip
        if not _earlier_faults_allowed(configuration):
            raise InterruptExecution(
                f"{len(earlier)} fault(s) of earlier runs are still in effect on this "
                f"deployment ({listed}): this run would judge them, not its own. Run `lkchaos "
                "recover` to undo them, then run again; to run on top of them on purpose (left "
                f"with --rollback-strategy never), set {ALLOW_EARLIER_FAULTS_ENV}=1 or the "
                f"configuration key {ALLOW_EARLIER_FAULTS_KEY}: true")  # fmt: skip
        message = (f"{len(earlier)} fault(s) of earlier runs are still in effect ({listed}), "
                   "as allowed: run `lkchaos recover` to undo them")
        logger.warning(message)
        warnings.append(message)
    # Room-state snapshots belong to one run: none from an earlier run may be compared.
    for old in (Path(settings.run_dir) / "snapshots").glob("*.json"):
        old.unlink(missing_ok=True)
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signum == signal.SIGINT and signal.getsignal(signum) is signal.SIG_IGN:
            continue  # started in the background (`&`): Ctrl-C is not meant for this run
        try:
            previous[signum] = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread: leave the signals alone
            break
    _run["previous_signals"] = previous


def _stack_of_another_checkout(settings: Settings) -> str | None:
    """The compose file the running reference stack was started from, when the target is the
    reference stack and that is not this checkout's (:meth:`lkchaos.stack.compose.Compose.
    other_checkout`); None otherwise, or when it cannot be told (no engine, no checkout)."""
    from lkchaos.validate.facts import reference

    if reference(settings) is None:
        return None
    try:
        from lkchaos.docker.client import docker_session
        from lkchaos.stack.compose import Compose
        from lkchaos.stack.layout import StackPaths

        paths = StackPaths.discover()
        with docker_session(timeout=5.0) as client:
            return Compose(paths).other_checkout(client)
    except Exception:  # cannot be told: the other checks of the run say what is wrong
        return None


def _earlier_faults_allowed(configuration: dict[str, Any] | None) -> bool:
    """The configuration key, else the environment variable, says a run may start on top of
    earlier runs' faults (false when neither is set). Raises ConfigError on a value that is
    not true or false."""
    value = (configuration or {}).get(ALLOW_EARLIER_FAULTS_KEY)
    if value is not None:
        return parse_flag(f"the configuration key {ALLOW_EARLIER_FAULTS_KEY}", value)
    return parse_flag(ALLOW_EARLIER_FAULTS_ENV, os.environ.get(ALLOW_EARLIER_FAULTS_ENV, ""))


def before_activity_control(context: dict[str, Any], **kwargs: Any) -> None:
    provider = context.get("provider") or {}
    audit.set_activity(context.get("name"), provider.get("arguments"))


def after_activity_control(context: dict[str, Any], **kwargs: Any) -> None:
    audit.clear_activity()


def _play_rollbacks(
    experiment: dict[str, Any], journal: dict[str, Any],
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None, dry: Any,
) -> int:  # fmt: skip
    runs: list[Any] = []
    with ThreadPoolExecutor(max_workers=2) as pool:
        for _ in run_rollbacks(experiment, configuration or {}, secrets or {}, pool, dry,
                               None, runs):
            pass
    journal["rollbacks"] = runs
    return len(runs)


def _error(run: dict[str, Any]) -> str:
    lines = [line.strip() for line in run.get("exception") or [] if line.strip()]
    error = lines[-1] if lines else "failed"
    prefix = "chaoslib.exceptions.ActivityFailed: "
    while error.startswith(prefix):
        error = error[len(prefix):]
    return error


def _failed_actions(journal: dict[str, Any]) -> list[dict[str, Any]]:
    failed = []
    for run in journal.get("run") or []:
        activity = run.get("activity") or {}
        provider = activity.get("provider") or {}
        module = str(provider.get("module", ""))
        if (activity.get("type") in ("action", "probe") and run.get("status") == "failed"
                and provider.get("type") == "python" and module.startswith(VERDICT_MODULES)):
            failed.append({"activity": activity.get("name"), "type": activity.get("type"),
                           "function": f"{module}.{provider.get('func')}",
                           "error": _error(run)})
    return failed


def _probe_was_dry(activity: dict[str, Any], dry: Any) -> bool:
    dry = activity.get("dry", dry)
    return dry in (Dry.PROBES, Dry.ACTIVITIES)


def _finished(run: dict[str, Any]) -> bool:
    """Whether an activity's run ended by itself (Chaos Toolkit gives a run an interrupt cut
    short no status)."""
    return run.get("status") in ("succeeded", "failed")


def _missed_tolerances(
    journal: dict[str, Any], configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None, dry: Any,
) -> list[dict[str, Any]]:  # fmt: skip
    missed = []
    for run in journal.get("run") or []:
        activity = run.get("activity") or {}
        if activity.get("type") != "probe" or "tolerance" not in activity:
            continue
        if not _finished(run):
            continue  # cut short by an interrupt: it judged nothing, its output is no answer
        if _probe_was_dry(activity, dry):
            continue
        tolerance = activity["tolerance"]
        miss = {"probe": activity.get("name"), "tolerance": tolerance,
                "output": run.get("output")}
        if run.get("status") == "failed":
            missed.append({**miss, "error": _error(run)})
            continue
        try:
            ok = within_tolerance(tolerance, run.get("output"), configuration=configuration,
                                  secrets=secrets)
        except Exception as exc:  # a tolerance that cannot be evaluated is not met
            missed.append({**miss, "error": f"the tolerance could not be evaluated: {exc}"})
            continue
        if not ok:
            missed.append(miss)
    return missed


def _verdict(
    state: dict[str, Any], report: dict[str, Any], configuration: dict[str, Any] | None,
    secrets: dict[str, Any] | None, dry: Any,
) -> None:  # fmt: skip
    unmet = _unmet_before(state)
    if unmet is not None:
        # Chaos Toolkit skips the method and ends "completed", not deviated, exit 0 when only
        # a tolerance was missed: a green run that tested nothing. It is a failure here.
        report["steady_state_not_met_before"] = unmet
        if state.get("status") in (None, "completed"):
            state["status"] = "failed"
        earlier = [f.describe() for f in ledger.pending(_run["state_dir"])
                   if f.run_id != _run["run_id"]] if "state_dir" in _run else []  # fmt: skip
        down = None if earlier else _why_down(configuration, secrets)
        first = (f"faults of an earlier run are still in effect ({'; '.join(earlier)}): run "
                 "`lkchaos recover`, then run again" if earlier else
                 f"{down[0].upper()}{down[1:]}" if down else
                 "Bring the deployment back to its steady state first (`lkchaos target "
                 "check` says what answers; on the reference stack, `lkchaos stack status`)")
        if down:
            report["deployment_down"] = down
        logger.error("the steady state did not hold before the method, so nothing was "
                     f"injected and the run failed: {_why_unmet(state) or 'see above'}. "
                     f"{first}")
    failed = _failed_actions(state)
    if failed:
        report["failed_actions"] = failed
        if state.get("status") in (None, "completed"):
            state["status"] = "failed"
        for item in failed:
            logger.error(f"lkchaos {item['type']} {item['activity']!r} failed, so the run "
                         f"failed: {item['error']}")
    missed = _missed_tolerances(state, configuration, secrets, dry)
    if missed:
        report["missed_tolerances"] = missed
        state["deviated"] = True
        for item in missed:
            logger.error(f"method probe {item['probe']!r} missed its tolerance, so the run "
                         f"deviated (output: {item['output']!r})")


def _faults_of_run(state_dir: str, run_id: str) -> dict[str, int]:
    """What the audit log says of this run's faults: ``{"injected", "undone"}``, a fault
    withdrawn as never made (``not injected``) not counted; what `lkchaos audit --run` lists
    and the history records. Empty when the log cannot be read."""
    try:
        outcomes = [str(e.get("outcome")) for e in audit.read(state_dir, run=run_id)]
    except OSError:
        return {}
    injected = outcomes.count("injected") - outcomes.count("not injected")
    return {"injected": injected, "undone": min(injected, outcomes.count("undone"))}


def _why_down(configuration: dict[str, Any] | None, secrets: dict[str, Any] | None) -> str | None:
    """:func:`lkchaos.target.down.why_down` for the run's target; None when it cannot say."""
    from lkchaos.target.down import why_down

    try:
        return why_down(Settings.load(configuration, secrets), http_timeout=2.0)
    except Exception:  # only a better message: never the verdict
        return None


def _missed_before(state: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs of the probes that missed the steady state before the method (failed, or
    out of their tolerance)."""
    before = (state.get("steady_states") or {}).get("before") or {}
    return [p for p in before.get("probes") or []
            if not p.get("tolerance_met", True) or p.get("status") != "succeeded"]


def _why_unmet(state: dict[str, Any], limit: int = 600) -> str:
    """Each probe that missed the steady state before the method, with why: its error (a
    refused credential, a node that did not answer), else what it returned."""
    reasons = []
    for probe in _missed_before(state):
        name = str((probe.get("activity") or {}).get("name"))
        if probe.get("status") != "succeeded":
            why = _error(probe)
        else:
            why = "returned " + json.dumps(probe.get("output"), default=str)
        reasons.append(f"{name} ({why if len(why) <= limit else why[:limit] + '...'})")
    return "; ".join(reasons)


def _unmet_before(state: dict[str, Any]) -> list[str] | None:
    """The probes that missed their tolerance before the method, or None if it held (or
    was not checked)."""
    before = (state.get("steady_states") or {}).get("before")
    if not isinstance(before, dict) or before.get("steady_state_met") is not False:
        return None
    return [str((p.get("activity") or {}).get("name")) for p in _missed_before(state)]


def _cleanup(
    context: dict[str, Any], state: dict[str, Any], report: dict[str, Any],
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None, dry: Any,
) -> None:  # fmt: skip
    state_dir, run_id = _run["state_dir"], _run["run_id"]
    if _run.get("strategy") == "never":
        left = [f.describe() for f in ledger.pending(state_dir) if f.run_id == run_id]
        report["left_in_ledger"] = left
        if left:
            logger.warning(f"left in effect: {', '.join(left)}. {NEVER_WARNING}")
        return
    if dry in (Dry.ACTIONS, Dry.ACTIVITIES):
        # No action ran, so nothing of this run is in the ledger and nothing is played.
        report["recovered"] = ledger.undo_all(state_dir, configuration, run_id=run_id)
    else:
        if context.get("rollbacks") and not state.get("rollbacks"):
            report["rollbacks_played_by_lkchaos"] = _play_rollbacks(
                context, state, configuration, secrets, dry
            )
        report["recovered"] = ledger.undo_all(state_dir, configuration, run_id=run_id)
    failed = [r for r in report["recovered"] if not r.get("ok", True)]
    if failed:
        report["not_recovered"] = failed
        state["status"] = "failed"
        for item in failed:
            logger.error(f"could not undo {item['fault']} ({item['error']}): it stays in the "
                         "ledger; run `lkchaos recover`")
    if dry not in (Dry.ACTIONS, Dry.ACTIVITIES):
        report["rooms_closed"] = _close_own_rooms_on_dead_nodes(configuration, secrets)


def _close_own_rooms_on_dead_nodes(
    configuration: dict[str, Any] | None, secrets: dict[str, Any] | None
) -> list[dict[str, Any]]:
    """lkchaos's own rooms left on LiveKit nodes the run killed (:mod:`lkchaos.livekit.
    dead_nodes`), closed. Housekeeping: what cannot be done is logged, never the verdict."""
    from lkchaos.livekit import dead_nodes

    try:
        closed = dead_nodes.close_own_rooms(Settings.load(configuration, secrets))
    except Exception as exc:  # housekeeping: whatever went wrong is said, never the verdict
        # Not every target's Redis is reachable from here, and nothing need be left: say it
        # in the journal, not as a warning after every run.
        logger.info(f"lkchaos could not look for its rooms left on LiveKit nodes that are "
                    f"gone ({exc}); `lkchaos recover` closes them")  # fmt: skip
        return [{"fault": "rooms left on nodes that are gone", "outcome": f"error: {exc}"}]
    for entry in closed:
        if not str(entry["outcome"]).startswith("closed"):
            logger.warning(f"{entry['fault']}: {entry['outcome']}; `lkchaos recover` retries")
    return closed


def after_experiment_control(
    context: dict[str, Any],
    state: dict[str, Any],
    configuration: dict[str, Any] | None = None,
    secrets: dict[str, Any] | None = None,
    **kwargs: Any,
) -> None:
    refused = gate.refusal(context)
    if refused is not None:  # refused before anything ran: no rollback, nothing to undo
        _report_refusal(state, refused)
        if _run.get("experiment") is context:
            _finish()
        return
    if "state_dir" not in _run or _run.get("experiment") is not context:
        return  # this run never took the lock (or this is the second declaration)
    _undoing()
    started = time.monotonic()
    before = (state.get("status"), bool(state.get("deviated")))
    dry = context.get("dry")
    report: dict[str, Any] = {"run_id": _run["run_id"], "lock_note": _run.get("note"),
                              "rollback_strategy": _run.get("strategy", "default"),
                              "warnings": _run.get("warnings", [])}
    if isinstance(dry, Dry):
        report["dry"] = dry.value
    try:
        _verdict(state, report, configuration, secrets, dry)
        _cleanup(context, state, report, configuration, secrets, dry)
    except Exception as exc:  # Chaos Toolkit would swallow it: make the run say so
        report["error"] = f"{type(exc).__name__}: {exc}"
        state["status"] = "failed"
        logger.error(f"the safety control failed: {exc}; run `lkchaos recover`")
    finally:
        report["faults"] = _faults_of_run(_run["state_dir"], _run["run_id"])
        report["cleanup_s"] = round(time.monotonic() - started, 3)
        if _run.get("interrupts_ignored"):
            report["interrupts_ignored"] = _run["interrupts_ignored"]
        secrets_seen = audit.known_secrets(_run["state_dir"])
        state["lkchaos_safety"] = report
        # The journal Chaos Toolkit writes next (this report with it): no secret, and no
        # access token an error quoted (a join URL's), in the activities' outputs and errors.
        state.update(audit.scrub(state, secrets_seen))
        _finish()
    if (state.get("status"), bool(state.get("deviated"))) != before:
        # Chaos Toolkit has already logged the status it saw: say the real verdict last.
        logger.error(str(audit.scrub(_verdict_line(state, report), secrets_seen)))
    elif state.get("status") in ("interrupted", "aborted"):
        logger.warning(str(audit.scrub(_interrupted_line(state, report), secrets_seen)))


def _report_refusal(state: dict[str, Any], refused: str) -> None:
    """The journal of a run refused before anything ran (by this control or the sampling
    control, whichever started first)."""
    if "lkchaos_safety" in state:
        return  # declared in the settings and in the experiment: written once
    state["lkchaos_safety"] = {"run_id": None, "refused": refused,
                               "problems": gate.problems(refused),
                               "rollbacks_played_by_lkchaos": 0}  # fmt: skip
    logger.error("lkchaos: the run was REFUSED before anything ran (no rollback was "
                 f"played); {len(gate.problems(refused))} problem(s), listed above")


def _verdict_line(state: dict[str, Any], report: dict[str, Any]) -> str:
    """One line with the verdict this control decided and why."""
    reasons = [f"{item['type']} {item['activity']!r} failed: {item['error']}"
               for item in report.get("failed_actions", [])]
    if "steady_state_not_met_before" in report:
        reasons.append("the steady state did not hold before the method ("
                       + ", ".join(report["steady_state_not_met_before"]) + ")")
    reasons += [f"could not undo {item['fault']}: {item.get('error')}"
                for item in report.get("not_recovered", [])]
    if "error" in report:
        reasons.append(f"the safety control failed: {report['error']}")
    missed = [f"method probe {item['probe']!r} missed its tolerance"
              for item in report.get("missed_tolerances", [])]
    after = ((state.get("steady_states") or {}).get("after") or {}).get("probes") or []
    missed += [f"steady-state probe {(probe.get('activity') or {}).get('name')!r} missed its "
               "tolerance after the method" for probe in after
               if probe.get("tolerance_met") is False]  # fmt: skip
    if state.get("status") == "failed":
        line = "lkchaos: the run FAILED: " + "; ".join(reasons or ["see the errors above"])
        if state.get("deviated"):
            line += " (and DEVIATED: " + "; ".join(missed or ["see the errors above"]) + ")"
        return line
    return "lkchaos: the run DEVIATED: " + "; ".join(missed or ["see the errors above"])


def _interrupted_line(state: dict[str, Any], report: dict[str, Any]) -> str:
    """One line for a run cut short (Ctrl-C, SIGTERM): what it still judged, what it undid."""
    unfinished = [str((run.get("activity") or {}).get("name"))
                  for run in state.get("run") or [] if not _finished(run)]  # fmt: skip
    line = f"lkchaos: the run was {str(state.get('status')).upper()}"
    if unfinished:
        line += f" during {', '.join(repr(n) for n in unfinished)} (not judged)"
    undone = report.get("not_recovered")
    line += ("; its faults were undone" if not undone else
             f"; {len(undone)} fault(s) could not be undone: run `lkchaos recover`")
    if report.get("missed_tolerances"):
        line += "; before it, " + ", ".join(
            f"method probe {item['probe']!r} missed its tolerance"
            for item in report["missed_tolerances"])
    return line


def cleanup_control(**kwargs: Any) -> None:
    _finish()
    gate.forget()


def _finish() -> None:
    state_dir = _run.pop("state_dir", None)
    if state_dir is not None:
        runlock.release(_run.pop("run_dir", state_dir))
        ledger.end_run()
    previous = _run.pop("previous_signals", {})
    if previous and _run.get("interrupted_at") is not None and _registries:
        # Interrupted: keep refusing further interrupts until Chaos Toolkit has run the other
        # controls and written the journal (the registry's ``finish``), then put them back.
        _lingering.update(previous=previous,
                          since=_run.get("undoing_since") or _run["interrupted_at"])
    else:
        _restore_signals(previous)
    for key in ("undoing_since", "interrupted_at", "interrupts_ignored"):
        _run.pop(key, None)
    _run.pop("experiment", None)
    _runtime.clear()
