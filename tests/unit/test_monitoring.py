"""The reference stack's monitoring configs: what Prometheus scrapes, the design notes' alerts,
where Alertmanager delivers. Checked with Prometheus's own promtool and amtool where they are
installed (scripts/bootstrap.sh installs them), and by structure everywhere."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lkchaos.stack import monitoring

RENDERED = monitoring.render("chaos.test")


def _rules() -> dict[str, dict[str, object]]:
    doc = yaml.safe_load(RENDERED["lkchaos-rules.yml"])
    return {rule["alert"]: rule for rule in doc["groups"][0]["rules"]}


def test_every_alert_of_the_checklist_exists_with_its_severity() -> None:
    rules = _rules()
    critical = {"ServiceDown", "HighErrorRate", "HighResponseTime", "HighCpuUsage",
                "HighMemoryUsage", "HighDiskUsage", "CertificateExpiresSoon"}
    warning = {"ElevatedErrorRate", "ElevatedResponseTime", "ElevatedCpuUsage",
               "ElevatedMemoryUsage", "ElevatedDiskUsage", "CertificateExpiresInTwoMonths"}
    for name in critical:
        assert rules[name]["labels"] == {"severity": "critical"}, name
    for name in warning:
        assert rules[name]["labels"] == {"severity": "warning"}, name


@pytest.mark.parametrize(("alert", "threshold"), [
    ("HighErrorRate", "> 0.05"), ("ElevatedErrorRate", "> 0.01"),
    ("HighResponseTime", "> 1.0"), ("ElevatedResponseTime", "> 0.5"),
    ("HighCpuUsage", "> 0.9"), ("ElevatedCpuUsage", "> 0.7"),
    ("CertificateExpiresSoon", "< 30"), ("CertificateExpiresInTwoMonths", "< 60"),
])
def test_thresholds_are_the_design_notes(alert: str, threshold: str) -> None:
    assert threshold in str(_rules()[alert]["expr"])


def test_service_down_fires_after_its_bound() -> None:
    rule = _rules()["ServiceDown"]
    assert rule["expr"] == "up == 0"
    assert rule["for"] == f"{monitoring.DOWN_FOR_S}s"


def test_alertmanager_delivers_firing_and_resolved_to_the_receiver() -> None:
    config = yaml.safe_load(RENDERED["alertmanager.yml"])
    hooks = config["receivers"][0]["webhook_configs"][0]
    assert config["route"]["receiver"] == config["receivers"][0]["name"]
    assert hooks == {"url": "http://hooks:8200/alertmanager", "send_resolved": True}


def test_prometheus_scrapes_every_job_and_redis_through_the_exporter() -> None:
    config = yaml.safe_load(RENDERED["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(monitoring.JOBS) <= set(jobs)
    redis = jobs["redis"]
    assert redis["static_configs"][0]["targets"] == [
        f"redis://{i}" for i in monitoring.REDIS_INSTANCES]
    assert {"target_label": "__address__", "replacement": "redis-exporter:9121"} in redis[
        "relabel_configs"]
    assert jobs["pushgateway"]["honor_labels"] is True
    assert jobs["blackbox_https"]["static_configs"][0]["targets"] == ["https://lk.chaos.test/"]


@pytest.mark.skipif(shutil.which("promtool") is None,
                    reason="promtool (Debian's prometheus package) is not installed")
def test_promtool_accepts_the_config_and_the_rules(tmp_path: Path) -> None:
    rules = tmp_path / "lkchaos-rules.yml"
    rules.write_text(RENDERED["lkchaos-rules.yml"])
    config = yaml.safe_load(RENDERED["prometheus.yml"])
    config["rule_files"] = [str(rules)]
    main = tmp_path / "prometheus.yml"
    main.write_text(yaml.safe_dump(config))
    for argv in (["promtool", "check", "rules", str(rules)],
                 ["promtool", "check", "config", "--syntax-only", str(main)]):
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.skipif(shutil.which("amtool") is None,
                    reason="amtool (Debian's prometheus-alertmanager package) is not installed")
def test_amtool_accepts_the_alertmanager_config(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(RENDERED["alertmanager.yml"])
    proc = subprocess.run(["amtool", "check-config", str(path)], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_alertmanager_shows_the_receiver_its_bearer_token(tmp_path: Path) -> None:
    config = yaml.safe_load(monitoring.render("chaos.test", "t0ken")["alertmanager.yml"])
    hook = config["receivers"][0]["webhook_configs"][0]
    assert hook["http_config"] == {"authorization": {"type": "Bearer", "credentials": "t0ken"}}
    if shutil.which("amtool"):
        path = tmp_path / "alertmanager.yml"
        path.write_text(monitoring.render("chaos.test", "t0ken")["alertmanager.yml"])
        proc = subprocess.run(["amtool", "check-config", str(path)], capture_output=True,
                              text=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stdout + proc.stderr
