"""From a Chaos Toolkit journal to the history's rows (see docs/history.md for every figure).

- Faults injected and undone: as the safety control counted them in the audit log at the
  run's end (``lkchaos_safety.faults``: what `lkchaos audit --run` lists). A journal without
  that count (written before it was kept) is counted as before: injected, the method's
  actions of lkchaos modules (``lkchaos.*``) that succeeded (also one that restores:
  ``start_service`` after ``kill_service`` counted 2); undone, injected minus the safety
  control's ``not_recovered``, never below 0; None without a safety section.
- Availability, time to detect, RTO of the run: the worst over the sampled probes (lowest
  availability, longest TTD and RTO); None without sampling.
"""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import hashlib
import json
import os
import re
import uuid
import zlib
from collections.abc import Iterable, Mapping
from pathlib import PurePath
from typing import Any

ENCODING = "json+zlib"
REASON_LIMIT = 200
_REASON_KEYS = ("reason", "error", "stage", "status")


def encode(value: Any) -> Any:
    """JSON encoding of what a journal may hold besides JSON types (never fails)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, decimal.Decimal | uuid.UUID | PurePath):
        return str(value)
    return repr(value)


def to_json(value: Any, *, canonical: bool = False) -> str:
    if canonical:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                          default=encode)  # fmt: skip
    return json.dumps(value, ensure_ascii=False, default=encode)


def compress(journal: Mapping[str, Any]) -> bytes:
    return zlib.compress(to_json(journal).encode("utf-8"), 6)


def decompress(encoding: str, data: bytes) -> dict[str, Any]:
    if encoding != ENCODING:
        raise ValueError(f"unknown journal encoding {encoding!r}")
    loaded = json.loads(zlib.decompress(data).decode("utf-8"))
    return loaded if isinstance(loaded, dict) else {"journal": loaded}


def experiment_hash(experiment: Any) -> str:
    """sha256 (hex) of the canonical JSON of the experiment (sorted keys, no spaces)."""
    return hashlib.sha256(to_json(experiment, canonical=True).encode("utf-8")).hexdigest()


def experiment_name(title: str, path: str | None) -> str:
    """The file's stem when the path is known, else a slug of the title."""
    if path:
        return PurePath(path).stem
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return slug[:200] or "experiment"


def parse_time(raw: Any) -> dt.datetime | None:
    """An ISO timestamp as aware UTC (naive ones are taken as UTC); None if unparsable."""
    if isinstance(raw, dt.datetime):
        when = raw
    elif isinstance(raw, str):
        try:
            when = dt.datetime.fromisoformat(raw)
        except ValueError:
            return None
    else:
        return None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).astimezone(dt.UTC)


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def sampled_probes(journal: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    sampling = (journal.get("lkchaos") or {}).get("sampling") or {}
    probes = sampling.get("probes") or {}
    return {str(k): v for k, v in probes.items() if isinstance(v, Mapping)}


def faults(journal: Mapping[str, Any]) -> tuple[int, int | None]:
    """(injected, undone) as described in the module docstring."""
    injected = 0
    for run in journal.get("run") or []:
        activity = run.get("activity") or {}
        provider = activity.get("provider") or {}
        if (activity.get("type") == "action" and run.get("status") == "succeeded"
                and provider.get("type") == "python"
                and str(provider.get("module", "")).startswith("lkchaos.")):  # fmt: skip
            injected += 1
    safety = journal.get("lkchaos_safety")
    if not isinstance(safety, Mapping) or safety.get("run_id") is None:
        return injected, None
    counted = safety.get("faults")
    if isinstance(counted, Mapping) and all(
            isinstance(counted.get(k), int) and not isinstance(counted.get(k), bool)
            for k in ("injected", "undone")):  # fmt: skip
        return max(0, int(counted["injected"])), max(0, int(counted["undone"]))
    return injected, max(0, injected - len(safety.get("not_recovered") or []))


def probe_rows(journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row of figures per sampled probe."""
    rows = []
    for name, probe in sampled_probes(journal).items():
        fig = probe.get("figures") or {}
        recovered = fig.get("recovered")
        rows.append({
            "probe": name[:200],
            "samples": int(fig.get("samples") or len(probe.get("samples") or [])),
            "failures": int(fig.get("failures") or 0),
            "availability": _float(fig.get("availability")),
            "availability_during_fault": _float(fig.get("availability_during_fault")),
            "time_to_detect_s": _float(fig.get("time_to_detect_s")),
            "rto_s": _float(fig.get("rto_s")),
            "recovered": recovered if isinstance(recovered, bool) else None,
            "longest_outage_s": _float(fig.get("longest_outage_s")),
        })  # fmt: skip
    return rows


def reason(sample: Mapping[str, Any]) -> str | None:
    """A short text of a sample's result: its reason/error/stage/status, or, for a failure
    without one, its value as compact JSON; at most 200 characters."""
    value = sample.get("value")
    text: str | None = None
    if isinstance(value, Mapping):
        for key in _REASON_KEYS:
            if value.get(key) not in (None, ""):
                text = str(value[key])
                break
    if text is None and not sample.get("ok") and value is not None:
        text = value if isinstance(value, str) else to_json(value, canonical=True)
    if text is None:
        return None
    return text if len(text) <= REASON_LIMIT else text[: REASON_LIMIT - 1] + "…"


def sample_rows(journal: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per sample of every sampled probe (samples without a ``t`` are skipped)."""
    rows = []
    for name, probe in sampled_probes(journal).items():
        for sample in probe.get("samples") or []:
            t = _float(sample.get("t")) if isinstance(sample, Mapping) else None
            if t is None:
                continue
            rows.append({"probe": name[:200], "t": t, "at": parse_time(sample.get("at")),
                         "ok": bool(sample.get("ok")),
                         "latency_ms": _float(sample.get("latency_ms")),
                         "reason": reason(sample)})  # fmt: skip
    return rows


def worst(rows: list[dict[str, Any]]) -> tuple[float | None, float | None, float | None]:
    """(availability, time_to_detect_s, rto_s) of the run: worst over its probes."""

    def pick(key: str) -> list[float]:
        return [row[key] for row in rows if row[key] is not None]

    availability, ttd, rto = pick("availability"), pick("time_to_detect_s"), pick("rto_s")
    return (min(availability) if availability else None, max(ttd) if ttd else None,
            max(rto) if rto else None)  # fmt: skip


def livekit_version(journal: Mapping[str, Any] | None = None) -> str | None:
    """The LiveKit version the run met: ``$LKCHAOS_LIVEKIT_VERSION`` when set, else the first
    ``livekit_version`` an activity of the journal reported (the room-state probes read it
    from LiveKit's Redis), else None (unknown: never a guess)."""
    explicit = os.environ.get("LKCHAOS_LIVEKIT_VERSION", "").strip()
    if explicit:
        return explicit[:64]
    found = _first_version(journal) if journal is not None else None
    return found[:64] if found else None


def _first_version(value: Any, depth: int = 0) -> str | None:
    if depth > 12:
        return None
    if isinstance(value, Mapping):
        found = value.get("livekit_version")
        if isinstance(found, str) and found.strip():
            return found.strip()
        items: Iterable[Any] = value.values()
    elif isinstance(value, list):
        items = value
    else:
        return None
    for item in items:
        inner = _first_version(item, depth + 1)
        if inner:
            return inner
    return None
