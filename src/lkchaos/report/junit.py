"""The report as JUnit XML for CI systems, written with ``xml.etree.ElementTree``.

One ``<testsuite>`` per experiment run. Its test cases: each steady-state probe before and
after the method (``before: NAME``, ``after: NAME``), each method activity (``method: NAME``),
each rollback (``rollback: NAME``), one ``rto: PROBE`` per sampled probe with an RTO bound or
that did not recover (failure when its RTO is over the bound, or it was still failing when
sampling stopped; skipped when its recovery was not measured: it was not failing, but the run
ended before a sample after the fault), and, for a run that was refused or interrupted, a
``run`` case in error. A missed tolerance is a ``<failure>``; an activity that raised is an
``<error>``. A game day entry that did not run is a suite with one ``<skipped>`` case.
Characters XML 1.0 cannot hold (ANSI escapes, NUL...) are replaced.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from lkchaos.report.analyse import short
from lkchaos.report.model import (
    NOT_MEASURED,
    EntryInfo,
    Report,
    Run,
    SampledProbe,
    Step,
    label,
)

_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PHASES = {"before": "before", "after": "after", "method": "method", "rollbacks": "rollback"}


def clean(text: object) -> str:
    """``text`` with every character XML 1.0 cannot hold replaced by U+FFFD."""
    return _NOT_XML.sub("\ufffd", str(text))


class _Suite:
    def __init__(self, parent: ET.Element, name: str, timestamp: str | None) -> None:
        self.element = ET.SubElement(parent, "testsuite", name=clean(name))
        if timestamp:
            self.element.set("timestamp", clean(timestamp[:19]))
        self.properties = ET.SubElement(self.element, "properties")
        self.counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
        self.time = 0.0

    def prop(self, name: str, value: object) -> None:
        ET.SubElement(self.properties, "property", name=name, value=clean(value))

    def case(self, classname: str, name: str, seconds: float | None = None) -> ET.Element:
        case = ET.SubElement(self.element, "testcase", classname=clean(classname),
                             name=clean(name), time=f"{max(seconds or 0.0, 0.0):.3f}")
        self.counts["tests"] += 1
        self.time += max(seconds or 0.0, 0.0)
        return case

    def outcome(self, case: ET.Element, kind: str, message: str, details: str = "") -> None:
        tag = {"failures": "failure", "errors": "error", "skipped": "skipped"}[kind]
        child = ET.SubElement(case, tag, message=clean(short(message, 1000)))
        if kind != "skipped":
            child.set("type", {"failures": "tolerance", "errors": "error"}[kind])
        if details:
            child.text = clean(details)
        self.counts[kind] += 1

    def close(self) -> None:
        for key, value in self.counts.items():
            self.element.set(key, str(value))
        self.element.set("time", f"{self.time:.3f}")
        if not len(self.properties):
            self.element.remove(self.properties)


def _step(suite: _Suite, classname: str, step: Step) -> None:
    case = suite.case(classname, f"{_PHASES[step.phase]}: {step.name}", step.duration_s)
    if step.status == "failed":
        suite.outcome(case, "errors", f"{step.kind} {step.name!r} failed: "
                                      f"{step.error or 'no error recorded'}")
    elif step.tolerance_met is False:
        suite.outcome(case, "failures", f"{step.name!r} missed its tolerance "
                                        f"{short(step.tolerance, 300)}: value {step.value}",
                      f"tolerance: {short(step.tolerance, 2000)}\nvalue: {step.value}")
    elif step.status not in ("succeeded", "unknown"):
        suite.outcome(case, "errors", f"{step.kind} {step.name!r} ended {step.status}")


def _rto(suite: _Suite, classname: str, probe: SampledProbe) -> None:
    case = suite.case(classname, f"rto: {probe.name}")
    if probe.recovery == "not_measured":
        suite.outcome(case, "skipped", f"{probe.name}: {NOT_MEASURED}")
    elif probe.rto_missed:
        rto = probe.figure("rto_s")
        suite.outcome(case, "failures", f"{probe.name}: {probe.rto_missed}",
                      f"rto_s: {rto}\nbound_s: {probe.rto_bound_s}\nrecovered: "
                      f"{probe.figures.get('recovered')}\ntime_to_detect_s: "
                      f"{probe.figures.get('time_to_detect_s')}")


def _run(root: ET.Element, run: Run) -> None:
    suite = _Suite(root, run.suite_name, run.started_at)
    classname = run.suite_name
    suite.prop("verdict", run.verdict)
    suite.prop("journal", run.source)
    if run.run_id:
        suite.prop("run_id", run.run_id)
    if run.score is not None:
        suite.prop("score", f"{run.score:.1f}")
    if run.verdict in ("refused", "interrupted", "not_recovered"):
        case = suite.case(classname, "run")
        said = label(run.verdict)
        reason = next((p for p in run.problems if p.startswith(("refused", said))), "") or {
            "interrupted": "the run was interrupted before it ended",
            "not_recovered": "the deployment was not back at its baseline after the run",
        }.get(run.verdict, "")
        if reason.startswith(said):
            reason = reason[len(said):].lstrip(": ")
        suite.outcome(case, "errors", f"{said}: {reason}")
    for step in run.steps:
        _step(suite, classname, step)
    for probe in run.probes:
        if probe.rto_bound_s is not None or probe.recovery in ("not_recovered", "not_measured"):
            _rto(suite, classname, probe)
    for item in run.safety.get("not_recovered") or []:
        case = suite.case(classname, f"cleanup: {short(item, 120)}")
        suite.outcome(case, "errors", f"fault not recovered: {short(item, 600)}")
    suite.close()


def _skipped(root: ET.Element, info: EntryInfo) -> None:
    name = info.name if info.repeat <= 1 else f"{info.name} (repeat {info.repeat})"
    suite = _Suite(root, name, None)
    suite.prop("experiment", info.experiment)
    suite.prop("outcome", info.outcome)
    case = suite.case(name, f"entry: {info.name}")
    suite.outcome(case, "skipped", f"{label(info.outcome)}: {info.note or 'did not run'}")
    suite.close()


def render(report: Report) -> str:
    """The JUnit XML document (UTF-8 declared)."""
    root = ET.Element("testsuites", name=clean(report.title))
    if report.entries:
        for entry in report.entries:
            if entry.run is None:
                _skipped(root, entry.info)
            else:
                _run(root, entry.run)
    else:
        for run in report.runs:
            _run(root, run)
    totals = {k: 0 for k in ("tests", "failures", "errors", "skipped")}
    seconds = 0.0
    for suite in root:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
        seconds += float(suite.get("time", "0"))
    for key, value in totals.items():
        root.set(key, str(value))
    root.set("time", f"{seconds:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode")

