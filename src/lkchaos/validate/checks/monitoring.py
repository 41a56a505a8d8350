"""Checks of the monitoring items, where the target has a monitoring section (Prometheus's
URL; Alertmanager's and the receiver's for delivery); n/a otherwise.

A parent item (critical alerts, warning alerts, key metrics) has no check of its own: the
checklist's runner gives it the worst of its children. Each alert of the checklist is looked
for among Prometheus's alerting rules by what it
measures and its threshold (:data:`ALERTS`: an expression pattern and the number the
expression is compared with), not by the rule's name. Delivery is tested without inducing a
real fault: a test alert is posted to Alertmanager's API with the labels of a rule it routes
(so it takes that rule's route), and must reach the receiver; it is then resolved.
"""

from __future__ import annotations

import datetime as dt
import re
import secrets as pysecrets
import time
from typing import Any

from lkchaos.httpclient import shared_client
from lkchaos.validate.checks.livekit import guarded
from lkchaos.validate.model import Context, Finding, check

#: item id -> (what it is, expression pattern, the comparison that fires it and its threshold;
#: None when any comparison will do).
ALERTS: dict[str, tuple[str, str, str, float | None]] = {
    "monitoring.critical-alerts-configured.service-down":
        ("service down", r"\bup\b\s*==\s*0|_up\s*==\s*0|probe_success\s*==\s*0", "==", None),
    "monitoring.critical-alerts-configured.high-error":
        ("error rate > 5 %", r"5\.\.|5xx|error", ">", 0.05),
    "monitoring.critical-alerts-configured.high-response":
        ("response time > 1 s", r"duration|latency|histogram_quantile", ">", 1.0),
    "monitoring.critical-alerts-configured.resource-exhaustion":
        ("resource use > 90 %", r"cpu|memory|filesystem|disk", ">", 0.90),
    "monitoring.critical-alerts-configured.certificate-expiration":
        ("certificate expiry < 30 days", r"cert|ssl", "<", 30.0),
    "monitoring.warning-alerts-configured.elevated-error":
        ("error rate > 1 %", r"5\.\.|5xx|error", ">", 0.01),
    "monitoring.warning-alerts-configured.elevated-response":
        ("response time > 500 ms", r"duration|latency|histogram_quantile", ">", 0.5),
    "monitoring.warning-alerts-configured.high-resource":
        ("resource use > 70 %", r"cpu|memory|filesystem|disk", ">", 0.70),
    "monitoring.warning-alerts-configured.certificate-expiration":
        ("certificate expiry < 60 days", r"cert|ssl", "<", 60.0),
}  # fmt: skip
_NUMBER = r"\s*(\d+(?:\.\d+)?)(?![\w.])"


def _prometheus(ctx: Context) -> Any:
    from lkchaos.prometheus.client import Prometheus

    return Prometheus(ctx.settings.prometheus_url)


def _none(ctx: Context) -> Finding | None:
    if not ctx.settings.prometheus_url:
        return Finding("n/a", "the target has no monitoring section (no Prometheus URL)")
    return None


def _rules(ctx: Context) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ctx.fact("monitoring.rules", lambda: _prometheus(
        ctx).alert_rules(min(ctx.timeout_s, 5.0)))
    return result


def _targets(ctx: Context) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = ctx.fact("monitoring.targets", lambda: _prometheus(
        ctx).targets(min(ctx.timeout_s, 5.0)))
    return result


def _series(ctx: Context, expr: str) -> int:
    data, _ = _prometheus(ctx).query(f"count({expr})", min(ctx.timeout_s, 5.0))
    result = data.get("result") or []
    return int(float(result[0]["value"][1])) if result else 0


