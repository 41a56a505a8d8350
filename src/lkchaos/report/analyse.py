"""One journal read into a :class:`~lkchaos.report.model.Run`: verdict, sampled series, steps,
safety, what is missing and what went wrong. Never raises on a journal's content: anything of
an unexpected shape is treated as absent and said to be missing."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lkchaos.report import scoring
from lkchaos.report.model import AudioClip, Run, SampledProbe, Step, recovery_of

#: Audio files are embedded up to this size each (20 s of 16 kHz 16-bit mono is 640 KB) ...
MAX_CLIP_BYTES = 1_000_000
#: ... and up to this many per run; the rest are listed by path.
MAX_CLIPS_PER_RUN = 6
_TEXT = 200

def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else []


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def short(value: Any, limit: int = _TEXT) -> str:
    """``value`` as one line of at most ``limit`` characters (JSON for structures)."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str,
                                                            separators=(", ", ": "))
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_of(run: Mapping[str, Any]) -> str:
    """The last line of a journaled activity's exception, without chaoslib's prefixes."""
    lines = [str(line).strip() for line in _list(run.get("exception")) if str(line).strip()]
    error = lines[-1] if lines else ""
    for prefix in ("chaoslib.exceptions.ActivityFailed: ", "ActivityFailed: "):
        while error.startswith(prefix):
            error = error[len(prefix):]
    return short(error, 400)


def verdict_of(journal: Mapping[str, Any]) -> str:
    """``refused``, ``interrupted``, ``not_recovered``, ``failed``, ``deviated`` or ``held``."""
    safety = _dict(journal.get("lkchaos_safety"))
    if safety.get("refused"):
        return "refused"
    if journal.get("status") in ("interrupted", "aborted") or not journal.get("end"):
        return "interrupted"
    sampled = _dict(_dict(_dict(journal.get("lkchaos")).get("sampling")).get("probes"))
    if _list(safety.get("not_recovered")) or any(
        recovery_of([s for s in _list(_dict(p).get("samples")) if isinstance(s, Mapping)],
                    _dict(_dict(p).get("figures"))) == "not_recovered"
        for p in sampled.values()
    ):
        return "not_recovered"
    if journal.get("status") == "failed":
        return "failed"
    if journal.get("deviated"):
        return "deviated"
    return "held"


def _steps(journal: Mapping[str, Any], missed: set[str]) -> list[Step]:
    steps: list[Step] = []
    states = _dict(journal.get("steady_states"))
    phases = [("before", _list(_dict(states.get("before")).get("probes"))),
              ("method", _list(journal.get("run"))),
              ("after", _list(_dict(states.get("after")).get("probes"))),
              ("rollbacks", _list(journal.get("rollbacks")))]
    for phase, runs in phases:
        for raw in runs:
            run = _dict(raw)
            activity = _dict(run.get("activity"))
            name = str(activity.get("name", "?"))
            met = run.get("tolerance_met")
            if phase == "method":
                # Chaos Toolkit does not check a method probe's tolerance; the safety control
                # does, and lists the misses.
                checked = "tolerance" in activity and "lkchaos_safety" in journal
                met = (name not in missed) if checked and run.get("status") == "succeeded" \
                    else None
            steps.append(Step(
                phase=phase, name=name, kind=str(activity.get("type", "activity")),
                status=str(run.get("status", "unknown")), duration_s=_num(run.get("duration")),
                tolerance=activity.get("tolerance"),
                tolerance_met=met if isinstance(met, bool) else None,
                value=short(run.get("output")), error=error_of(run),
            ))  # fmt: skip
    return steps


def _probes(sampling: Mapping[str, Any], bounds: Mapping[str, float]) -> list[SampledProbe]:
    probes = []
    for name, raw in _dict(sampling.get("probes")).items():
        probe = _dict(raw)
        samples = [s for s in _list(probe.get("samples"))
                   if isinstance(s, Mapping) and _num(s.get("t")) is not None]
        probes.append(SampledProbe(
            name=str(name), samples=samples, figures=_dict(probe.get("figures")),
            rto_bound_s=bounds.get(str(name)), interval_s=_num(probe.get("interval_s")),
            stopped_by=probe.get("stopped_by") if isinstance(probe.get("stopped_by"), str)
            else None,
        ))  # fmt: skip
    return probes


