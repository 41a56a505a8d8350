"""Render the reference stack's configuration files and secrets into its state folder.

Every file the containers read comes from here, built from :mod:`lkchaos.stack.layout`, so the
compose file, the configs and lkchaos's own defaults cannot drift apart. Rendering is pure
(``render_configs`` returns text); ``write_state`` puts it on disk with the certificates and a
key pair that is generated once and then kept.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml

from lkchaos import certs
from lkchaos.checkout import read_env_file
from lkchaos.errors import ConfigError
from lkchaos.stack import layout

DEFAULT_NET_PREFIX = "172.29.77"


@dataclass(frozen=True)
class StackConfig:
    """What varies between renderings: the test domain and the network's address prefix."""

    domain: str = layout.DOMAIN
    net_prefix: str = DEFAULT_NET_PREFIX

    @classmethod
    def from_env(cls) -> StackConfig:
        prefix = os.environ.get("LKCHAOS_NET_PREFIX", DEFAULT_NET_PREFIX)
        parts = prefix.split(".")
        if len(parts) != 3 or not all(p.isdigit() and 0 <= int(p) <= 255 for p in parts):
            raise ConfigError(
                f"LKCHAOS_NET_PREFIX={prefix!r} is not the first three octets of an IPv4 /24 "
                "(for example 172.29.77)"
            )
        return cls(net_prefix=prefix)

    def address(self, service: str) -> str:
        """The fixed address of ``service`` in the stack network."""
        try:
            return f"{self.net_prefix}.{layout.HOST_OCTET[service]}"
        except KeyError as exc:
            known = ", ".join(sorted(layout.HOST_OCTET))
            raise ConfigError(f"unknown service {service!r}; known services: {known}") from exc

    def name(self, prefix: str) -> str:
        """A name under the test domain, e.g. ``name("lk")`` -> ``lk.chaos.test``."""
        return f"{prefix}.{self.domain}"

    @property
    def tls_names(self) -> list[str]:
        return [self.name("lk"), self.name("turn"), self.name("whip")]


def livekit_yaml(cfg: StackConfig) -> str:
    """LiveKit server config shared by both nodes (each gets ``--node-ip`` on its command line).

    Keys come from ``LIVEKIT_KEYS`` in the environment, never from this file. Redis is reached
    through Sentinel. ICE uses one muxed UDP port and TCP; STUN points at the node's own TURN
    port so no client is ever sent to a public STUN server.
    """
    sentinels = [f"sentinel-{i}:26379" for i in (1, 2, 3)]
    config = {
        "port": 7880,
        "log_level": "info",
        "redis": {
            "sentinel_master_name": layout.SENTINEL_MASTER,
            "sentinel_addresses": sentinels,
        },
        "rtc": {
            "tcp_port": 7881,
            "udp_port": 7882,
            "use_external_ip": False,
            "stun_servers": [f"{cfg.address('livekit-1')}:3478"],
        },
        "turn": {
            "enabled": True,
            "domain": cfg.name("turn"),
            "tls_port": 5349,
            "udp_port": 3478,
            "relay_range_start": 30000,
            "relay_range_end": 30100,
            "cert_file": f"/certs/{cfg.name('turn')}.crt",
            "key_file": f"/certs/{cfg.name('turn')}.key",
        },
        "prometheus": {"port": 6789},
        "room": {"empty_timeout": 120, "departure_timeout": 10},
    }
    return "# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.\n" + yaml.safe_dump(
        config, sort_keys=False
    )


def caddyfile(cfg: StackConfig) -> str:
    """Caddy: TLS on :443 with the stack's own certificates, SNI-routed by name.

    ``lk.<domain>`` goes to both LiveKit nodes (WebSocket signalling and the HTTP APIs) with
    active health checks on LiveKit's ``/`` (200 OK, 406 when a node lost Redis);
    ``whip.<domain>`` is reserved for an ingress and answers 503 until one is deployed.
    """
    lk, whip = cfg.name("lk"), cfg.name("whip")
    return f"""# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.
{{
	auto_https disable_certs
	ocsp_stapling off
	skip_install_trust
	servers :443 {{
		protocols h1 h2
	}}
}}

{lk} {{
	tls /certs/{lk}.crt /certs/{lk}.key
	header Strict-Transport-Security "max-age=31536000"
	reverse_proxy livekit-1:7880 livekit-2:7880 {{
		lb_policy round_robin
		health_uri /
		health_interval 2s
		health_timeout 1s
		fail_duration 5s
	}}
}}

{whip} {{
	tls /certs/{whip}.crt /certs/{whip}.key
	header Strict-Transport-Security "max-age=31536000"
	respond "no WHIP ingress is deployed in this stack" 503
}}
"""