def matching_rule(rules: list[dict[str, Any]], pattern: str, op: str,
                  threshold: float | None) -> dict[str, Any] | None:  # fmt: skip
    """The first alerting rule whose expression matches ``pattern`` (case-insensitive) and
    fires on ``op`` (``>`` or ``<``, ``>=``/``<=`` too) ``threshold``, written as a ratio or
    as a percentage. A rule ``x > 0.7 and x <= 0.9`` fires over 0.7, not over 0.9."""
    for rule in rules:
        expr = str(rule.get("query") or rule.get("expr") or "")
        if not re.search(pattern, expr, re.I):
            continue
        if threshold is None:
            return rule
        numbers = {float(n) for n in re.findall(re.escape(op) + "=?" + _NUMBER, expr)}
        if threshold in numbers or round(threshold * 100, 6) in numbers:
            return rule
    return None


def _alert_item(ctx: Context, item: str) -> Finding:
    if (none := _none(ctx)) is not None:
        return none
    what, pattern, op, threshold = ALERTS[item]
    rule = matching_rule(_rules(ctx), pattern, op, threshold)
    if rule is None:
        return Finding("fail", f"no alerting rule for {what} among {len(_rules(ctx))} rules "
                       "(matched by expression and threshold)")  # fmt: skip
    expr = str(rule.get("query") or "")
    return Finding("pass", f"{what}: rule {rule.get('name')} ({expr[:120]}, for "
                   f"{rule.get('duration', 0)} s)", {"rule": rule.get("name"), "expr": expr})


def _register_alert_checks() -> None:
    for item in ALERTS:
        def run(ctx: Context, item: str = item) -> Finding:
            return _alert_item(ctx, item)

        run.__name__ = "alert_" + item.rsplit(".", 1)[1].replace("-", "_")
        run.__doc__ = f"An alerting rule for {ALERTS[item][0]} exists."
        check(item)(guarded(run))


_register_alert_checks()


@check("monitoring.prometheus-metrics-endpoint")
@guarded
def targets_up(ctx: Context) -> Finding:
    """Prometheus scrapes every target and each one is up."""
    if (none := _none(ctx)) is not None:
        return none
    targets = _targets(ctx)
    down = [f"{t.get('labels', {}).get('job')} {t.get('labels', {}).get('instance')}: "
            f"{t.get('lastError') or t.get('health')}" for t in targets
            if t.get("health") != "up"]  # fmt: skip
    jobs = sorted({str(t.get("labels", {}).get("job")) for t in targets})
    data = {"targets": len(targets), "down": down, "jobs": jobs}
    if not targets:
        return Finding("fail", "Prometheus has no active scrape target", data)
    if down:
        return Finding("fail", f"{len(down)} of {len(targets)} targets down: "
                       + "; ".join(down[:4]), data)  # fmt: skip
    return Finding("pass", f"all {len(targets)} targets up ({len(jobs)} jobs: "
                   f"{', '.join(jobs)})", data)  # fmt: skip


#: item -> (what, PromQL selector whose series must exist).
SERIES: dict[str, tuple[str, str]] = {
    "monitoring.livekit-health-endpoint":
        ("LiveKit", 'up{job=~".*livekit.*"} or probe_success{instance=~".*lk.*"}'),
    "monitoring.redis-health-monitored": ("Redis", "redis_up"),
    "monitoring.caddy-process-monitored":
        ("the TLS proxy", 'up{job=~".*(caddy|nginx|proxy|traefik).*"}'),
    "monitoring.system-resource-monitoring": ("host resources", "node_cpu_seconds_total"),
    "monitoring.key-metrics-identified.request-rate":
        ("request rate", '{__name__=~".*_requests?_total|.*request_duration_seconds_count"}'),
    "monitoring.key-metrics-identified.response-times":
        ("response times", '{__name__=~".*(duration|latency).*_bucket"}'),
    "monitoring.key-metrics-identified.error-rates":
        ("error rates", '{__name__=~".*request_duration_seconds_count|.*errors?_total",'
                        'code=~"5.."} or {__name__=~".*errors?_total"}'),
    "monitoring.key-metrics-identified.resource-utilization":
        ("resource utilisation", "process_cpu_seconds_total"),
    "monitoring.key-metrics-identified.connection-counts":
        ("connection counts", '{__name__=~"livekit_participant_total|livekit_room_total|'
                              'redis_connected_clients"}'),
    "monitoring.key-metrics-identified.queue-depths":
        ("queue depths", '{__name__=~".*(queue|pending|backlog).*"}'),
}  # fmt: skip