def _actions(sampling: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The method's actions from the sampling marks: ``{"name", "start_t", "end_t", "status"}``."""
    actions: list[dict[str, Any]] = []
    for raw in _list(sampling.get("marks")):
        mark = _dict(raw)
        if mark.get("phase") != "method" or mark.get("type") != "action":
            continue
        if mark.get("event") == "activity_start" and (t := _num(mark.get("t"))) is not None:
            actions.append({"name": str(mark.get("name")), "start_t": t, "end_t": None,
                            "status": "running"})
        elif mark.get("event") == "activity_end" and actions:
            for action in reversed(actions):
                if action["name"] == str(mark.get("name")) and action["end_t"] is None:
                    action["end_t"] = _num(mark.get("call_end_t")) or _num(mark.get("t"))
                    action["status"] = str(mark.get("status", "?"))
                    break
    return actions


def _clip(where: str, value: Mapping[str, Any]) -> AudioClip | None:
    path = value.get("audio")
    if not isinstance(path, str) or not path:
        return None
    reason = short(f"{value.get('stage', '')}: {value.get('reason', '')}".strip(": "), 300)
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > MAX_CLIP_BYTES:
            return AudioClip(where, path, reason, problem=f"not embedded: {size} bytes, over "
                                                          f"{MAX_CLIP_BYTES}")
        data = file.read_bytes()
    except OSError as exc:
        return AudioClip(where, path, reason, problem=f"the audio file is missing or "
                                                      f"unreadable ({exc.strerror or exc})")
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        return AudioClip(where, path, reason, problem="not embedded: not a WAV file")
    return AudioClip(where, path, reason, data=data)


def _audio(probes: list[SampledProbe], steps: list[Step], journal: Mapping[str, Any]) -> list[
        AudioClip]:  # fmt: skip
    found: list[tuple[str, Mapping[str, Any]]] = []
    for probe in probes:
        for sample in probe.samples:
            found.append((f"{probe.name} at {_num(sample.get('t')) or 0:.1f} s",
                          _dict(sample.get("value"))))
    states = _dict(journal.get("steady_states"))
    for phase, runs in (("before", _list(_dict(states.get("before")).get("probes"))),
                        ("method", _list(journal.get("run"))),
                        ("after", _list(_dict(states.get("after")).get("probes")))):
        for raw in runs:
            output = _dict(_dict(raw).get("output"))
            name = _dict(_dict(raw).get("activity")).get("name", "?")
            found.append((f"{phase}: {name}", output))
            for i, result in enumerate(_list(output.get("results")), 1):
                found.append((f"{phase}: {name}, call {i}", _dict(result)))
    clips: list[AudioClip] = []
    seen: set[str] = set()
    for where, value in found:
        path = value.get("audio")
        if isinstance(path, str) and path not in seen:
            seen.add(path)
            clip = _clip(where, value) if len(clips) < MAX_CLIPS_PER_RUN else AudioClip(
                where, path, short(value.get("reason", "")),
                problem=f"not embedded: over {MAX_CLIPS_PER_RUN} clips in one run")
            if clip is not None:
                clips.append(clip)
    return clips


def _missing(journal: Mapping[str, Any], sampling: Mapping[str, Any]) -> list[str]:
    notes = []
    if not journal.get("end"):
        notes.append("The journal has no end: the run was interrupted or is still running; "
                     "what follows is what was journaled until then.")
    if "lkchaos_safety" not in journal:
        notes.append("No lkchaos safety section (lkchaos_safety): the run did not use the "
                     "lkchaos-safety control, so cleanup, faults left and refusals are unknown.")
    if not sampling:
        notes.append("No sampled series (lkchaos.sampling): the experiment did not declare the "
                     "sampling control, so there is no timeline, time to detect or RTO.")
    elif not _dict(sampling.get("fault")):
        notes.append("The sampling section has no fault window: no action of the method ran.")
    experiment = _dict(journal.get("experiment"))
    states = _dict(journal.get("steady_states"))
    if experiment.get("steady-state-hypothesis"):
        for phase in ("before", "after"):
            if not _dict(states.get(phase)):
                notes.append(f"The steady state was not checked {phase} the method.")
    return notes


def _problems(run_steps: list[Step], probes: list[SampledProbe], safety: Mapping[str, Any],
              verdict: str) -> list[str]:  # fmt: skip
    lines: list[str] = []
    if safety.get("refused"):
        lines.append(f"refused before anything ran: {short(safety['refused'], 600)}")
    if verdict == "interrupted":
        lines.append("the run was interrupted before it ended")
    for step in run_steps:
        where = {"before": "steady state before", "after": "steady state after",
                 "method": "method", "rollbacks": "rollback"}[step.phase]
        if step.status == "failed":
            lines.append(f"{where}: {step.kind} {step.name!r} failed: {step.error or '?'}")
        elif step.tolerance_met is False:
            lines.append(f"{where}: probe {step.name!r} missed its tolerance "
                         f"{short(step.tolerance, 120)} (value: {step.value or 'none'})")
    for item in _list(safety.get("not_recovered")):
        lines.append(f"fault not recovered: {short(_dict(item).get('fault'))}: "
                     f"{short(_dict(item).get('error') or _dict(item).get('outcome'))}")
    for probe in probes:
        if probe.rto_missed:
            lines.append(f"sampled probe {probe.name!r}: {probe.rto_missed}")
    if safety.get("error"):
        lines.append(f"the safety control failed: {short(safety['error'])}")
    return lines


def analyse(journal: Mapping[str, Any], index: int, source: str, suite_name: str = "") -> Run:
    """The :class:`Run` of one journal (already checked to be a journal)."""
    experiment = _dict(journal.get("experiment"))
    sampling = _dict(_dict(journal.get("lkchaos")).get("sampling"))
    safety = _dict(journal.get("lkchaos_safety"))
    missed = {str(_dict(m).get("probe")) for m in _list(safety.get("missed_tolerances"))}
    steps = _steps(journal, missed)
    names = [str(name) for name in _dict(sampling.get("probes"))]
    probes = _probes(sampling, scoring.bounds_of(experiment, names))
    verdict = verdict_of(journal)
    score, score_note = scoring.score_of(journal)
    title = str(experiment.get("title") or Path(source).stem)
    run_id = safety.get("run_id") or sampling.get("run_id")
    return Run(
        index=index, source=source, title=title, verdict=verdict,
        status=str(journal.get("status", "unknown")), deviated=bool(journal.get("deviated")),
        started_at=journal.get("start") if isinstance(journal.get("start"), str) else None,
        ended_at=journal.get("end") if isinstance(journal.get("end"), str) else None,
        duration_s=_num(journal.get("duration")),
        run_id=str(run_id) if run_id else None,
        probes=probes, fault=_dict(sampling.get("fault")) or None, actions=_actions(sampling),
        steps=steps, safety=safety, missing=_missing(journal, sampling),
        problems=_problems(steps, probes, safety, verdict),
        audio=_audio(probes, steps, journal), score=score, score_note=score_note,
        suite_name=suite_name or title,
    )  # fmt: skip
