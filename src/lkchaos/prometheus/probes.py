"""Probes on the deployment's monitoring: a PromQL query, an alert's state, waiting for an
alert to fire or resolve, the scrape targets' health, and Alertmanager's alerts.

They read the ``prometheus_url`` and ``alertmanager_url`` settings (the target's
``monitoring`` section; on the reference stack 127.0.0.1:29090 and :29093). A setting that is
``""`` means the deployment has none: the probe refuses, saying what to set.

``query`` runs an instant query and returns ``{"ok", "value", "series", "count",
"result_type", "expr", "warnings"}``. ``series`` is ``[{"labels": {...}, "value": float}]``
(for a range vector, each series' last sample); ``value`` is the result's one number: the
scalar, or the value of the only series, else None (empty, or several series: aggregate them
with ``sum(...)``/``max(...)``). ``ok`` is true when the result is not empty, which is how a
PromQL comparison says "true" (``up{job="livekit"} == 1`` is empty when no node is up); a
scalar result is ok when it is finite and not 0. A
query Prometheus refuses (a syntax error, a timeout) raises with Prometheus's own message::

    {"type": "probe", "name": "error-ratio-under-1-percent",
     "tolerance": {"type": "range", "range": [0, 0.01], "target": "value"},
     "provider": {"type": "python", "module": "lkchaos.prometheus.probes", "func": "query",
      "arguments": {"expr": "sum(rate(errors_total[1m])) / sum(rate(calls_total[1m]))"}}}

``alert_state`` returns ``{"alertname", "state", "active_since", "for_s", "count",
"alerts"}``: ``state`` is ``firing`` when any alert of that name (whose labels include
``labels``) fires, else ``pending`` when one waits out its ``for``, else ``inactive``;
``active_since`` is when the earliest of those became active (RFC 3339), ``for_s`` the rule's
``for`` in seconds. An alert name that no alerting rule has is an error (a typo would
otherwise look like an alert that never fires).

``wait_for_alert`` polls until the alert reaches ``state`` or ``within_s`` passes, and returns
``{"ok", "alertname", "wanted", "state", "waited_s", "within_s", "for_s", "active_since",
"polls", "last_error"}``. A Prometheus that stops answering for a while (it may be the service
the fault hits) is polled again; ``last_error`` says why it did not answer. "Fires within its
``for`` plus a scrape interval" and "resolves after" are two calls::

    {"type": "probe", "name": "service-down-fires",
     "tolerance": {"type": "jsonpath", "path": "$.ok", "expect": true},
     "provider": {"type": "python", "module": "lkchaos.prometheus.probes",
                  "func": "wait_for_alert",
                  "arguments": {"alertname": "ServiceDown", "labels": {"job": "agent"},
                                "state": "firing", "within_s": 25}}}

``targets_up`` returns ``{"ok", "count", "up", "down", "errors", "missing_jobs",
"targets"}``: ``ok`` only when every active scrape target (of ``jobs``, when given, each with
at least one target) is up; ``down`` names the others as ``job/instance``, ``errors`` gives
each one's last scrape error.

``alertmanager_alerts`` returns ``{"ok", "count", "alerts"}`` from Alertmanager's API v2:
each alert's ``labels``, ``state`` (``active``, ``suppressed`` or ``unprocessed``),
``starts_at``, ``ends_at``, ``receivers`` and ``fingerprint``; ``ok`` when at least one is
active.
"""

import difflib
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Dict, List

from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.prometheus import client
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_text

__all__ = ["query", "alert_state", "wait_for_alert", "targets_up", "alertmanager_alerts"]

STATES = ("firing", "pending", "inactive")
#: Bounds of the time arguments, in seconds.
MAX_TIMEOUT_S = 300.0
MAX_WITHIN_S = 3600.0
#: The longest expression accepted (Prometheus takes it as a URL parameter).
MAX_EXPR = 8000


