"""The reference stack's monitoring: Prometheus scrape and alert rules, Alertmanager, blackbox.

Rendered into the state folder's ``config/`` with the other configs (see
:mod:`lkchaos.stack.render`). Prometheus scrapes every service that exposes metrics every
:data:`SCRAPE_S` seconds; the alert rules are the design notes' (validation checklist,
"Alerting Configuration"): service down, error rate over 5 % (critical) and 1 % (warning),
response time over 1 s and 500 ms, resources over 90 % and 70 %, certificate expiry within 30
and 60 days; and a ``Watchdog`` that always fires, which Alertmanager sends again every
minute, so that its arrival proves the whole path works. Alertmanager delivers every alert,
and its resolution, to the stack's ``hooks`` receiver, whose deliveries lkchaos reads
(:mod:`lkchaos.hooks`).

The alert thresholds and ``for`` times are module constants so that tests and experiments can
compute the bound within which an alert must fire: ``for`` + one scrape + one evaluation.
"""

from __future__ import annotations

from typing import Any

import yaml

HEADER = "# Rendered by lkchaos; edit src/lkchaos/stack/monitoring.py instead.\n"
#: Seconds between scrapes, and between rule evaluations.
SCRAPE_S = 5
#: How long a service must be down before ``ServiceDown`` fires (its ``for``).
DOWN_FOR_S = 10
#: Error-rate, latency and resource thresholds: (critical, warning).
ERROR_RATIO = (0.05, 0.01)
LATENCY_S = (1.0, 0.5)
RESOURCE_RATIO = (0.90, 0.70)
CERT_DAYS = (30, 60)
#: The always-firing alert that proves rule evaluation, Alertmanager and the receiver work
#: end to end (a dead man's switch), and how often Alertmanager sends it again (seconds).
WATCHDOG = "Watchdog"
WATCHDOG_REPEAT_S = 60

#: Scrape jobs: job -> targets (host:port inside the stack network), metrics path.
JOBS: dict[str, tuple[tuple[str, ...], str]] = {
    "prometheus": (("localhost:9090",), "/metrics"),
    "livekit": (("livekit-1:6789", "livekit-2:6789"), "/metrics"),
    "caddy": (("caddy:9180",), "/metrics"),
    "ingress": (("ingress:6789",), "/metrics"),
    "agent": (("agent:9464",), "/metrics"),
    "whisper": (("whisper:8000",), "/metrics"),
    "mcp": (("mcp:8100",), "/metrics"),
    "hooks": (("hooks:8200",), "/metrics"),
    "toxiproxy": (("toxiproxy:8474",), "/metrics"),
    "alertmanager": (("alertmanager:9093",), "/metrics"),
    "node": (("node-exporter:9100",), "/metrics"),
    "redis_exporter": (("redis-exporter:9121",), "/metrics"),
    "blackbox_exporter": (("blackbox:9115",), "/metrics"),
}
#: Redis and Sentinel instances the exporter scrapes one by one (its multi-target mode).
REDIS_INSTANCES = ("redis-primary:6379", "redis-replica:6379", "sentinel-1:26379",
                   "sentinel-2:26379", "sentinel-3:26379")  # fmt: skip


def _static(job: str, targets: tuple[str, ...], path: str) -> dict[str, Any]:
    return {"job_name": job, "metrics_path": path, "static_configs": [{"targets": list(targets)}]}