def _series_item(ctx: Context, item: str) -> Finding:
    if (none := _none(ctx)) is not None:
        return none
    what, selector = SERIES[item]
    count = _series(ctx, selector)
    if not count:
        return Finding("fail", f"no series for {what} in Prometheus ({selector})")
    return Finding("pass", f"{count} series for {what} ({selector[:80]})", {"series": count})


def _register_series_checks() -> None:
    for item in SERIES:
        def run(ctx: Context, item: str = item) -> Finding:
            return _series_item(ctx, item)

        run.__name__ = "series_" + item.rsplit(".", 1)[1].replace("-", "_")
        run.__doc__ = f"Prometheus holds series for {SERIES[item][0]}."
        check(item)(guarded(run))


_register_series_checks()


@check("monitoring.container-health-monitored")
@guarded
def container_health(ctx: Context) -> Finding:
    """Container-level metrics (cAdvisor's ``container_last_seen``) pass; without them, each
    service's scrape (``up``, which the service-down alert watches) is a warning: a
    container without a metrics endpoint goes unseen."""
    if (none := _none(ctx)) is not None:
        return none
    containers = _series(ctx, "container_last_seen")
    if containers:
        return Finding("pass", f"{containers} containers reported by a container exporter "
                       "(container_last_seen)", {"series": containers})  # fmt: skip
    jobs = _series(ctx, "count by (job) (up)")
    if jobs:
        return Finding("warn", f"no container exporter (cAdvisor): container health is seen "
                       f"only through the scrapes of {jobs} jobs (up); a container without a "
                       "metrics endpoint goes unseen", {"jobs": jobs})  # fmt: skip
    return Finding("fail", "no container metrics and no scrape target (up)")


@check("monitoring.metric-retention-policy")
@guarded
def retention(ctx: Context) -> Finding:
    """Prometheus's retention (``storage.tsdb.retention.time``/``.size`` flags)."""
    if (none := _none(ctx)) is not None:
        return none
    url = ctx.settings.prometheus_url.rstrip("/") + "/api/v1/status/flags"
    flags = shared_client().get(url, timeout=min(ctx.timeout_s, 5.0)).json().get("data") or {}
    kept = {k: v for k, v in flags.items() if k.startswith("storage.tsdb.retention")}
    explicit = {k: v for k, v in kept.items() if v not in ("", "0", "0s", "0B")}
    if not explicit:
        return Finding("warn", f"no retention set (Prometheus's default, 15 days): {kept}", kept)
    return Finding("pass", f"retention: {explicit}", kept)


# --- delivery -----------------------------------------------------------------------------

ALERTNAME = "LkchaosValidateDelivery"


def _post_alert(ctx: Context, labels: dict[str, str], starts: dt.datetime,
                ends: dt.datetime) -> None:
    """Post one alert to Alertmanager (``ends`` in the past or now resolves it)."""
    body = [{"labels": labels, "annotations": {"summary": "lkchaos validate: delivery test "
                                               "(simulated at Alertmanager)"},
             "startsAt": starts.isoformat(), "endsAt": ends.isoformat()}]  # fmt: skip
    url = ctx.settings.alertmanager_url.rstrip("/") + "/api/v2/alerts"
    answer = shared_client().post(url, json=body, timeout=min(ctx.timeout_s, 5.0))
    if answer.status_code != 200:
        raise RuntimeError(f"Alertmanager at {url} answered {answer.status_code}: "
                           f"{answer.text[:200]}")  # fmt: skip


