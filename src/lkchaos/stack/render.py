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
from typing import Any

import yaml

from lkchaos import certs
from lkchaos.checkout import read_env_file
from lkchaos.errors import ConfigError
from lkchaos.stack import layout, monitoring

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


#: LiveKit's TURN/TLS port on each node: plain TCP behind Caddy, which terminates TLS on 443.
TURN_TLS_PORT = 5349
#: Where LiveKit posts its webhooks: through Toxiproxy to the stack's webhook receiver.
WEBHOOK_LINK = "livekit_hooks"


def webhook_url() -> str:
    """LiveKit's webhook URL: the Toxiproxy link in front of the receiver, so it can be faulted."""
    port, _ = layout.TOXIPROXY_LINKS[WEBHOOK_LINK]
    return f"http://toxiproxy:{port}/livekit"


#: LiveKit Ingress's ports inside the stack network.
INGRESS_RTMP_PORT = 1935
INGRESS_WHIP_PORT = 8080
#: The one UDP port of WHIP sessions' WebRTC (ICE, muxed).
INGRESS_WEBRTC_PORT = 7885
INGRESS_HEALTH_PORT = 9092
INGRESS_METRICS_PORT = 6789
#: The ingress service's address octet, until the layout names it (HOST_OCTET["ingress"]).
#: Where Ingress reaches LiveKit: Caddy's internal load balancer (both nodes, health-checked),
#: as the agent does, so a session started while a node is down lands on the other one.
INGRESS_LIVEKIT_URL = "ws://caddy:7880"
#: Ingress's CPU costs on the reference stack's small machine (2 cores): with the defaults
#: (2 CPUs per transcoding session) every request is refused as "server capacity exceeded".
INGRESS_CPU_COST = {
    # Ingress admits a session only while idle CPU exceeds its cost plus min_idle_ratio of
    # every core (livekit/ingress pkg/stats/monitor.go); on two cores shared with the whole
    # stack the defaults (2 CPUs per session, 30 % idle) refuse every stream.
    "rtmp_cpu_cost": 0.2,
    "whip_cpu_cost": 0.2,
    "whip_bypass_transcoding_cpu_cost": 0.05,
    "url_cpu_cost": 0.2,
    "min_idle_ratio": 0.02,
}


def ingress_base_urls(cfg: StackConfig) -> dict[str, str]:
    """LiveKit's ``ingress`` block: the URLs clients push to, as CreateIngress returns them.

    RTMP goes straight to the ingress (``rtmp.<domain>``, port 1935: Caddy does not proxy
    RTMP); WHIP goes through Caddy's TLS listener (``whip.<domain>`` on 443 to the ingress's
    port 8080). A client outside the stack network (lkchaos on the host) reaches them on the
    published ports instead (see the ``ingress_rtmp_url`` / ``ingress_whip_url`` settings).
    """
    return {
        "rtmp_base_url": f"rtmp://{cfg.name('rtmp')}:{INGRESS_RTMP_PORT}/x",
        "whip_base_url": f"https://{cfg.name('whip')}/w",
    }


def _ingress_address(cfg: StackConfig) -> str:
    return cfg.address("ingress")


def ingress_yaml(cfg: StackConfig, ws_url: str = INGRESS_LIVEKIT_URL) -> str:
    """LiveKit Ingress's config: Redis through Sentinel (as the nodes), LiveKit at ``ws_url``.

    The API key pair comes from ``LIVEKIT_API_KEY`` / ``LIVEKIT_API_SECRET`` in the
    environment, never from this file. WHIP's WebRTC uses one UDP port and the ingress's own
    address (``node_ip``), so no STUN server is asked for it. ``cpu_cost`` is lowered for a
    small machine (:data:`INGRESS_CPU_COST`).
    """
    config = {
        "ws_url": ws_url,
        "redis": {
            "sentinel_master_name": layout.SENTINEL_MASTER,
            "sentinel_addresses": [f"sentinel-{i}:26379" for i in (1, 2, 3)],
        },
        "rtmp_port": INGRESS_RTMP_PORT,
        "whip_port": INGRESS_WHIP_PORT,
        "health_port": INGRESS_HEALTH_PORT,
        "prometheus_port": INGRESS_METRICS_PORT,
        "logging": {"level": "info"},
        "rtc_config": {
            "udp_port": INGRESS_WEBRTC_PORT,
            "use_external_ip": False,
            "node_ip": _ingress_address(cfg),
        },
        "cpu_cost": dict(INGRESS_CPU_COST),
    }
    return "# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.\n" + yaml.safe_dump(
        config, sort_keys=False
    )