def _through(job: str, exporter: str, path: str, targets: list[str],
             params: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """The exporter pattern: each target becomes ``?target=`` on one exporter."""
    config: dict[str, Any] = {
        "job_name": job,
        "metrics_path": path,
        "static_configs": [{"targets": targets}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }
    if params:
        config["params"] = params
    return config


def prometheus_yml(domain: str) -> str:
    """Prometheus's configuration: every job of :data:`JOBS`, Redis through the exporter,
    the TLS names through the blackbox exporter, the Pushgateway with its labels kept."""
    scrape = [_static(job, targets, path) for job, (targets, path) in JOBS.items()]
    scrape.append(_through("redis", "redis-exporter:9121", "/scrape",
                           [f"redis://{i}" for i in REDIS_INSTANCES]))
    scrape.append(_through("blackbox_https", "blackbox:9115", "/probe",
                           [f"https://lk.{domain}/"], {"module": ["https_2xx"]}))
    scrape.append(_through("blackbox_tls", "blackbox:9115", "/probe",
                           [f"turn.{domain}:443", f"whip.{domain}:443"], {"module": ["tls"]}))
    scrape.append({"job_name": "pushgateway", "honor_labels": True,
                   "static_configs": [{"targets": ["pushgateway:9091"]}]})
    config = {
        "global": {"scrape_interval": f"{SCRAPE_S}s", "scrape_timeout": f"{SCRAPE_S - 1}s",
                   "evaluation_interval": f"{SCRAPE_S}s"},
        "rule_files": ["/etc/prometheus/lkchaos-rules.yml"],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": ["alertmanager:9093"]}]}]},
        "scrape_configs": scrape,
    }
    return HEADER + yaml.safe_dump(config, sort_keys=False)


def _alert(name: str, expr: str, for_s: int, severity: str, summary: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": f"{for_s}s",
            "labels": {"severity": severity}, "annotations": {"summary": summary}}


def _pair(name: str, warn_name: str, expr: str, limits: tuple[float, float], for_s: int,
          summary: str) -> list[dict[str, Any]]:
    """A critical alert over ``limits[0]`` and a warning between the two thresholds."""
    critical, warning = limits
    return [
        _alert(name, f"{expr} > {critical}", for_s, "critical", summary.format(limit=critical)),
        _alert(warn_name, f"{expr} > {warning} and {expr} <= {critical}", for_s, "warning",
               summary.format(limit=warning)),
    ]


#: HTTP requests through Caddy, less WebSocket upgrades (their duration is the session's).
_CADDY = 'caddy_http_request_duration_seconds_count{code!="101"}'
_CADDY_5XX = 'caddy_http_request_duration_seconds_count{code=~"5.."}'
_CADDY_BUCKETS = 'caddy_http_request_duration_seconds_bucket{code!="101"}'


def alert_rules() -> str:
    """The design notes' alerts as Prometheus rules (see the module docstring)."""
    error_ratio = (f"(sum by (job) (rate({_CADDY_5XX}[1m]))"
                   f" / sum by (job) (rate({_CADDY}[1m])))")
    latency = f"histogram_quantile(0.95, sum by (job, le) (rate({_CADDY_BUCKETS}[1m])))"
    cpu = '(1 - avg by (instance) (rate(node_cpu_seconds_total{mode="idle"}[1m])))'
    memory = "(1 - node_memory_MemAvailable_bytes / node_memory_MemTotal_bytes)"
    disk = ('(1 - node_filesystem_avail_bytes{mountpoint="/"}'
            ' / node_filesystem_size_bytes{mountpoint="/"})')
    days_left = "((probe_ssl_earliest_cert_expiry - time()) / 86400)"
    critical_days, warning_days = CERT_DAYS
    rules = [
        _alert(WATCHDOG, "vector(1)", 0, "none", "always firing: while it arrives, Prometheus "
               "evaluates the rules and Alertmanager delivers to the receiver"),
        _alert("ServiceDown", "up == 0", DOWN_FOR_S, "critical",
               "{{ $labels.job }} at {{ $labels.instance }} does not answer its scrape"),
        _alert("RedisDown", "redis_up == 0", DOWN_FOR_S, "critical",
               "Redis {{ $labels.instance }} is down"),
        _alert("EndpointDown", "probe_success == 0", DOWN_FOR_S, "critical",
               "{{ $labels.instance }} fails its blackbox probe"),
        *_pair("HighErrorRate", "ElevatedErrorRate", error_ratio, ERROR_RATIO, 30,
               "more than {limit:.0%} of requests through {{{{ $labels.job }}}} fail (5xx)"),
        *_pair("HighResponseTime", "ElevatedResponseTime", latency, LATENCY_S, 60,
               "p95 response time through {{{{ $labels.job }}}} over {limit} s"),
        *_pair("HighCpuUsage", "ElevatedCpuUsage", cpu, RESOURCE_RATIO, 60,
               "CPU use over {limit:.0%}"),
        *_pair("HighMemoryUsage", "ElevatedMemoryUsage", memory, RESOURCE_RATIO, 60,
               "memory use over {limit:.0%}"),
        *_pair("HighDiskUsage", "ElevatedDiskUsage", disk, RESOURCE_RATIO, 60,
               "disk use over {limit:.0%}"),
        _alert("CertificateExpiresSoon", f"{days_left} < {critical_days}", 0, "critical",
               f"the certificate of {{{{ $labels.instance }}}} expires within {critical_days} "
               "days"),
        _alert("CertificateExpiresInTwoMonths",
               f"{days_left} < {warning_days} and {days_left} >= {critical_days}", 0, "warning",
               f"the certificate of {{{{ $labels.instance }}}} expires within {warning_days} "
               "days"),
    ]
    doc = {"groups": [{"name": "lkchaos", "rules": rules}]}
    return HEADER + yaml.safe_dump(doc, sort_keys=False, width=200)


def alertmanager_yml(token: str = "") -> str:
    """Every alert, and its resolution, to the stack's receiver, quickly (1 s group wait),
    and the Watchdog again every :data:`WATCHDOG_REPEAT_S` seconds; with ``token``, as a
    bearer token the receiver checks."""
    hook: dict[str, Any] = {"url": "http://hooks:8200/alertmanager", "send_resolved": True}
    if token:
        hook["http_config"] = {"authorization": {"type": "Bearer", "credentials": token}}
    config = {
        "route": {"receiver": "hooks", "group_by": ["alertname", "instance"],
                  "group_wait": "1s", "group_interval": "5s", "repeat_interval": "1h",
                  "routes": [{"matchers": [f'alertname="{WATCHDOG}"'], "receiver": "hooks",
                              "repeat_interval": f"{WATCHDOG_REPEAT_S}s"}]},
        "receivers": [{"name": "hooks", "webhook_configs": [hook]}],
    }
    return HEADER + yaml.safe_dump(config, sort_keys=False)


def blackbox_yml() -> str:
    """HTTPS (a 2xx through Caddy) and TLS (a handshake) checks, trusting the stack's CA."""
    tls = {"ca_file": "/certs/ca.crt"}
    config = {"modules": {
        "https_2xx": {"prober": "http", "timeout": "3s",
                      "http": {"preferred_ip_protocol": "ip4", "tls_config": tls}},
        "tls": {"prober": "tcp", "timeout": "3s",
                "tcp": {"preferred_ip_protocol": "ip4", "tls": True, "tls_config": tls}},
    }}
    return HEADER + yaml.safe_dump(config, sort_keys=False)


def render(domain: str, hooks_token: str = "") -> dict[str, str]:
    """Monitoring config files, keyed by their path relative to the config folder."""
    return {
        "prometheus.yml": prometheus_yml(domain),
        "lkchaos-rules.yml": alert_rules(),
        "alertmanager.yml": alertmanager_yml(hooks_token),
        "blackbox.yml": blackbox_yml(),
    }
