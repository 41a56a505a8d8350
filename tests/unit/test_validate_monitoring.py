"""The monitoring checks against real Prometheus and Alertmanager (Debian's ``prometheus`` and
``prometheus-alertmanager``) on free loopback ports: Prometheus loads the reference stack's
alert rules and scrapes itself and one closed port; Alertmanager delivers to a small receiver
speaking the stack receiver's API (``POST /alertmanager``, ``GET /alerts``)."""

from __future__ import annotations

import http.server
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
import yaml

from lkchaos.settings import Settings
from lkchaos.stack.monitoring import alert_rules
from lkchaos.validate.checks import monitoring
from lkchaos.validate.model import CHECKS, Context
from tests.unit.livekit_dev import free_port

MISSING = [b for b in ("prometheus", "prometheus-alertmanager") if shutil.which(b) is None]
WAIT_S = 20.0


class _Receiver(http.server.BaseHTTPRequestHandler):
    deliveries: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        for alert in body.get("alerts") or []:
            self.deliveries.append({"seq": len(self.deliveries) + 1,
                                    "alertname": alert["labels"].get("alertname"),
                                    "status": alert["status"], "labels": alert["labels"],
                                    "received_at": time.time()})  # fmt: skip
        self.send_response(200)
        self.end_headers()

    def do_GET(self) -> None:  # noqa: N802
        query = parse_qs(urlsplit(self.path).query)
        name, since = query.get("alertname", [""])[0], float(query.get("since", ["0"])[0])
        found = [d for d in self.deliveries
                 if (not name or d["alertname"] == name) and d["received_at"] >= since]
        data = json.dumps({"alerts": found}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: Any) -> None:
        return


@dataclass(frozen=True)
class Monitoring:
    prometheus: str
    alertmanager: str
    receiver: str
    closed: int

    def settings(self, **changes: Any) -> Settings:
        values = {"prometheus_url": self.prometheus, "alertmanager_url": self.alertmanager,
                  "receiver_url": self.receiver, "livekit_node_urls": ()}
        values.update(changes)
        return Settings(**values)  # type: ignore[arg-type]


