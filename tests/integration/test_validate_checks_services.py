"""The LiveKit, security, Redis, monitoring, disaster-recovery and Ingress/Egress checks of
`lkchaos validate` against the live reference stack: the healthy stack gives each item the
status listed (a fail only where the pinned LiveKit falls short, said in the comment), and an
injected problem turns exactly its items. Every fault is undone in ``finally``."""

from __future__ import annotations

import time

import pytest
import redis

from lkchaos.docker import actions as docker_actions
from lkchaos.redis import client as redis_client
from lkchaos.settings import Settings
from lkchaos.validate.checks import ingress, livekit, monitoring, recovery, security
from lkchaos.validate.checks import redis as redis_checks
from lkchaos.validate.model import CHECKS, Context, Finding

MODULES = {m.__name__ for m in (ingress, livekit, monitoring, recovery, redis_checks, security)}
#: What the run history holds depends on what ran on this machine before.
FROM_HISTORY = ("pass", "manual")

#: Items of these modules and the statuses the healthy reference stack gives them.
HEALTHY: dict[str, tuple[str, ...]] = {
    "livekit.health-endpoint-responds": ("pass",),
    "livekit.websocket-connections-successful": ("pass",),
    "livekit.room-creation-working": ("pass",),
    "livekit.participant-joins-successful": ("pass",),
    "livekit.audio-streaming-functional": ("pass",),
    "livekit.video-streaming-functional": ("pass",),
    "livekit.recording-capability-working": ("n/a",),
    "livekit.response-times-200ms": ("pass",),
    "livekit.websocket-latency-100ms": ("pass",),
    "livekit.cpu-usage-50": ("pass",),
    # Prometheus holds minutes of history only after the stack has run a while.
    "livekit.memory-usage-stable": ("pass", "warn"),
    "livekit.memory-leaks-detected": ("pass", "warn"),
    "livekit.graceful-handling-invalid": ("pass",),
    "livekit.proper-error-messages": ("pass",),
    "livekit.rate-limiting-working": ("n/a",),
    "livekit.connection-limits-enforced": ("n/a",),
    "livekit.recovery-temporary-failures": FROM_HISTORY,
    "auth.api-keys-validated": ("pass",),
    # LiveKit 1.13.5 does not check iat: a token issued in the future is accepted
    # (livekit/protocol#1710). The finding says so; README lists it.
    "auth.jwt-tokens-verified": ("fail",),
    "auth.role-based-access": ("pass",),
    "auth.input-validation-comprehensive": ("pass",),
    "auth.communications-encrypted": ("pass",),
    "auth.sensitive-data-logs": ("pass",),
    # LIVEKIT_KEYS and the receiver's token are plain environment variables.
    "auth.secrets-properly-managed": ("warn",),
    "auth.network-segmentation-enforced": ("pass",),
    # LiveKit answers CORS preflights from any origin (no credentials).
    "vuln.web-application-security": ("warn",),
    # Stock images run as root with default capabilities.
    "vuln.container-security-validated": ("warn",),
    "redis.redis-connection-successful": ("pass",),
    "redis.authentication-working": ("n/a",),
    "redis.data-persistence-configured": ("pass",),
    "redis.memory-usage-reasonable": ("pass",),
    "redis.key-expiration-working": ("pass",),
    "redis.pub-sub-functionality": ("pass",),
    "redis.clustering-working": ("pass",),
    "redis.session-data-stored": ("pass",),
    "redis.room-state-synchronized": ("pass",),
    "redis.events-published-subscribed": ("pass",),
    "redis.data-cleanup-disconnect": ("pass",),
    "redis.stale-data-accumulation": ("pass",),
    "monitoring.livekit-health-endpoint": ("pass",),
    "monitoring.redis-health-monitored": ("pass",),
    "monitoring.caddy-process-monitored": ("pass",),
    # No cAdvisor in the reference stack: container health only through each scrape.
    "monitoring.container-health-monitored": ("warn",),
    "monitoring.system-resource-monitoring": ("pass",),
    "monitoring.prometheus-metrics-endpoint": ("pass",),
    **{f"monitoring.key-metrics-identified.{k}": ("pass",) for k in (
        "request-rate", "response-times", "error-rates", "resource-utilization",
        "connection-counts", "queue-depths")},
    "monitoring.metric-retention-policy": ("pass",),
    **{item: ("pass",) for item in monitoring.ALERTS},
    "monitoring.alert-delivery-tested": ("pass",),
    "monitoring.alert-delivery-tested.email-notifications": ("n/a",),
    "monitoring.alert-delivery-tested.slack-teams": ("n/a",),
    "monitoring.alert-delivery-tested.pagerduty-incident": ("n/a",),
    "dr.redis-data-backup": ("pass",),
    "dr.backup-restoration-tested": ("pass",),
    "dr.recovery-time-documented": FROM_HISTORY,
    "dr.rto-documented": FROM_HISTORY,
    "dr.rpo-documented": ("pass",),
    "dr.single-service-failure": FROM_HISTORY,
    "dr.multiple-service-failure": FROM_HISTORY,
    "dr.network-partition-handling": FROM_HISTORY,
    "dr.data-consistency-maintained": FROM_HISTORY,
    "ingress-egress.rtmp-streams-accepted": ("pass",),
    "ingress-egress.authentication-working": ("pass",),
    "ingress-egress.stream-forwarding-livekit": ("pass",),
    "ingress-egress.multiple-concurrent-streams": ("manual",),
    "ingress-egress.stream-quality-preserved": ("manual",),
    "ingress-egress.metadata-handling-correct": ("manual",),
    "ingress-egress.whip-endpoint-accessible": ("pass",),
    "ingress-egress.sdp-negotiation-successful": ("pass",),
    "ingress-egress.media-streaming-working": ("pass",),
    "ingress-egress.ice-candidate-handling": ("pass",),
    # Without Egress: the webhooks LiveKit sends for the RTMP publish's room.
    "ingress-egress.webhook-notifications-sent": ("pass",),
    **{f"ingress-egress.{k}": ("n/a",) for k in (
        "recording-functionality-working", "export-formats-supported",
        "file-storage-integration", "cleanup-after-recording")},
}