def livekit_yaml(cfg: StackConfig, api_key: str) -> str:
    """LiveKit server config shared by both nodes (each gets ``--node-ip`` on its command line).

    Keys come from ``LIVEKIT_KEYS`` in the environment, never from this file; ``api_key`` only
    names the key that signs webhooks (its secret stays in the environment). Redis is reached
    through Sentinel. ICE uses one muxed UDP port and TCP; STUN points at the node's own TURN
    port so no client is ever sent to a public STUN server.

    TURN/TLS is terminated by Caddy on 443 (``turn.external_tls``): each node listens for
    plain TCP on :data:`TURN_TLS_PORT` and holds no certificate, and LiveKit then tells
    clients ``turns:turn.<domain>:443?transport=tcp``.
    """
    if not api_key:
        raise ConfigError("livekit.yaml needs the stack's API key to sign webhooks; got none")
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
            "tls_port": TURN_TLS_PORT,
            "external_tls": True,
            "udp_port": 3478,
            "relay_range_start": 30000,
            "relay_range_end": 30100,
            # LiveKit's TURN refuses to relay to private addresses unless listed here
            # (pkg/service/turn.go): the nodes sit on the stack's private network, so without
            # it TURN allocates but never carries media.
            "allow_restricted_peer_cidrs": [f"{cfg.net_prefix}.0/24"],
        },
        "webhook": {"api_key": api_key, "urls": [webhook_url()]},
        "prometheus": {"port": 6789},
        "room": {"empty_timeout": 120, "departure_timeout": 10},
        "ingress": ingress_base_urls(cfg),
    }
    return "# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.\n" + yaml.safe_dump(
        config, sort_keys=False
    )


#: Caddy's plain-HTTP listener inside the stack network: both LiveKit nodes, load-balanced.
INTERNAL_HTTP_PORT = 7880
#: Caddy's Prometheus metrics listener inside the stack network (path ``/metrics``).
METRICS_PORT = 9180
#: Where the WHIP ingress is expected; until one is deployed, whip.<domain> answers 502.
WHIP_UPSTREAM = "ingress:8080"
#: HSTS header value on the TLS sites: one year.
HSTS = "max-age=31536000"


def _livekit_upstreams(indent: str) -> str:
    """``reverse_proxy`` to both LiveKit nodes with active health checks on ``/``.

    LiveKit answers ``/`` with 200 OK, and 406 when the node lost Redis. A request whose node
    refuses the connection is tried on the other one for up to 2 s (``lb_try_duration``), so
    losing a node costs no request even before the health check notices. A reload keeps
    upgraded connections (signalling WebSockets) of the old config open for up to five minutes
    (``stream_close_delay``), so a certificate rotation does not cut every session at once.
    """
    lines = [
        "reverse_proxy livekit-1:7880 livekit-2:7880 {",
        "\tlb_policy round_robin",
        "\tlb_try_duration 2s",
        "\tlb_try_interval 250ms",
        "\thealth_uri /",
        "\thealth_interval 2s",
        "\thealth_timeout 1s",
        "\tfail_duration 5s",
        "\tstream_close_delay 5m",
        "}",
    ]
    return "\n".join(indent + line for line in lines)


