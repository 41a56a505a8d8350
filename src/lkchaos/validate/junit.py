"""The run as JUnit XML: one ``<testsuite>`` per section, one ``<testcase>`` per item.

``classname`` is the item's group id (``tls``), ``name`` its id and text; a ``fail`` is a
``<failure>`` with the evidence, an ``error`` an ``<error>``, a ``manual`` or ``n/a`` item is
``<skipped>`` with the reason; ``pass`` and ``warn`` pass (a warning's evidence is in
``<system-out>``).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from lkchaos.validate.manual import group_id
from lkchaos.validate.output import plain
from lkchaos.validate.runner import Report

_TAGS = {"fail": "failure", "error": "error", "manual": "skipped", "n/a": "skipped"}
_KEYS = {"failure": "failures", "error": "errors", "skipped": "skipped"}


def _clean(text: object) -> str:
    # Characters XML 1.0 cannot hold (NUL, ANSI escapes) become U+FFFD.
    from lkchaos.report.junit import clean

    return clean(text)


def render(report: Report) -> str:
    """The XML document (UTF-8, with its declaration)."""
    root = ET.Element("testsuites", name="lkchaos validate")
    suites: dict[str, tuple[ET.Element, dict[str, float]]] = {}
    for result in report.results:
        item = result.item
        if item.section not in suites:
            element = ET.SubElement(root, "testsuite", name=_clean(item.section),
                                    timestamp=report.started_at.isoformat(timespec="seconds"))
            suites[item.section] = (element, {"tests": 0, "failures": 0, "errors": 0,
                                              "skipped": 0, "time": 0.0})  # fmt: skip
        element, counts = suites[item.section]
        took = result.duration_s or 0.0
        case = ET.SubElement(element, "testcase", classname=_clean(group_id(item.id)),
                             name=_clean(f"{item.id}: {plain(item.text)}"), time=f"{took:.3f}")
        counts["tests"] += 1
        counts["time"] += took
        tag = _TAGS.get(result.status)
        if tag is not None:
            message = result.evidence if result.status != "n/a" else f"n/a: {result.evidence}"
            child = ET.SubElement(case, tag, message=_clean(message[:1000]))
            if tag != "skipped":
                child.set("type", result.status)
                child.text = _clean(result.evidence)
            counts[_KEYS[tag]] += 1
        elif result.evidence:
            ET.SubElement(case, "system-out").text = _clean(f"{result.status}: {result.evidence}")
    totals = {"tests": 0.0, "failures": 0.0, "errors": 0.0, "skipped": 0.0, "time": 0.0}
    for element, counts in suites.values():
        for key, value in counts.items():
            element.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
            totals[key] += value
    for key, value in totals.items():
        root.set(key, f"{value:.3f}" if key == "time" else str(int(value)))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"