def _prometheus(configuration: Configuration, secrets: Secrets) -> client.Prometheus:
    url = Settings.load(configuration, secrets).prometheus_url
    if not url:
        raise ActivityFailed(
            "the target has no Prometheus: add `monitoring: {prometheus_url: URL}` to the "
            "target file, or set LKCHAOS_PROMETHEUS_URL (or the configuration key "
            "prometheus_url)")
    return client.Prometheus(url)


def _alertmanager(configuration: Configuration, secrets: Secrets) -> client.Alertmanager:
    url = Settings.load(configuration, secrets).alertmanager_url
    if not url:
        raise ActivityFailed(
            "the target has no Alertmanager: add `monitoring: {alertmanager_url: URL}` to the "
            "target file, or set LKCHAOS_ALERTMANAGER_URL (or the configuration key "
            "alertmanager_url)")
    return client.Alertmanager(url)


@contextmanager
def _failing(what: str) -> Iterator[None]:
    try:
        yield
    except client.MonitoringError as exc:
        raise ActivityFailed(f"{what} failed: {exc}") from exc


# --- argument checks (shared with lkchaos.preflight) ------------------------------------------

def _check_query(expr: Any, timeout: Any) -> None:
    check_text("expr", expr)
    if len(expr) > MAX_EXPR:
        raise ActivityFailed(f"expr must be at most {MAX_EXPR} characters, not {len(expr)}")
    check_number("timeout", timeout, "seconds", strict=True, maximum=MAX_TIMEOUT_S)


def _check_labels(labels: Any) -> None:
    if labels is None:
        return
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and k and isinstance(v, str) for k, v in labels.items()
    ):
        raise ActivityFailed('labels must map label names to values, such as {"job": "agent"}, '
                             f"not {labels!r}")  # fmt: skip


def _check_alert(alertname: Any, labels: Any) -> None:
    check_text("alertname", alertname)
    _check_labels(labels)


def _check_wait(alertname: Any, state: Any, within_s: Any, labels: Any,
                interval_s: Any) -> None:  # fmt: skip
    _check_alert(alertname, labels)
    if state not in STATES:
        raise ActivityFailed(f"state must be one of {', '.join(STATES)}, not {state!r}")
    check_number("within_s", within_s, "seconds", maximum=MAX_WITHIN_S)
    check_number("interval_s", interval_s, "seconds", minimum=0.1, maximum=60.0)


def _check_targets(jobs: Any, timeout: Any) -> None:
    if jobs is not None and (not isinstance(jobs, list) or not jobs
                             or not all(isinstance(j, str) and j for j in jobs)):  # fmt: skip
        raise ActivityFailed(f"jobs must be a non-empty list of scrape job names, not {jobs!r}")
    check_number("timeout", timeout, "seconds", strict=True, maximum=MAX_TIMEOUT_S)


# --- query ------------------------------------------------------------------------------------

def _number(text: Any) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def shape_result(data: Dict[str, Any]) -> Dict[str, Any]:
    """``{"result_type", "series", "value", "ok", "count"}`` of a query's ``data``."""
    kind = str(data.get("resultType"))
    result = data.get("result")
    series: List[Dict[str, Any]] = []
    value: float | None = None
    ok = False
    if kind == "scalar" and isinstance(result, list) and len(result) == 2:
        # A scalar is always "a result": ok only when it says yes (finite and not 0, as
        # `1 > bool 0` or `scalar(up)` does), never for 0 or NaN.
        value = _number(result[1])
        ok = value is not None and math.isfinite(value) and value != 0
    elif kind == "vector":
        series = [{"labels": dict(item.get("metric") or {}),
                   "value": _number((item.get("value") or [None, None])[1])}
                  for item in result or []]  # fmt: skip
    elif kind == "matrix":
        series = [{"labels": dict(item.get("metric") or {}),
                   "value": _number(item["values"][-1][1]) if item.get("values") else None,
                   "samples": len(item.get("values") or [])}
                  for item in result or []]  # fmt: skip
    if series:
        ok = True
        value = series[0]["value"] if len(series) == 1 else None
    return {"ok": ok, "value": value, "series": series, "count": len(series),
            "result_type": kind}  # fmt: skip


