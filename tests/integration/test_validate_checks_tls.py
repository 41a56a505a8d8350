"""The TLS, Caddy, network and TURN checks of `lkchaos validate` against the live reference
stack: the healthy stack passes each of them (or says plainly why it cannot: UDP RTC ports
that answer STUN only inside an ICE session, a stack reachable from this machine only), and
an injected problem turns exactly its items. Every fault is restored in ``finally``."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lkchaos.settings import Settings
from lkchaos.tls import actions as tls_actions
from lkchaos.validate.checks import caddy, network, turn
from lkchaos.validate.checks import tls as tls_checks
from lkchaos.validate.model import CHECKS, Context, Finding

#: Items of these modules and the statuses the healthy reference stack gives them.
HEALTHY: dict[str, tuple[str, ...]] = {
    "tls.certificate-chains-complete": ("pass",),
    "tls.certificates-match-domain": ("pass",),
    "tls.certificates-not-expired": ("pass",),
    "tls.certificates-not-expiring": ("pass",),
    "tls.intermediate-certificates-included": ("pass",),
    "tls.root-ca-trusted": ("pass",),
    "tls.perfect-forward-secrecy": ("pass",),
    "tls.strong-cipher-suites": ("pass",),
    "tls.weak-cipher-suites": ("pass",),
    "tls.tls-1-2-only": ("pass",),
    "tls.hsts-header-configured": ("pass",),
    "tls.ssl-labs-rating": ("manual",),
    "caddy.tls-termination-working": ("pass",),
    "caddy.sni-routing-correct": ("pass",),
    "caddy.upstream-connections-successful": ("pass",),
    "caddy.load-balancing-working": ("pass",),
    "caddy.health-checks-passing": ("pass",),
    "caddy.http-https-redirect": ("pass",),
    "caddy.alpn-negotiation-working": ("pass",),
    "caddy.websocket-upgrades-successful": ("pass",),
    "caddy.static-file-serving": ("n/a",),
    "caddy.compression-working": ("n/a",),
    "infra.dns-records-configured.lk": ("pass",),
    "infra.dns-records-configured.lk-turn": ("pass",),
    "infra.dns-records-configured.lk-whip": ("pass",),
    "infra.firewall-rules-configured.port-443": ("pass",),
    "infra.firewall-rules-configured.port-7880": ("pass",),
    "infra.firewall-rules-configured.port-7881": ("pass",),
    "infra.firewall-rules-configured.port-5349": ("pass",),
    "infra.firewall-rules-configured.port-3478": ("pass",),
    "infra.firewall-rules-configured.port-1935": ("pass",),
    "infra.firewall-rules-configured.port-8080": ("pass",),
    # LiveKit's muxed ICE port answers STUN only inside a session: a participant's media
    # over UDP to each node shows it open.
    "infra.firewall-rules-configured.ports-50000": ("pass",),
    # Reachable from this machine only: said as a warning.
    "infra.network-connectivity-validated": ("warn",),
    # Loopback is shared with this machine's own services; anything else open there is shown.
    "vuln.port-scan-results": ("pass", "warn"),
    "vuln.unnecessary-services-exposed": ("pass", "warn"),
    "ingress-egress.turn-integration": ("pass",),
}


@pytest.fixture
def ctx(settings: Settings) -> Context:
    return Context(settings, timeout_s=30.0)


@pytest.mark.parametrize("item", sorted(HEALTHY))
def test_the_healthy_stack(ctx: Context, item: str) -> None:
    finding = CHECKS[item](ctx)
    assert finding.status in HEALTHY[item], f"{item}: {finding.status}: {finding.evidence}"


def test_turn_relays_over_udp_and_tls_with_the_stack_keys(ctx: Context) -> None:
    results = turn.turn_results(ctx)
    assert {r["transport"] for r in results} == {"udp", "tls"}
    for result in results:
        ok, text = turn.summary(result)
        assert ok, text
        assert result["wrong_password"].startswith("refused")


def test_each_nodes_rtc_udp_port_carries_a_participants_media(ctx: Context) -> None:
    finding = CHECKS["infra.firewall-rules-configured.ports-50000"](ctx)
    assert finding.status == "pass", finding.evidence
    reached = finding.data["reached"]
    assert len(reached) == 2 and all(a.endswith(":7882") for a in reached.values()), reached
    assert "livekit-1: a participant's audio" in finding.evidence
    assert "livekit-2: a participant's audio" in finding.evidence
    # Each room was created on the node whose port it shows (by its id in Redis), so two
    # rooms are enough whichever node LiveKit's selector favours.
    assert len(finding.data["node_ids"]) == 2, finding.data["node_ids"]
    assert [t["node_id"] for t in finding.data["media"]] == \
        [finding.data["node_ids"][h] for h in sorted(finding.data["node_ids"])], finding.data


def test_load_balancing_reaches_both_nodes(ctx: Context) -> None:
    finding = caddy.load_balancing(ctx)
    assert finding.status == "pass", finding.evidence
    assert all(rise > 0 for rise in finding.data["per_node"])


def test_each_name_reaches_its_upstream(ctx: Context, settings: Settings) -> None:
    names = network.public_names(settings)
    assert caddy.route(ctx, names["lk"] or "")["upstream"] == "livekit"
    assert caddy.route(ctx, names["turn"] or "")["upstream"] == "turn"
    assert caddy.route(ctx, names["whip"] or "")["upstream"] == "other"


def _after(settings: Settings, fault: Callable[[], object]) -> dict[str, Finding]:
    fault()
    fresh = Context(settings, timeout_s=30.0)
    return {item: CHECKS[item](fresh) for item in HEALTHY if item.startswith("tls.")}


def test_an_expiring_certificate_turns_only_the_expiry_item(settings: Settings) -> None:
    lk = network.public_names(settings)["lk"] or ""
    try:
        found = _after(settings, lambda: tls_actions.swap_certificate(
            name=lk, kind="expiring", days=10))
    finally:
        tls_actions.restore_certificate(lk)
    changed = {item for item, f in found.items() if f.status not in HEALTHY[item]}
    assert changed == {"tls.certificates-not-expiring"}
    assert found["tls.certificates-not-expiring"].data["names"][lk]["status"] == "fail"


def test_an_expired_certificate_turns_expiry_and_chain(settings: Settings) -> None:
    lk = network.public_names(settings)["lk"] or ""
    try:
        found = _after(settings, lambda: tls_actions.swap_certificate(name=lk, kind="expired"))
    finally:
        tls_actions.restore_certificate(lk)
    changed = {item for item, f in found.items() if f.status not in HEALTHY[item]}
    assert changed == {"tls.certificates-not-expiring", "tls.certificates-not-expired",
                       "tls.certificate-chains-complete"}  # fmt: skip


def test_an_untrusted_certificate_turns_trust_and_chain(settings: Settings) -> None:
    lk = network.public_names(settings)["lk"] or ""
    try:
        found = _after(settings, lambda: tls_actions.swap_certificate(name=lk, kind="untrusted"))
    finally:
        tls_actions.restore_certificate(lk)
    changed = {item for item, f in found.items() if f.status not in HEALTHY[item]}
    assert changed == {"tls.root-ca-trusted", "tls.certificate-chains-complete",
                       "tls.intermediate-certificates-included"}  # fmt: skip
    assert tls_checks.trust_store(settings)  # the stack CA was read
