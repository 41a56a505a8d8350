"""What ``lkchaos target check`` says certificate and resolver faults lack on a target: the
same reasons the actions give when they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest

from lkchaos.target import load_target, missing

ROOT = Path(__file__).resolve().parents[2]
MINIMAL = ROOT / "tests" / "fixtures" / "targets" / "minimal.yaml"
SWAP = "lkchaos.tls.actions.swap_certificate"
RESTORE = "lkchaos.tls.actions.restore_certificate"


def _target(tmp_path: Path, kind: str, reload: str, roles: str = "tls_proxy: nginx",
            resolver: str = "") -> list[list[str]]:
    text = MINIMAL.read_text().replace("kind: nginx", f"kind: {kind}").replace(
        "reload: {signal: SIGHUP}", reload).replace("tls_proxy: nginx", roles)
    path = tmp_path / "t.yaml"
    path.write_text(text + resolver)
    target = load_target(path).target
    return [missing(target, SWAP), missing(target, RESTORE),
            missing(target, "lkchaos.dns.actions.nxdomain_name"),
            missing(target, "lkchaos.dns.probes.resolve_names")]


@pytest.mark.parametrize(
    ("kind", "reload", "roles", "reason"),
    [
        ("nginx", "reload: {signal: SIGHUP}", "tls_proxy: nginx", None),
        ("caddy", "reload: {command: [caddy, reload]}", "tls_proxy: caddy", None),
        ("caddy", 'reload: {admin_api: "http://10.0.0.10:2019"}', "speech_to_text: s", None),
        ("nginx", "reload: none", "tls_proxy: nginx",
         "needs a way to reload the TLS proxy's certificates: the target's tls_proxy has "
         "reload: none"),
        ("traefik", "reload: {signal: SIGHUP}", "tls_proxy: nginx",
         "needs a TLS proxy whose certificate files lkchaos can find (caddy or nginx): the "
         "target's tls_proxy is traefik"),
        ("other", "reload: {command: [reload-certs]}", "tls_proxy: nginx",
         "needs a TLS proxy whose certificate files lkchaos can find (caddy or nginx): the "
         "target's tls_proxy is other"),
        ("nginx", 'reload: {admin_api: "http://10.0.0.10:2019"}', "tls_proxy: nginx",
         "needs a reload nginx understands: admin_api is Caddy's admin API; use reload: "
         "{signal: SIGHUP}"),
        ("nginx", "reload: {signal: SIGHUP}", "speech_to_text: s",
         "needs the TLS proxy's container: roles.tls_proxy is not set"),
    ],
)
def test_certificate_faults(tmp_path: Path, kind: str, reload: str, roles: str,
                            reason: str | None) -> None:
    swap, restore, _, _ = _target(tmp_path, kind, reload, roles)
    assert swap == restore == ([] if reason is None else [reason])


@pytest.mark.parametrize(
    ("resolver", "roles", "fault", "probe"),
    [
        ("", "tls_proxy: nginx", ["needs a resolver lkchaos may fault: the target has none"],
         ["needs a resolver: the target has none"]),
        ('resolver: {kind: dnsmasq, address: "10.0.0.53:53"}\n', "tls_proxy: nginx",
         ["needs a resolver lkchaos may fault: the target's resolver has may_fault: false"], []),
        ('resolver: {kind: dnsmasq, address: "10.0.0.53:53", may_fault: true}\n',
         "tls_proxy: nginx", ["needs the resolver's container: roles.resolver is not set"], []),
        ('resolver: {kind: dnsmasq, address: "10.0.0.53:53", may_fault: true}\n',
         "tls_proxy: nginx\n  resolver: dnsmasq", [], []),
    ],
)
def test_resolver_faults(tmp_path: Path, resolver: str, roles: str, fault: list[str],
                         probe: list[str]) -> None:
    found = _target(tmp_path, "nginx", "reload: {signal: SIGHUP}", roles, resolver)
    assert (found[2], found[3]) == (fault, probe)