#: Items that may warn on a healthy stack, and only with this evidence: a publish that the
#: ingress accepted but that did not reach the room whole, followed by one that did.
SECOND_PUBLISH = "at the second publish only"
PUBLISHED = ("ingress-egress.stream-forwarding-livekit", "ingress-egress.media-streaming-working",
             "ingress-egress.ice-candidate-handling")


def _healthy(item: str, finding: Finding) -> bool:
    return finding.status in HEALTHY[item] or (
        item in PUBLISHED and finding.status == "warn" and SECOND_PUBLISH in finding.evidence)


def _run(ctx: Context, items: list[str]) -> dict[str, Finding]:
    return {item: CHECKS[item](ctx) for item in items}


def test_every_check_of_these_modules_is_listed() -> None:
    mine = {i for i, f in CHECKS.items() if f.__module__ in MODULES}
    assert mine == set(HEALTHY)


def test_the_healthy_stack(settings: Settings) -> None:
    ctx = Context(settings, timeout_s=10.0)
    started = time.monotonic()
    found = _run(ctx, list(HEALTHY))
    took = time.monotonic() - started
    wrong = {i: (f.status, f.evidence) for i, f in found.items() if not _healthy(i, f)}
    assert not wrong, f"{wrong}\n(all ran in {took:.1f} s)"
    jwt_finding = found["auth.jwt-tokens-verified"]
    assert "ACCEPTED a token issued 3600 s from now (iat) (issued in the future)" in \
        jwt_finding.evidence
    assert settings.livekit_api_secret not in " ".join(f.evidence for f in found.values())


def test_a_stopped_replica_fails_clustering_only(settings: Settings) -> None:
    items = [i for i in HEALTHY if i.startswith("redis.")]
    docker_actions.stop_service(service="redis_replica", timeout=5)
    try:
        ctx = Context(settings, timeout_s=10.0)
        primary = redis_client.primary(settings, 5.0, decode=True)
        deadline = time.monotonic() + 30
        while int(primary.info("replication").get("connected_slaves", 0)):
            assert time.monotonic() < deadline, "the primary still lists the replica"
            time.sleep(0.5)
        primary.close()
        found = _run(ctx, items)
    finally:
        docker_actions.start_service(service="redis_replica")
        _wait_replica(settings)
    assert found["redis.clustering-working"].status == "fail"
    assert "0 replica(s) online" in found["redis.clustering-working"].evidence
    others = {i: f.status for i, f in found.items()
              if i != "redis.clustering-working" and f.status not in HEALTHY[i]}
    assert not others


def _wait_replica(settings: Settings, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            client = redis_client.primary(settings, 2.0, decode=True)
            try:
                info = client.info("replication")
            finally:
                client.close()
            if str(info.get("slave0", {}).get("state")) == "online":
                return
        except redis.RedisError:
            pass
        time.sleep(0.5)
    pytest.fail("the replica did not come back online within 60 s")


def test_orphaned_room_data_turns_stale_data_only(settings: Settings) -> None:
    client = redis_client.primary(settings, 5.0)
    key = "room_participants:lkchaos-test-orphan"
    client.hset(key, "ghost", b"")
    try:
        found = _run(Context(settings, timeout_s=10.0), ["redis.stale-data-accumulation",
                                                          "redis.room-state-synchronized"])
    finally:
        client.delete(key)
        client.close()
    assert found["redis.stale-data-accumulation"].status == "fail"
    assert "lkchaos-test-orphan" in found["redis.stale-data-accumulation"].evidence
    assert found["redis.room-state-synchronized"].status == "pass"
