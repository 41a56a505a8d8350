"""The validation checklist's items and what a check of one returns.

The items are the design notes' deployment validation checklist, in its order and words
(``items.yaml``); each has a stable id (``tls.certificates-not-expiring``). A check is a
function registered for one or more ids with :func:`check`: it receives a :class:`Context`
and returns a :class:`Finding`. An item without a check is manual: a person confirms it.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable
from importlib import resources
from typing import Any, Literal

import yaml

from lkchaos.settings import Settings

#: What a check found. ``manual``: a person must confirm it (``evidence`` says what);
#: ``n/a``: does not apply to this deployment (``evidence`` says why: no Egress configured);
#: ``error``: the check itself could not run (``evidence`` says why and what to do).
Status = Literal["pass", "fail", "warn", "manual", "n/a", "error"]
STATUSES: tuple[Status, ...] = ("pass", "fail", "warn", "manual", "n/a", "error")


@dataclasses.dataclass(frozen=True)
class Item:
    """One line of the checklist: ``id`` stable, ``text`` in the document's words."""

    id: str
    section: str
    group: str
    subgroup: str | None
    text: str
    parent: str | None = None


@dataclasses.dataclass(frozen=True)
class Finding:
    """A check's result: ``status``, one line of ``evidence`` a person can act on (a measured
    value with its unit, the offending header, a certificate's dates), and ``data`` (JSON
    values) for the journal, history and reports."""

    status: Status
    evidence: str
    data: dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Context:
    """What every check may use: the target's ``settings``, a per-check ``timeout_s``, the
    run's ``started_at`` and a ``cache`` shared by the checks of one run (facts several items
    need, such as a name's certificate chain or the containers' list, computed once: see
    :meth:`fact`)."""

    settings: Settings
    timeout_s: float = 10.0
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: When the run started (epoch seconds): what the deployment logs from then on may be the
    #: checks' own doing (a refused weak TLS client, a refused token).
    started_at: float = dataclasses.field(default_factory=time.time)

    def fact(self, key: str, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per run under ``key``; an exception it raised is raised again
        for every later caller (each item then reports it as its own ``error``)."""
        if key not in self.cache:
            try:
                self.cache[key] = ("ok", compute())
            except Exception as exc:  # kept, so that every item needing it says the same
                self.cache[key] = ("raised", exc)
        kind, value = self.cache[key]
        if kind == "raised":
            raise value
        return value


Check = Callable[[Context], Finding]

#: id -> check; filled by :func:`check` when the check modules are imported.
CHECKS: dict[str, Check] = {}


def check(*ids: str) -> Callable[[Check], Check]:
    """Register the decorated function as the check of each item in ``ids``.

    Raises ValueError for an id the checklist does not have, or one already registered.
    """
    known = {item.id for item in items()}

    def register(func: Check) -> Check:
        for item_id in ids:
            if item_id not in known:
                raise ValueError(f"{func.__name__}: no checklist item {item_id!r} (items.yaml)")
            if item_id in CHECKS:
                raise ValueError(f"{item_id!r} already has a check ({CHECKS[item_id].__name__})")
            CHECKS[item_id] = func
        return func

    return register


def early(func: Check) -> Check:
    """Mark a check that waits seconds on work several items share (a media session, a
    publish through Ingress, a port scan, media to every node): it starts before the others
    (in the document's order among themselves), so that the run ends sooner and the checks
    that read the same facts find them ready instead of each holding a worker."""
    func.starts_early = True  # type: ignore[attr-defined]
    return func


def alone(func: Check) -> Check:
    """Mark a check that measures latency, or needs the host's idle CPU (LiveKit Ingress
    admits a publish only while the host has some): it runs after the others, by itself, so
    that the run's own checks (scans, handshakes, calls in parallel threads) neither skew it
    nor starve it."""
    func.runs_alone = True  # type: ignore[attr-defined]
    return func


@functools.lru_cache(maxsize=1)
def items() -> tuple[Item, ...]:
    """Every item of the checklist, in the document's order."""
    raw = yaml.safe_load(resources.files(__package__).joinpath("items.yaml").read_text())
    return tuple(Item(**entry) for entry in raw["items"])
