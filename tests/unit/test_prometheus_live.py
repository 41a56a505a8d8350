"""The Prometheus probes and fault marks against real Prometheus, Alertmanager and Pushgateway
binaries (Debian's ``prometheus``, ``prometheus-alertmanager``, ``prometheus-pushgateway``),
started on free loopback ports from a temporary folder and stopped after the module."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from lkchaos.prometheus import marks, probes
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from tests.unit.livekit_dev import free_port

BINARIES = {"prometheus": "prometheus", "alertmanager": "prometheus-alertmanager",
            "pushgateway": "prometheus-pushgateway"}  # fmt: skip
MISSING = [name for name in BINARIES.values() if shutil.which(name) is None]
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"not installed: {', '.join(MISSING)} (apt-get install prometheus "
           "prometheus-alertmanager prometheus-pushgateway)")  # fmt: skip

RULES = """groups:
  - name: lkchaos-test
    rules:
      - alert: AlwaysFiring
        expr: vector(1) > 0
        for: 0s
      - alert: NeverFiring
        expr: vector(0) > 0
      - alert: LkchaosFaultActive
        expr: lkchaos_fault_active == 1
"""
ALERTMANAGER = """route: {receiver: nowhere, group_wait: 0s, group_interval: 1s,
        repeat_interval: 1h}