def dnsmasq_conf(cfg: StackConfig) -> str:
    """dnsmasq answers the test domain from a hosts file and forwards nothing.

    Names under the domain that are not in the hosts file get NXDOMAIN; every other name gets
    REFUSED (no upstream servers). The hosts file is re-read on SIGHUP.
    """
    return f"""# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.
no-resolv
no-hosts
no-poll
domain-needed
bogus-priv
local=/{cfg.domain}/
addn-hosts=/etc/dnsmasq.d/hosts
local-ttl=5
cache-size=0
"""


def dns_hosts(cfg: StackConfig) -> str:
    lines = [
        f"{cfg.address('caddy')} {cfg.name('lk')}",
        f"{cfg.address('caddy')} {cfg.name('whip')}",
        f"{cfg.address('livekit-1')} {cfg.name('turn')}",
        f"{cfg.address('livekit-1')} {cfg.name('livekit-1')}",
        f"{cfg.address('livekit-2')} {cfg.name('livekit-2')}",
    ]
    return "\n".join(lines) + "\n"


def sentinel_conf(cfg: StackConfig) -> str:
    """Sentinel: quorum 2 of 3, 2 s down-after, so a failover is real and quick.

    Hostnames are announced and resolved, so the master Sentinel names is a service name that
    LiveKit (inside the network) resolves, and lkchaos maps to a published port outside it.
    """
    master = layout.SENTINEL_MASTER
    return f"""# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.
port 26379
sentinel resolve-hostnames yes
sentinel announce-hostnames yes
sentinel monitor {master} redis-primary 6379 2
sentinel down-after-milliseconds {master} 2000
sentinel failover-timeout {master} 10000
sentinel parallel-syncs {master} 1
"""


def toxiproxy_json() -> str:
    proxies = [
        {"name": name, "listen": f"0.0.0.0:{port}", "upstream": upstream, "enabled": True}
        for name, (port, upstream) in layout.TOXIPROXY_LINKS.items()
    ]
    return json.dumps(proxies, indent=2) + "\n"


def render_configs(cfg: StackConfig) -> dict[str, str]:
    """Every config file, keyed by its path relative to the config folder."""
    return {
        "livekit.yaml": livekit_yaml(cfg),
        "Caddyfile": caddyfile(cfg),
        "dnsmasq.conf": dnsmasq_conf(cfg),
        "dns-hosts": dns_hosts(cfg),
        "sentinel.conf": sentinel_conf(cfg),
        "toxiproxy.json": toxiproxy_json(),
    }


def new_keys() -> dict[str, str]:
    """A fresh LiveKit API key and a 48-character secret (LiveKit wants at least 32)."""
    return {
        "LIVEKIT_API_KEY": "lkchaos-" + secrets.token_hex(4),
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(36),
    }


def write_state(state_dir: Path, cfg: StackConfig) -> dict[str, str]:
    """Write configs, certificates and (once) the key pair; return the stack's environment."""
    config_dir, certs_dir = state_dir / "config", state_dir / "certs"
    config_dir.mkdir(parents=True, exist_ok=True)
    for rel, text in render_configs(cfg).items():
        target = config_dir / rel
        if not target.is_file() or target.read_text() != text:
            target.write_text(text)
    certs.ensure_stack_certs(certs_dir, cfg.tls_names)

    env_file = state_dir / "stack.env"
    env = read_env_file(env_file) if env_file.is_file() else {}
    if not env.get("LIVEKIT_API_KEY") or not env.get("LIVEKIT_API_SECRET"):
        env.update(new_keys())
    env["LKCHAOS_NET_PREFIX"] = cfg.net_prefix
    env["LKCHAOS_STATE_DIR"] = str(state_dir.resolve())
    body = "".join(f"{key}={value}\n" for key, value in sorted(env.items()))
    header = "# Generated by lkchaos: the stack's API key pair. Keep it private.\n"
    certs.replace_file(env_file, (header + body).encode(), mode=certs.KEY_MODE)
    return env
