"""The validation checklist as a Chaos Toolkit probe: "the checklist holds" as steady state.

``checklist`` runs the automated items of a section, of some ids, or of the whole document
(as ``lkchaos validate`` does) and returns a dict; use it with a jsonpath tolerance on
``ok``, or on one item's status::

    {"type": "probe", "name": "tls-checklist-holds",
     "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.validate.probes",
                  "func": "checklist", "arguments": {"section": ["tls"], "timeout": 20}}}
"""

from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import LkChaosError
from lkchaos.settings import Settings
from lkchaos.validate import runner, selection

__all__ = ["checklist"]

MAX_TIMEOUT_S = 600.0


def _check_args(section: Any, only: Any, skip: Any, timeout: Any) -> list[Any]:
    """The items the arguments select; ActivityFailed naming the argument that is wrong."""
    for name, value in (("section", section), ("only", only), ("skip", skip)):
        if value is not None and not isinstance(value, str | list):
            raise ActivityFailed(f"{name} must be a list of section or item ids, not {value!r}")
        if isinstance(value, list) and not all(isinstance(v, str) for v in value):
            raise ActivityFailed(f"{name} must be a list of strings, not {value!r}")
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (
            0 < timeout <= MAX_TIMEOUT_S):  # fmt: skip
        raise ActivityFailed(f"timeout must be a number of seconds in (0, {MAX_TIMEOUT_S:g}], "
                             f"not {timeout!r}")  # fmt: skip
    try:
        chosen = selection.select(section, only, skip)
    except selection.SelectionError as exc:
        named = "section" if "section" in str(exc).split(":")[0] else "only"
        raise ActivityFailed(f"{named}: {exc}") from exc
    return chosen


def checklist(
    section: List[str] = None,  # type: ignore[assignment]
    only: List[str] = None,  # type: ignore[assignment]
    skip: List[str] = None,  # type: ignore[assignment]
    timeout: float = 30.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Run the automated items of the validation checklist against the target.

    ``section``: section titles or group ids (``tls``); ``only``/``skip``: item ids or their
    prefixes (as ``lkchaos validate --section/--only/--skip``); every item by default.
    ``timeout``: seconds each check may take. Returns ``{"ok": bool, "counts": {status: n},
    "failed": [{"id", "text", "evidence"}], "errors": [same], "items": [{"id", "status",
    "evidence"}]}``; ``ok`` is true when no automated item failed or could not be checked
    (``error``). Items no program checks are left out."""
    chosen = _check_args(section, only, skip, timeout)
    try:
        settings = Settings.load(configuration, secrets)
        report = runner.run(chosen, settings, timeout_s=float(timeout), automated_only=True)
    except LkChaosError as exc:
        raise ActivityFailed(f"the checklist could not run: {exc}") from exc
    if report.load_errors:
        raise ActivityFailed("the checklist could not run: " + "; ".join(report.load_errors))

    def listed(status: str) -> list[dict[str, str]]:
        return [{"id": r.item.id, "text": r.item.text, "evidence": r.evidence}
                for r in report.results if r.status == status]  # fmt: skip

    failed, errors = listed("fail"), listed("error")
    return {
        "ok": not failed and not errors,
        "counts": report.counts(),
        "failed": failed,
        "errors": errors,
        "items": [{"id": r.item.id, "status": r.status, "evidence": r.evidence}
                  for r in report.results],
    }  # fmt: skip