def query(expr: str, timeout: float = 10.0,
          configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """An instant PromQL query: ``{"ok", "value", "series", "count", "result_type", "expr",
    "warnings"}``. ``value`` is the scalar or the only series' value (else None); ``ok`` is
    true when the result is not empty (for a scalar: when it is finite and not 0).
    Prometheus evaluates for at most ``timeout`` seconds;
    a query it refuses raises with its own message."""
    _check_query(expr, timeout)
    prometheus = _prometheus(configuration, secrets)
    with _failing(f"the query {expr!r}"):
        data, warnings = prometheus.query(expr, float(timeout))
    return {**shape_result(data), "expr": expr, "warnings": warnings}


# --- alerts -----------------------------------------------------------------------------------

def _matches(alert: Dict[str, Any], alertname: str, labels: Dict[str, str] | None) -> bool:
    found = alert.get("labels") or {}
    return found.get("alertname") == alertname and all(
        found.get(key) == value for key, value in (labels or {}).items())


def _rule_for(prometheus: client.Prometheus, alertname: str) -> float:
    """The ``for`` (seconds) of the alerting rule ``alertname``; ActivityFailed when no
    alerting rule has that name (naming the close ones)."""
    rules = prometheus.alert_rules()
    durations = [float(r.get("duration") or 0.0) for r in rules if r.get("name") == alertname]
    if not durations:
        names = sorted({str(r.get("name")) for r in rules})
        close = difflib.get_close_matches(alertname, names, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        raise ActivityFailed(
            f"Prometheus at {prometheus.base_url} has no alerting rule {alertname!r}{hint}; "
            f"its alerting rules: {', '.join(names) or 'none'}")
    return max(durations)


def _state(prometheus: client.Prometheus, alertname: str,
           labels: Dict[str, str] | None) -> Dict[str, Any]:  # fmt: skip
    alerts = [a for a in prometheus.alerts() if _matches(a, alertname, labels)]
    shown = [{"labels": dict(a.get("labels") or {}), "state": a.get("state"),
              "active_since": a.get("activeAt"), "value": _number(a.get("value"))}
             for a in alerts]  # fmt: skip
    state = next((s for s in STATES if any(a["state"] == s for a in shown)), "inactive")
    since = sorted(str(a["active_since"]) for a in shown
                   if a["state"] == state and a["active_since"])  # fmt: skip
    return {"alertname": alertname, "state": state, "active_since": since[0] if since else None,
            "count": len(shown), "alerts": shown}  # fmt: skip


def alert_state(alertname: str,
                labels: Dict[str, str] = None,  # type: ignore[assignment]
                configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """The state of the alert ``alertname`` (those of its alerts whose labels include
    ``labels``): ``{"alertname", "state": "firing"|"pending"|"inactive", "active_since",
    "for_s", "count", "alerts"}``, from Prometheus's ``/api/v1/alerts``."""
    _check_alert(alertname, labels)
    prometheus = _prometheus(configuration, secrets)
    with _failing(f"reading the alert {alertname!r}"):
        for_s = _rule_for(prometheus, alertname)
        found = _state(prometheus, alertname, labels)
    return {**found, "for_s": for_s}


def wait_for_alert(alertname: str,
                   state: str = "firing", within_s: float = 120.0,
                   labels: Dict[str, str] = None,  # type: ignore[assignment]
                   interval_s: float = 1.0,
                   configuration: Configuration = None, secrets: Secrets = None
                   ) -> Dict[str, Any]:  # fmt: skip
    """Poll the alert every ``interval_s`` until it is in ``state`` (``firing``, ``pending``
    or ``inactive``: resolved) or ``within_s`` seconds pass: ``{"ok", "alertname", "wanted",
    "state", "waited_s", "within_s", "for_s", "active_since", "polls", "last_error"}``."""
    _check_wait(alertname, state, within_s, labels, interval_s)
    prometheus = _prometheus(configuration, secrets)
    start = time.monotonic()
    deadline = start + float(within_s)
    for_s: float | None = None
    seen: Dict[str, Any] = {"state": None, "active_since": None}
    last_error = ""
    polls = 0
    while True:
        polls += 1
        try:
            if for_s is None:
                for_s = _rule_for(prometheus, alertname)
            seen = _state(prometheus, alertname, labels)
            last_error = ""
        except client.MonitoringError as exc:  # Prometheus may be restarting: poll again
            last_error = str(exc)
        now = time.monotonic()
        if seen["state"] == state and not last_error:
            break
        if now >= deadline:
            break
        time.sleep(min(float(interval_s), deadline - now))
    return {"ok": seen["state"] == state and not last_error, "alertname": alertname,
            "wanted": state, "state": seen["state"], "waited_s": round(now - start, 3),
            "within_s": within_s, "for_s": for_s, "active_since": seen["active_since"],
            "polls": polls, "last_error": last_error or None}  # fmt: skip


# --- scrape targets ---------------------------------------------------------------------------

def targets_up(jobs: List[str] = None,  # type: ignore[assignment]
               timeout: float = 5.0,
               configuration: Configuration = None, secrets: Secrets = None) -> Dict[str, Any]:
    """Every active scrape target (of ``jobs``, when given) and its health: ``{"ok", "count",
    "up", "down", "errors", "missing_jobs", "targets"}``; ``ok`` only when all are up (and
    each of ``jobs`` has a target)."""
    _check_targets(jobs, timeout)
    prometheus = _prometheus(configuration, secrets)
    with _failing("reading Prometheus's scrape targets"):
        found = prometheus.targets(float(timeout))
    targets = []
    for item in found:
        labels = item.get("labels") or {}
        job = str(labels.get("job") or item.get("scrapePool") or "")
        if jobs is not None and job not in jobs:
            continue
        targets.append({"job": job, "instance": str(labels.get("instance") or ""),
                        "url": item.get("scrapeUrl"), "health": item.get("health"),
                        "last_error": item.get("lastError") or "",
                        "last_scrape": item.get("lastScrape")})  # fmt: skip
    down = [t for t in targets if t["health"] != "up"]
    missing = sorted(set(jobs or []) - {t["job"] for t in targets})
    return {
        "ok": bool(targets) and not down and not missing,
        "count": len(targets),
        "up": len(targets) - len(down),
        "down": [f"{t['job']}/{t['instance']}" for t in down],
        "errors": {f"{t['job']}/{t['instance']}": t["last_error"] or f"health {t['health']}"
                   for t in down},
        "missing_jobs": missing,
        "targets": targets,
    }


# --- Alertmanager -----------------------------------------------------------------------------

def alertmanager_alerts(alertname: str = None,  # type: ignore[assignment]
                        configuration: Configuration = None,
                        secrets: Secrets = None) -> Dict[str, Any]:  # fmt: skip
    """The alerts Alertmanager holds (named ``alertname``, when given), from its API v2:
    ``{"ok", "count", "alerts": [{"labels", "state", "starts_at", "ends_at", "receivers",
    "fingerprint"}]}``; ``ok`` when at least one is active (not silenced or inhibited)."""
    if alertname is not None:
        check_text("alertname", alertname)
    alertmanager = _alertmanager(configuration, secrets)
    matchers = {"alertname": alertname} if alertname is not None else None
    with _failing("reading Alertmanager's alerts"):
        found = alertmanager.alerts(matchers)
    alerts = [{"labels": dict(a.get("labels") or {}),
               "state": (a.get("status") or {}).get("state"),
               "starts_at": a.get("startsAt"), "ends_at": a.get("endsAt"),
               "receivers": [r.get("name") for r in a.get("receivers") or []],
               "fingerprint": a.get("fingerprint")} for a in found]  # fmt: skip
    return {"ok": any(a["state"] == "active" for a in alerts), "count": len(alerts),
            "alerts": alerts}