#: How far back a Watchdog delivery counts (seconds): two of its repeats and a margin.
WATCHDOG_LOOKBACK_S = 180.0


def watchdog_rule(rules: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The alerting rule that always fires (a dead man's switch: ``vector(1)``, or a rule
    named Watchdog or DeadMansSwitch), or None."""
    for rule in rules:
        expr = re.sub(r"\s+", "", str(rule.get("query") or rule.get("expr") or ""))
        if expr == "vector(1)" or str(rule.get("name")) in ("Watchdog", "DeadMansSwitch"):
            return rule
    return None


def _watchdog_delivered(ctx: Context, name: str) -> float | None:
    """Seconds since the receiver last got ``name`` from Alertmanager, waiting up to the
    check's timeout for one when none came within :data:`WATCHDOG_LOOKBACK_S`."""
    from lkchaos.hooks import client as hooks

    started = time.monotonic()
    while True:
        now = time.time()
        found = hooks.alert_deliveries(ctx.settings.receiver_url, name,
                                       now - WATCHDOG_LOOKBACK_S, min(ctx.timeout_s, 5.0))
        firing = [a for a in found if a.get("status") == "firing"]
        if firing:
            return round(now - max(float(a.get("received_at") or 0) for a in firing), 1)
        if time.monotonic() - started >= ctx.timeout_s:
            return None
        time.sleep(1.0)


def _active_at_alertmanager(ctx: Context, name: str) -> bool:
    from lkchaos.prometheus.client import Alertmanager

    held = Alertmanager(ctx.settings.alertmanager_url).alerts({"alertname": name},
                                                              min(ctx.timeout_s, 5.0))
    return any((a.get("status") or {}).get("state") == "active" for a in held)


@check("monitoring.alert-delivery-tested")
@guarded
def delivery(ctx: Context) -> Finding:
    """Alerts reach the receiver end to end: the always-firing Watchdog rule's alert, raised
    by Prometheus's rule evaluation and sent again by Alertmanager every minute, arrived
    recently; and a test alert posted to Alertmanager with a critical rule's labels (so it
    takes the same route) reaches the receiver, resolved at once after. Without a Watchdog
    rule only the second is shown: a warning that says how to add one."""
    if (none := _none(ctx)) is not None:
        return none
    s = ctx.settings
    if not s.alertmanager_url or not s.receiver_url:
        return Finding("n/a", "the target's monitoring section has no Alertmanager or "
                       "receiver URL to test delivery with")  # fmt: skip
    routed = _routed_test_alert(ctx)
    if not routed["delivered"]:
        return Finding("fail", f"a test alert posted to Alertmanager (route of severity "
                       f"{routed['labels'].get('severity', '?')}) did not reach the receiver "
                       f"within {routed['seconds']:.0f} s", routed)  # fmt: skip
    sent = (f"a test alert with the ServiceDown rule's labels reached it through Alertmanager "
            f"in {routed['seconds']:.1f} s (resolved after)")
    rule = watchdog_rule(_rules(ctx))
    if rule is None:
        return Finding("warn", f"{sent}, but no rule always fires, so no alert raised by "
                       "Prometheus's own rules is shown to arrive: add one (expr vector(1), "
                       "named Watchdog) routed to the receiver", {"routed": routed})  # fmt: skip
    name = str(rule.get("name"))
    ago = _watchdog_delivered(ctx, name)
    data = {"routed": routed, "watchdog": name, "watchdog_received_s_ago": ago}
    if ago is None:
        if _active_at_alertmanager(ctx, name):
            return Finding("warn", f"Prometheus's always-firing {name} alert is active at "
                           f"Alertmanager but has not reached the receiver in the last "
                           f"{WATCHDOG_LOOKBACK_S:.0f} s: route it to the receiver (a repeat "
                           f"of a few minutes) to prove delivery end to end ({sent})",
                           data)  # fmt: skip
        return Finding("fail", f"Prometheus's always-firing {name} alert has not reached "
                       f"Alertmanager or the receiver in the last {WATCHDOG_LOOKBACK_S:.0f} s: "
                       f"rule evaluation or Prometheus's link to Alertmanager is broken "
                       f"({sent})", data)  # fmt: skip
    return Finding("pass", f"Prometheus's always-firing {name} alert reached the receiver "
                   f"through Alertmanager {ago:.0f} s ago; {sent}", data)


def _routed_test_alert(ctx: Context) -> dict[str, Any]:
    """Post a test alert with the ServiceDown rule's labels to Alertmanager and wait for the
    receiver to get it; resolve it after. ``{"labels", "delivered", "seconds"}``."""
    from lkchaos.hooks import client as hooks

    rule = matching_rule(_rules(ctx), *ALERTS[
        "monitoring.critical-alerts-configured.service-down"][1:])
    labels = {str(k): str(v) for k, v in ((rule or {}).get("labels") or {}).items()}
    labels |= {"alertname": ALERTNAME, "instance": f"lkchaos-validate-{pysecrets.token_hex(4)}",
               "job": "lkchaos-validate"}  # fmt: skip
    since = time.time() - 1
    started = time.monotonic()
    starts = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _post_alert(ctx, labels, starts, starts + dt.timedelta(minutes=5))
    hit = None
    try:
        while hit is None and time.monotonic() - started < ctx.timeout_s:
            found = hooks.alert_deliveries(ctx.settings.receiver_url, ALERTNAME, since,
                                           min(ctx.timeout_s, 5.0))
            hit = next((a for a in found if (a.get("labels") or {}).get("instance")
                        == labels["instance"]), None)  # fmt: skip
            if hit is None:
                time.sleep(0.3)
    finally:
        _post_alert(ctx, labels, starts, dt.datetime.now(dt.UTC))  # resolve it
    return {"labels": labels, "delivered": hit is not None,
            "seconds": round(time.monotonic() - started, 2)}


def _receivers(ctx: Context) -> str:
    def compute() -> str:
        url = ctx.settings.alertmanager_url.rstrip("/") + "/api/v2/status"
        answer = shared_client().get(url, timeout=min(ctx.timeout_s, 5.0))
        return str((answer.json().get("config") or {}).get("original") or "")

    result: str = ctx.fact("monitoring.alertmanager-config", compute)
    return result


_CHANNELS = {
    "monitoring.alert-delivery-tested.email-notifications": ("email", ("email_configs",)),
    "monitoring.alert-delivery-tested.slack-teams": ("Slack/Teams",
                                                     ("slack_configs", "msteams_configs")),
    "monitoring.alert-delivery-tested.pagerduty-incident": ("PagerDuty/incident management",
                                                            ("pagerduty_configs",
                                                             "opsgenie_configs")),
}  # fmt: skip


def _channel(ctx: Context, item: str) -> Finding:
    if (none := _none(ctx)) is not None:
        return none
    what, keys = _CHANNELS[item]
    if not ctx.settings.alertmanager_url:
        return Finding("n/a", "the target has no Alertmanager")
    config = _receivers(ctx)
    if not any(k in config for k in keys):
        return Finding("n/a", f"Alertmanager has no {what} receiver configured")
    return Finding("manual", f"a {what} receiver is configured: confirm a test alert arrives "
                   "(it leaves the deployment, so lkchaos does not send one)")  # fmt: skip


def _register_channels() -> None:
    for item in _CHANNELS:
        def run(ctx: Context, item: str = item) -> Finding:
            return _channel(ctx, item)

        run.__name__ = "channel_" + item.rsplit(".", 1)[1].replace("-", "_")
        run.__doc__ = f"{_CHANNELS[item][0]} delivery: n/a unless configured."
        check(item)(guarded(run))


_register_channels()