receivers: [{name: nowhere}]
"""
#: Bound of every wait for the servers (seconds); none of them is a measurement.
WAIT_S = 20.0


def _until(what: str, check: Callable[[], Any]) -> Any:
    """Poll ``check`` until it returns something true, or fail after :data:`WAIT_S`."""
    deadline = time.monotonic() + WAIT_S
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (httpx.HTTPError, OSError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(0.2)
    pytest.fail(f"{what} not seen within {WAIT_S:.0f} s; last: {last!r}")


def _ready(url: str) -> Callable[[], bool]:
    return lambda: httpx.get(url, timeout=1.0).status_code == 200


@dataclass(frozen=True)
class Monitoring:
    prometheus: str
    alertmanager: str
    pushgateway: str
    closed_port: int


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Monitoring]:
    folder = tmp_path_factory.mktemp("monitoring")
    prom, am, pg, closed = (free_port() for _ in range(4))
    (folder / "rules.yml").write_text(RULES)
    (folder / "prometheus.yml").write_text(f"""global:
  {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [{folder / 'rules.yml'}]
alerting:
  alertmanagers: [{{static_configs: [{{targets: ["127.0.0.1:{am}"]}}]}}]
scrape_configs:
  - {{job_name: prometheus, static_configs: [{{targets: ["127.0.0.1:{prom}"]}}]}}
  - {{job_name: pushgateway, honor_labels: true,
      static_configs: [{{targets: ["127.0.0.1:{pg}"]}}]}}
  - {{job_name: nothing, static_configs: [{{targets: ["127.0.0.1:{closed}"]}}]}}
""")  # fmt: skip
    (folder / "alertmanager.yml").write_text(ALERTMANAGER)
    commands = [
        # Debian's build persists to /var/lib/prometheus by default: memory only here.
        ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{pg}",
         "--persistence.file="],
        ["prometheus-alertmanager", f"--config.file={folder / 'alertmanager.yml'}",
         f"--storage.path={folder / 'am'}", f"--web.listen-address=127.0.0.1:{am}",
         "--cluster.listen-address="],
        ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
         f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom}",
         # Firing alerts are sent again every second, not every minute: the first send may
         # come before Prometheus has found the Alertmanager.
         "--rules.alert.resend-delay=1s"],
    ]  # fmt: skip
    started: list[subprocess.Popen[bytes]] = []
    logs = []
    try:
        for argv in commands:
            log = open(folder / f"{Path(argv[0]).name}.log", "wb")  # noqa: SIM115
            logs.append(log)
            started.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT,
                                            cwd=folder))  # fmt: skip
        found = Monitoring(f"http://127.0.0.1:{prom}", f"http://127.0.0.1:{am}",
                           f"http://127.0.0.1:{pg}", closed)  # fmt: skip
        for url in (found.prometheus, found.alertmanager, found.pushgateway):
            _until(f"{url}/-/ready", _ready(f"{url}/-/ready"))
        yield found
    finally:
        for process in started:
            process.terminate()
        for process in started:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        for log in logs:
            log.close()


@pytest.fixture
def configured(servers: Monitoring, monkeypatch: pytest.MonkeyPatch,
               tmp_path: Path) -> Monitoring:  # fmt: skip
    """The probes' settings point at the servers; marks go to the Pushgateway."""
    monkeypatch.setenv("LKCHAOS_PROMETHEUS_URL", servers.prometheus)
    monkeypatch.setenv("LKCHAOS_ALERTMANAGER_URL", servers.alertmanager)
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", servers.pushgateway)
    monkeypatch.setenv("LKCHAOS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setitem(marks._pushgateway, "url", "")
    return servers


def test_query_reads_a_value_and_surfaces_prometheus_errors(configured: Monitoring) -> None:
    found = probes.query("vector(42)")
    assert (found["ok"], found["value"], found["result_type"]) == (True, 42.0, "vector")
    empty = probes.query('up{job="no-such-job"}')
    assert (empty["ok"], empty["value"], empty["series"]) == (False, None, [])
    up = _until("the prometheus job scraped", lambda: probes.query('up{job="prometheus"}')["ok"]
                and probes.query('up{job="prometheus"}'))  # fmt: skip
    assert up["value"] == 1.0
    assert up["series"][0]["labels"]["instance"] == configured.prometheus.removeprefix("http://")
    with pytest.raises(Exception, match="parse error") as raised:
        probes.query("sum(")
    assert "bad_data" in str(raised.value)


def test_alert_state_and_waiting_for_both_states(configured: Monitoring) -> None:
    fired = probes.wait_for_alert("AlwaysFiring", "firing", within_s=WAIT_S, interval_s=0.2)
    assert fired["ok"] and fired["state"] == "firing" and fired["for_s"] == 0.0
    state = probes.alert_state("AlwaysFiring")
    assert state["state"] == "firing" and state["count"] == 1 and state["active_since"]
    never = probes.wait_for_alert("NeverFiring", "inactive", within_s=5, interval_s=0.2)
    assert never["ok"] and never["state"] == "inactive" and never["polls"] == 1
    missed = probes.wait_for_alert("NeverFiring", "firing", within_s=0.5, interval_s=0.2)
    assert not missed["ok"] and missed["state"] == "inactive" and missed["polls"] >= 2
    with pytest.raises(Exception, match="no alerting rule 'AlwaysFirng'.*AlwaysFiring"):
        probes.alert_state("AlwaysFirng")
    delivered = _until("AlwaysFiring in Alertmanager",
                       lambda: probes.alertmanager_alerts("AlwaysFiring")["ok"]
                       and probes.alertmanager_alerts("AlwaysFiring"))  # fmt: skip
    assert delivered["alerts"][0]["labels"]["alertname"] == "AlwaysFiring"
    assert delivered["alerts"][0]["receivers"] == ["nowhere"]
    assert probes.alertmanager_alerts("NeverFiring") == {"ok": False, "count": 0, "alerts": []}


def test_targets_up_names_the_down_target(configured: Monitoring) -> None:
    def scraped() -> dict[str, Any] | None:
        found = probes.targets_up()
        return found if all(t["health"] != "unknown" for t in found["targets"]) else None

    found = _until("every target scraped once", scraped)
    closed = f"nothing/127.0.0.1:{configured.closed_port}"
    assert not found["ok"] and found["down"] == [closed] and found["count"] == 3
    assert "connection refused" in found["errors"][closed]
    healthy = probes.targets_up(jobs=["prometheus", "pushgateway"])
    assert healthy["ok"] and healthy["up"] == 2
    missing = probes.targets_up(jobs=["prometheus", "livekit"])
    assert not missing["ok"] and missing["missing_jobs"] == ["livekit"]


def test_a_recorded_fault_is_marked_until_it_is_forgotten(configured: Monitoring) -> None:
    settings = Settings.load()
    assert marks.pushgateway_url() == configured.pushgateway
    fault = ledger.Fault("paused", "agent", "lkchaos.docker.actions", "unpause_service",
                         {"service": "agent"})  # fmt: skip
    ledger.begin_run("Agent pause")
    try:
        ledger.record(settings.state_dir, fault)
    finally:
        ledger.end_run()
    expr = 'lkchaos_fault_active{action="paused",target="agent",experiment="Agent pause"}'
    fired = probes.wait_for_alert("LkchaosFaultActive", "firing", within_s=WAIT_S,
                                  labels={"target": "agent"}, interval_s=0.2)  # fmt: skip
    assert fired["ok"], fired
    assert probes.query(expr)["value"] == 1.0
    assert ledger.forget(settings.state_dir, "paused", "agent") == 1
    resolved = probes.wait_for_alert("LkchaosFaultActive", "inactive", within_s=WAIT_S,
                                     labels={"target": "agent"}, interval_s=0.2)  # fmt: skip
    assert resolved["ok"], resolved
    assert probes.query(expr)["value"] == 0.0


def test_marks_to_a_closed_port_never_fail_the_ledger(configured: Monitoring,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("LKCHAOS_PUSHGATEWAY_URL", f"http://127.0.0.1:{configured.closed_port}")
    settings = Settings.load()
    monkeypatch.setattr(marks, "_warned", set())
    for target in ("a", "b"):
        ledger.record(settings.state_dir, ledger.Fault("paused", target, "lkchaos.docker.actions",
                                                       "unpause_service", {"service": target}))
    assert [f.target for f in ledger.pending(settings.state_dir)] == ["a", "b"]
    said = [r.getMessage() for r in caplog.records if "fault marks are not written" in
            r.getMessage()]  # fmt: skip
    assert len(said) == 1 and str(configured.closed_port) in said[0]