def caddyfile(cfg: StackConfig) -> str:
    """Caddy: one TLS listener on :443, SNI-routed, plus two plain listeners inside the stack.

    - ``turn.<domain>``: the layer-4 listener wrapper matches the name in the TLS ClientHello,
      terminates TLS with the stack's certificate (loaded by the ``turn`` site block, which
      never sees a connection) and proxies the plain TCP to both nodes' TURN port
      (:data:`TURN_TLS_PORT`, ``turn.external_tls``), round-robin; a node that refuses the
      connection is skipped for the other one. Every other ClientHello goes on to the HTTP app.
    - ``lk.<domain>``: both LiveKit nodes (WebSocket signalling and the HTTP APIs), with active
      health checks, HSTS one year.
    - ``whip.<domain>``: the WHIP ingress at :data:`WHIP_UPSTREAM`; while none answers, a
      502 saying so after at most 2 s.
    - ``:7880``: plain HTTP to both LiveKit nodes, the same health checks: what the agent uses.
    - ``:9180``: Caddy's Prometheus metrics at ``/metrics``.

    The ``servers :443`` options, the layer-4 wrapper with them, apply to the listener whose
    address is exactly ``:443``: a bind address (``default_bind``, ``bind``) must be named there
    too, or TURN/TLS falls through to the HTTP app. Certificates come only from files
    (``auto_https disable_certs``): no ACME, no OCSP, no trust store change.
    ``caddy reload --adapter caddyfile`` reloads it, certificates included.
    """
    lk, turn, whip = cfg.name("lk"), cfg.name("turn"), cfg.name("whip")
    upstreams = "\n".join(
        f"\t\t\t\t\t\tupstream tcp/{node}:{TURN_TLS_PORT}" for node in ("livekit-1", "livekit-2")
    )
    return f"""# Rendered by lkchaos; edit src/lkchaos/stack/render.py instead.
{{
	auto_https disable_certs
	ocsp_stapling off
	skip_install_trust
	metrics
	servers :443 {{
		protocols h1 h2
		listener_wrappers {{
			layer4 {{
				@turn tls sni {turn}
				route @turn {{
					tls
					proxy {{
						lb_policy round_robin
						lb_try_duration 2s
						lb_try_interval 250ms
						health_interval 2s
						health_timeout 1s
						fail_duration 5s
{upstreams}
					}}
				}}
			}}
			tls
		}}
	}}
}}

{lk} {{
	tls /certs/{lk}.crt /certs/{lk}.key
	header Strict-Transport-Security "{HSTS}"
{_livekit_upstreams(chr(9))}
}}

{turn} {{
	tls /certs/{turn}.crt /certs/{turn}.key
	respond "{turn} serves TURN over TLS, not HTTP" 421
}}

{whip} {{
	tls /certs/{whip}.crt /certs/{whip}.key
	header Strict-Transport-Security "{HSTS}"
	reverse_proxy {WHIP_UPSTREAM} {{
		transport http {{
			dial_timeout 2s
		}}
	}}
	handle_errors {{
		respond "no WHIP ingress answered at {WHIP_UPSTREAM}: {{err.message}}" {{err.status_code}}
	}}
}}

http://:{INTERNAL_HTTP_PORT} {{
{_livekit_upstreams(chr(9))}
}}

http://:{METRICS_PORT} {{
	metrics /metrics
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
        f"{cfg.address('caddy')} {cfg.name('turn')}",
        f"{_ingress_address(cfg)} {cfg.name('rtmp')}",
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


def render_configs(cfg: StackConfig, api_key: str, hooks_token: str = "") -> dict[str, str]:
    """Every config file, keyed by its path relative to the config folder.

    ``api_key`` is the stack's LiveKit API key (``LIVEKIT_API_KEY``): livekit.yaml names it
    as the key that signs webhooks. ``hooks_token`` (``LKCHAOS_HOOKS_TOKEN``) is the bearer
    token Alertmanager shows the receiver.
    """
    return {
        "livekit.yaml": livekit_yaml(cfg, api_key),
        "ingress.yaml": ingress_yaml(cfg),
        "Caddyfile": caddyfile(cfg),
        "dnsmasq.conf": dnsmasq_conf(cfg),
        "dns-hosts": dns_hosts(cfg),
        "sentinel.conf": sentinel_conf(cfg),
        "toxiproxy.json": toxiproxy_json(),
        **monitoring.render(cfg.domain, hooks_token),
    }


def new_keys() -> dict[str, str]:
    """A fresh LiveKit API key and a 48-character secret (LiveKit wants at least 32)."""
    return {
        "LIVEKIT_API_KEY": "lkchaos-" + secrets.token_hex(4),
        "LIVEKIT_API_SECRET": secrets.token_urlsafe(36),
    }


#: The services that read each rendered config when they start (Sentinel copies its config
#: once and rewrites its copy, so a new sentinel.conf is not theirs to re-read).
CONFIG_USERS: dict[str, tuple[str, ...]] = {
    "livekit.yaml": ("livekit-1", "livekit-2"),
    "ingress.yaml": ("ingress",),
    "Caddyfile": ("caddy",),
    "dnsmasq.conf": ("dns",),
    "dns-hosts": ("dns",),
    "toxiproxy.json": ("toxiproxy",),
    "prometheus.yml": ("prometheus",),
    "lkchaos-rules.yml": ("prometheus",),
    "alertmanager.yml": ("alertmanager",),
    "blackbox.yml": ("blackbox",),
}


def services_reading(changed: list[str]) -> list[str]:
    """The services to restart so that they read the rewritten configs ``changed``."""
    return sorted({service for name in changed for service in CONFIG_USERS.get(name, ())})


def write_state(state_dir: Path, cfg: StackConfig,
                changed: list[str] | None = None) -> dict[str, str]:
    """Write the key pair (once), configs and certificates; return the stack's environment.

    The keys come first: livekit.yaml is rendered with the API key. With ``changed``, the
    names of the configs that were rewritten (they existed with other content) are appended:
    running containers read them only when they start (:func:`services_reading`).
    """
    config_dir, certs_dir = state_dir / "config", state_dir / "certs"
    env_file = state_dir / "stack.env"
    env = read_env_file(env_file) if env_file.is_file() else {}
    if not env.get("LIVEKIT_API_KEY") or not env.get("LIVEKIT_API_SECRET"):
        env.update(new_keys())
    if not env.get("LKCHAOS_HOOKS_TOKEN"):
        env["LKCHAOS_HOOKS_TOKEN"] = secrets.token_urlsafe(24)
    env["LKCHAOS_NET_PREFIX"] = cfg.net_prefix
    env["LKCHAOS_STATE_DIR"] = str(state_dir.resolve())
    body = "".join(f"{key}={value}\n" for key, value in sorted(env.items()))
    header = "# Generated by lkchaos: the stack's API key pair. Keep it private.\n"
    certs.replace_file(env_file, (header + body).encode(), mode=certs.KEY_MODE)

    config_dir.mkdir(parents=True, exist_ok=True)
    for rel, text in render_configs(cfg, env["LIVEKIT_API_KEY"],
                                    env["LKCHAOS_HOOKS_TOKEN"]).items():
        target = config_dir / rel
        if not target.is_file() or target.read_text() != text:
            if target.is_file() and changed is not None:
                changed.append(rel)
            target.write_text(text)
    # Leaves are re-issued before the monitoring's certificate warning (60 days) would fire.
    certs.ensure_stack_certs(certs_dir, cfg.tls_names,
                             min_days_left=monitoring.CERT_DAYS[1] + 1)
    facts = json.dumps(deployment_facts(cfg), indent=2, sort_keys=True) + "\n"
    facts_file = state_dir / FACTS_FILE
    if not facts_file.is_file() or facts_file.read_text() != facts:
        facts_file.write_text(facts)
    return env


#: The reference stack's facts for whoever inspects it as a deployment (``lkchaos validate``):
#: written as data into the state folder, so that the library reads them without importing
#: the stack's code.
FACTS_FILE = "deployment.json"


def deployment_facts(cfg: StackConfig) -> dict[str, Any]:
    """What the reference stack is, as data: its Compose project, published TLS address,
    each service's address on its network, the ports published on 127.0.0.1, each LiveKit
    node's metrics URL, the TCP ports listening on its addresses (what a port scan must
    find), and what its Caddyfile serves besides proxying (no files, no compression)."""
    nodes = [f"livekit-{n}" for n in range(1, 3)]
    return {
        "kind": "lkchaos-reference-stack",
        "compose_project": layout.PROJECT,
        "tls_address": f"127.0.0.1:{layout.host_port('caddy_https')}",
        "addresses": {service: cfg.address(service) for service in layout.HOST_OCTET},
        "host_ports": {name: port for name, (_, _, port) in layout.HOST_PORTS.items()},
        "node_metrics_urls": [f"http://127.0.0.1:{layout.host_port(f'livekit_{n}_metrics')}"
                              "/metrics" for n in range(1, 3)],  # fmt: skip
        "listening": {
            # Caddy: HTTPS, the HTTP redirect, LiveKit's internal listener, its metrics.
            cfg.address("caddy"): [80, 443, 7880, 9180],
            **{cfg.address(node): [7880, 7881, 5349, 6789] for node in nodes},
        },
        "caddy": {"file_server": False, "encode": False},
    }
