"""The deployment validation checklist as code (``lkchaos validate``).

Every item of the checklist (:func:`items`, in the document's order, each with a stable id)
is either checked by a program registered with :func:`check` (the modules of
:mod:`lkchaos.validate.checks`) or listed as manual with what a person must confirm::

    from lkchaos.settings import Settings
    from lkchaos.validate import run, select

    report = run(select(section="tls"), Settings.load())
    for result in report.results:
        print(result.status, result.item.id, result.evidence)
    print(report.exit_code())

:mod:`lkchaos.validate.probes` has the same as a Chaos Toolkit probe.
"""

from __future__ import annotations

from lkchaos.validate.model import STATUSES, Context, Finding, Item, Status, check, items
from lkchaos.validate.runner import ItemResult, Report, run
from lkchaos.validate.selection import SelectionError, select

__all__ = ["STATUSES", "Context", "Finding", "Item", "ItemResult", "Report", "SelectionError",
           "Status", "check", "items", "run", "select"]
