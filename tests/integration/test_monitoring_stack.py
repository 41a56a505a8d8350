"""The reference stack's monitoring: every target scraped, Redis seen through the exporter,
certificates measured, and lkchaos's fault marks visible in Prometheus while a fault lasts."""

from __future__ import annotations

import time
from typing import Any

from lkchaos.prometheus.probes import query, targets_up
from lkchaos.settings import Settings
from lkchaos.stack import monitoring
from lkchaos.toxiproxy import actions as toxi

#: Seconds within which a new sample reaches Prometheus: a scrape interval, twice, and slack.
SCRAPED_S = 3 * monitoring.SCRAPE_S


def _until(expr: str, wanted: Any, within_s: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + within_s
    while True:
        found = query(expr)
        if wanted(found) or time.monotonic() > deadline:
            return found
        time.sleep(1)


def test_every_service_with_metrics_is_scraped_and_up() -> None:
    deadline = time.monotonic() + 60
    while True:
        found = targets_up()
        if found["ok"] or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert found["ok"], found["down"]
    jobs = {t["job"] for t in found["targets"]}
    assert set(monitoring.JOBS) | {"redis", "blackbox_https", "blackbox_tls", "pushgateway"} \
        <= jobs


def test_livekit_nodes_export_their_metrics() -> None:
    found = _until('count(count by (__name__) ({job="livekit"}))',
                   lambda f: (f["value"] or 0) > 50)
    assert (found["value"] or 0) > 50, found


def test_redis_and_every_sentinel_are_seen_through_the_exporter() -> None:
    found = _until("redis_up == 1", lambda f: f["count"] == len(monitoring.REDIS_INSTANCES))
    seen = sorted(s["labels"]["instance"] for s in found["series"])
    assert seen == sorted(f"redis://{i}" for i in monitoring.REDIS_INSTANCES)


def test_every_tls_name_is_probed_with_days_left() -> None:
    found = _until("(probe_ssl_earliest_cert_expiry - time()) / 86400",
                   lambda f: f["count"] == 3)
    days = {s["labels"]["instance"]: s["value"] for s in found["series"]}
    assert set(days) == {"https://lk.chaos.test/", "turn.chaos.test:443", "whip.chaos.test:443"}
    # The stack re-issues its certificates before the 60-day warning would fire.
    assert all(d > monitoring.CERT_DAYS[1] for d in days.values()), days


def test_a_fault_is_marked_in_prometheus_while_it_lasts(settings: Settings) -> None:
    marked = ('lkchaos_fault_active{action="toxic", '
              'target="livekit_hooks/lkchaos_latency_downstream"}')
    toxi.add_latency(proxy="livekit_webhooks", latency_ms=1)
    try:
        during = _until(f"{marked} == 1", lambda f: f["ok"], SCRAPED_S * 4)
        assert during["ok"], during
    finally:
        toxi.remove_toxic(proxy="livekit_webhooks", name="lkchaos_latency_downstream")
    after = _until(f"{marked} == 0", lambda f: f["ok"], SCRAPED_S * 4)
    assert after["ok"], after
