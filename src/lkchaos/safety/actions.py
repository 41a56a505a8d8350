"""``recover``: undo every fault lkchaos can leave behind; also a rollback of last resort.

Returns ``{"recovered": [{"fault": "...", "outcome": "..."}], "count": n}``::

    {"type": "action", "name": "put-everything-back",
     "provider": {"type": "python", "module": "lkchaos.safety.actions", "func": "recover"}}
"""

from typing import Any, Dict

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.safety.recovery import RunInProgress
from lkchaos.safety.recovery import recover as _recover
from lkchaos.settings import Settings

__all__ = ["recover"]


def recover(configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Undo every fault in the ledger, remove lkchaos toxics, re-enable lkchaos links,
    unpause and start the project's services, and release a stale run lock. Fails while
    another process runs an experiment against the stack (this run's own lock is fine)."""
    settings = Settings.load(configuration, secrets)
    try:
        report = _recover(settings, dict(configuration or {}))
    except RunInProgress as exc:
        raise ActivityFailed(str(exc)) from exc
    return {"recovered": report, "count": len(report)}