def _until(what: str, ready: Any) -> None:
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        try:
            if ready():
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"{what} not ready within {WAIT_S:.0f} s")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    if MISSING:
        pytest.skip(f"not installed: {', '.join(MISSING)} (apt-get install prometheus "
                    "prometheus-alertmanager)")
    folder: Path = tmp_path_factory.mktemp("monitoring")
    prom, am, closed = free_port(), free_port(), free_port()
    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    receiver_url = f"http://127.0.0.1:{receiver.server_address[1]}"
    (folder / "rules.yml").write_text(alert_rules())
    (folder / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(folder / "rules.yml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{am}"]}]}]},
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{prom}"]}]},
            {"job_name": "nothing", "static_configs": [{"targets": [f"127.0.0.1:{closed}"]}]}],
    }))
    (folder / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "hooks", "group_by": ["alertname", "instance"],
                  "group_wait": "0s", "group_interval": "1s", "repeat_interval": "1h"},
        "receivers": [{"name": "hooks", "webhook_configs": [
            {"url": f"{receiver_url}/alertmanager", "send_resolved": True}]}],
    }))
    commands = [
        ["prometheus-alertmanager", f"--config.file={folder / 'alertmanager.yml'}",
         f"--storage.path={folder / 'am'}", f"--web.listen-address=127.0.0.1:{am}",
         "--cluster.listen-address="],
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}",
         "--storage.tsdb.retention.time=2d",
         # An alert that fired before Alertmanager was found is sent again after this (1 m
         # by default): the Watchdog fires at the first evaluation.
         "--rules.alert.resend-delay=1s"],
    ]  # fmt: skip
    started = [subprocess.Popen(argv, cwd=folder, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for argv in commands]
    found = Monitoring(f"http://127.0.0.1:{prom}", f"http://127.0.0.1:{am}", receiver_url, closed)
    try:
        for url in (found.prometheus, found.alertmanager):
            _until(url, lambda url=url: httpx.get(f"{url}/-/ready", timeout=1).status_code == 200)
        # One scrape of each target, so that health and series exist.
        def scraped() -> bool:
            targets = httpx.get(f"{found.prometheus}/api/v1/targets",
                                timeout=1).json()["data"]["activeTargets"]
            return len(targets) == 2 and all(t["health"] != "unknown" for t in targets)

        _until("the first scrapes", scraped)
        yield found
    finally:
        for process in started:
            process.terminate()
            process.wait(timeout=10)
        receiver.shutdown()
        receiver.server_close()


def test_without_prometheus_every_item_is_not_applicable() -> None:
    ctx = Context(Settings(prometheus_url="", alertmanager_url="", receiver_url=""))
    items = [i for i, f in CHECKS.items() if f.__module__ == monitoring.__name__]
    assert len(items) >= 23
    assert {CHECKS[i](ctx).status for i in items} == {"n/a"}


def test_each_alert_of_the_checklist_has_its_rule(stack: Monitoring) -> None:
    ctx = Context(stack.settings())
    for item in monitoring.ALERTS:
        found = CHECKS[item](ctx)
        assert found.status == "pass", (item, found.evidence)
    assert CHECKS["monitoring.critical-alerts-configured.high-error"](ctx).data["expr"].endswith(
        "> 0.05")
    assert "monitoring.critical-alerts-configured" not in CHECKS  # the runner rolls it up


def test_rules_match_by_expression_and_threshold() -> None:
    rules = [{"name": r["alert"], "query": r["expr"]}
             for r in yaml.safe_load(alert_rules())["groups"][0]["rules"]]
    item = "monitoring.critical-alerts-configured.resource-exhaustion"
    _, cpu, op, critical = monitoring.ALERTS[item]
    found = monitoring.matching_rule(rules, cpu, op, critical)
    assert found is not None and found["name"] == "HighCpuUsage"
    # The warning rule (over 0.7 and at most 0.9) mentions 0.9 but does not fire over it.
    moved = [{"name": "Anything", "query": r["query"].replace("> 0.9", "> 0.95")}
             for r in rules]  # fmt: skip
    assert monitoring.matching_rule(moved, cpu, op, critical) is None
    percent = [{"name": "Cpu", "query": "100 * cpu_busy_ratio >= 90"}]
    assert monitoring.matching_rule(percent, cpu, op, critical) == percent[0]


def test_targets_down_are_named(stack: Monitoring) -> None:
    found = CHECKS["monitoring.prometheus-metrics-endpoint"](Context(stack.settings()))
    assert found.status == "fail"
    assert f"nothing 127.0.0.1:{stack.closed}" in found.evidence and found.data["targets"] == 2


def test_series_checks_and_retention(stack: Monitoring) -> None:
    ctx = Context(stack.settings())
    assert CHECKS["monitoring.key-metrics-identified.resource-utilization"](ctx).status == "pass"
    assert CHECKS["monitoring.redis-health-monitored"](ctx).status == "fail"
    containers = CHECKS["monitoring.container-health-monitored"](ctx)
    assert containers.status == "warn" and "scrapes of 2 jobs" in containers.evidence
    retention = CHECKS["monitoring.metric-retention-policy"](ctx)
    assert retention.status == "pass" and "'storage.tsdb.retention.time': '2d'" in \
        retention.evidence


def test_alerts_raised_by_prometheus_and_routed_test_alerts_are_delivered(
        stack: Monitoring) -> None:  # fmt: skip
    found = CHECKS["monitoring.alert-delivery-tested"](Context(stack.settings()))
    assert found.status == "pass", found.evidence
    assert "always-firing Watchdog alert reached the receiver" in found.evidence
    assert found.data["watchdog"] == "Watchdog" and found.data["watchdog_received_s_ago"] >= 0
    assert found.data["routed"]["labels"]["severity"] == "critical"
    active = httpx.get(f"{stack.alertmanager}/api/v2/alerts", timeout=5,
                       params={"filter": f'alertname="{monitoring.ALERTNAME}"',
                               "active": "true"}).json()  # fmt: skip
    assert active == []


def test_without_an_always_firing_rule_delivery_is_only_a_warning(
        stack: Monitoring, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    rules = [r for r in monitoring._rules(Context(stack.settings())) if r["name"] != "Watchdog"]
    monkeypatch.setattr(monitoring, "_rules", lambda ctx: rules)
    found = CHECKS["monitoring.alert-delivery-tested"](Context(stack.settings()))
    assert found.status == "warn" and "add one (expr vector(1)" in found.evidence
    assert found.data["routed"]["delivered"] is True


def test_a_watchdog_that_never_arrives_fails(stack: Monitoring,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    rules = [*monitoring._rules(Context(stack.settings())),
             {"name": "DeadMansSwitch", "query": "vector(1)"}]
    monkeypatch.setattr(monitoring, "_rules",
                        lambda ctx: [r for r in rules if r["name"] != "Watchdog"])
    found = CHECKS["monitoring.alert-delivery-tested"](
        Context(stack.settings(), timeout_s=5.0))
    assert found.status == "fail" and "DeadMansSwitch alert has not reached" in found.evidence


def test_a_watchdog_routed_elsewhere_is_a_warning(stack: Monitoring,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Delivered to another receiver (kube-prometheus routes its Watchdog to a null one):
    # Alertmanager has it active, the receiver lkchaos reads never gets it.
    from lkchaos.hooks import client as hooks

    original = hooks.alert_deliveries
    monkeypatch.setattr(hooks, "alert_deliveries", lambda url, name="", *a, **k: [] if
                        name == "Watchdog" else original(url, name, *a, **k))
    found = CHECKS["monitoring.alert-delivery-tested"](Context(stack.settings(), timeout_s=5.0))
    assert found.status == "warn" and "active at Alertmanager" in found.evidence


def test_unconfigured_channels_are_not_applicable(stack: Monitoring) -> None:
    ctx = Context(stack.settings())
    for item in ("email-notifications", "slack-teams", "pagerduty-incident"):
        found = CHECKS[f"monitoring.alert-delivery-tested.{item}"](ctx)
        assert found.status == "n/a" and "no" in found.evidence
