"""Fault marks: while a fault is active, a Pushgateway holds the gauge
``lkchaos_fault_active{experiment, action, target}`` at 1, and at 0 once it is undone, so that
a person reading Prometheus (which scrapes the Pushgateway with ``honor_labels: true``) sees
when chaos ran and on what.

The fault ledger (:mod:`lkchaos.safety.ledger`) marks each fault when it records it and
unmarks it when it forgets it or undoes it: every fault lkchaos makes is marked, whatever
activity made it. ``action`` is the ledger's kind of fault (``stopped``, ``toxic``, ...),
``target`` what it was made on, ``experiment`` the title of the run (``""`` outside a run).
Each (experiment, action, target) is one Pushgateway group (job ``lkchaos``), replaced by
every mark, so the gauge's labels are exactly those three plus ``job`` and ``instance``.

Marks are best effort: a Pushgateway that is down or slow costs an action at most
:data:`TIMEOUT` (about one second), is said once in the log per URL, and never fails it. The
Pushgateway is the ``pushgateway_url`` setting of the last :meth:`Settings.load
<lkchaos.settings.Settings.load>` of this process (:func:`note_pushgateway`); ``""`` (the
target's ``monitoring`` section names none) means no marks at all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any

import httpx

from lkchaos.prometheus import client

logger = logging.getLogger("chaostoolkit")

JOB = "lkchaos"
METRIC = "lkchaos_fault_active"
#: One mark's bound: connect, send and read together take at most one second.
TIMEOUT = httpx.Timeout(connect=0.5, write=0.2, read=0.3, pool=0.2)

_lock = threading.Lock()
_pushgateway: dict[str, str] = {"url": ""}
#: The URLs already said to be unreachable in the log.
_warned: set[str] = set()


def note_pushgateway(url: str) -> None:
    """Say where marks go from now on (``""``: nowhere)."""
    _pushgateway["url"] = url


def pushgateway_url() -> str:
    return _pushgateway["url"]


def grouping(entry: Mapping[str, Any]) -> dict[str, str]:
    """A ledger entry's labels: ``experiment``, ``action`` (its kind), ``target``."""
    return {"experiment": str(entry.get("experiment") or ""),
            "action": str(entry.get("kind") or ""),
            "target": str(entry.get("target") or "")}  # fmt: skip


def exposition(value: int) -> str:
    """The group's metrics, in the text exposition format."""
    return (f"# HELP {METRIC} 1 while lkchaos holds this fault in place, 0 once undone.\n"
            f"# TYPE {METRIC} gauge\n{METRIC} {value}\n")  # fmt: skip


def fault_started(entry: Mapping[str, Any]) -> bool:
    """Mark a recorded fault active; False when no mark was written."""
    return _mark(entry, 1)


def fault_ended(entry: Mapping[str, Any]) -> bool:
    """Mark a fault undone (0); False when no mark was written."""
    return _mark(entry, 0)


def _mark(entry: Mapping[str, Any], value: int) -> bool:
    url = _pushgateway["url"]
    if not url:
        return False
    try:
        client.Pushgateway(url).put(JOB, grouping(entry), exposition(value), TIMEOUT)
    except Exception as exc:  # best effort: nothing about a mark may fail the action
        with _lock:
            first = url not in _warned
            _warned.add(url)
        if first:
            logger.warning(
                "fault marks are not written: %s. Faults still run and are recorded; start "
                "the Pushgateway, or set LKCHAOS_PUSHGATEWAY_URL=\"\" (or leave "
                "pushgateway_url out of the target's monitoring section) to stop trying. "
                "Said once per process.", exc)
        return False
    return True
