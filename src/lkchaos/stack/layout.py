"""The reference stack's fixed layout: service names, addresses inside its network, host ports.

Everything that the compose file, the rendered configs and the default settings must agree on
lives here, once. Host ports are published on 127.0.0.1 only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT = "lkchaos"
DOMAIN = "chaos.test"
SENTINEL_MASTER = "lkchaos"
LIVEKIT_VERSION = "v1.13.5"
TOXIPROXY_VERSION = "v2.12.0"
CADDY_VERSION = "v2.11.9"
INGRESS_VERSION = "v1.5.0"

#: Services in start order (dependencies first). Names are stable: experiments use them.
SERVICES: tuple[str, ...] = (
    "dns",
    "redis-primary",
    "redis-replica",
    "sentinel-1",
    "sentinel-2",
    "sentinel-3",
    "livekit-1",
    "livekit-2",
    "caddy",
    "ingress",
    "whisper",
    "mcp",
    "toxiproxy",
    "agent",
    "hooks",
    "redis-exporter",
    "node-exporter",
    "blackbox",
    "pushgateway",
    "alertmanager",
    "prometheus",
    "prober",
)

#: Last octet of each service's address in the stack network.
HOST_OCTET: dict[str, int] = {
    "caddy": 10,
    "livekit-1": 11,
    "livekit-2": 12,
    "redis-primary": 21,
    "redis-replica": 22,
    "sentinel-1": 31,
    "sentinel-2": 32,
    "sentinel-3": 33,
    "toxiproxy": 40,
    "whisper": 41,
    "mcp": 42,
    "agent": 43,
    "prober": 44,
    "hooks": 45,
    "ingress": 60,
    "prometheus": 50,
    "alertmanager": 51,
    "dns": 53,
    "pushgateway": 54,
    "redis-exporter": 55,
    "node-exporter": 56,
    "blackbox": 57,
}

#: Host ports (127.0.0.1) -> (service, container port).
HOST_PORTS: dict[str, tuple[str, int, int]] = {
    "caddy_https": ("caddy", 443, 7443),
    "livekit_1_http": ("livekit-1", 7880, 27880),
    "livekit_2_http": ("livekit-2", 7880, 27890),
    "livekit_1_metrics": ("livekit-1", 6789, 26789),
    "livekit_2_metrics": ("livekit-2", 6789, 26790),
    "redis_primary": ("redis-primary", 6379, 27379),
    "redis_replica": ("redis-replica", 6379, 27380),
    "sentinel_1": ("sentinel-1", 26379, 27479),
    "sentinel_2": ("sentinel-2", 26379, 27480),
    "sentinel_3": ("sentinel-3", 26379, 27481),
    "toxiproxy_api": ("toxiproxy", 8474, 28474),
    "link_agent_livekit": ("toxiproxy", 17880, 17880),
    "link_agent_whisper": ("toxiproxy", 18000, 18000),
    "link_agent_mcp": ("toxiproxy", 18100, 18100),
    "dns": ("dns", 53, 27053),
    "whisper": ("whisper", 8000, 28000),
    "mcp": ("mcp", 8100, 28100),
    "agent_health": ("agent", 8081, 28081),
    "prober": ("prober", 8090, 28090),
    "hooks": ("hooks", 8200, 28200),
    "ingress_rtmp": ("ingress", 1935, 21935),
    "ingress_whip": ("ingress", 8080, 28080),
    "prometheus": ("prometheus", 9090, 29090),
    "alertmanager": ("alertmanager", 9093, 29093),
    "pushgateway": ("pushgateway", 9091, 29091),
    "link_livekit_hooks": ("toxiproxy", 18300, 18300),
}

#: Toxiproxy links: name -> (listen port on the toxiproxy container, upstream host:port).
TOXIPROXY_LINKS: dict[str, tuple[int, str]] = {
    "agent_livekit": (17880, "caddy:7880"),
    "agent_whisper": (18000, "whisper:8000"),
    "agent_mcp": (18100, "mcp:8100"),
    "livekit_hooks": (18300, "hooks:8200"),
}


def host_port(name: str) -> int:
    """Host port published on 127.0.0.1 for ``name`` (a key of :data:`HOST_PORTS`)."""
    return HOST_PORTS[name][2]


@dataclass(frozen=True)
class StackPaths:
    """Where the stack's files are: the compose file, build contexts and runtime state."""

    root: Path
    state_dir: Path = field(default=Path())

    def __post_init__(self) -> None:
        if self.state_dir == Path():
            object.__setattr__(self, "state_dir", self.root / ".lkchaos")

    @classmethod
    def discover(cls, start: Path | None = None) -> StackPaths:
        """Find the project root (the folder holding ``docker-compose.chaos.yml``).

        ``LKCHAOS_ROOT`` wins; otherwise the current folder and its parents are searched.
        ``LKCHAOS_STATE_DIR`` overrides where keys, certificates and rendered configs go.
        """
        from lkchaos.checkout import require_root

        root = require_root(start)
        state = os.environ.get("LKCHAOS_STATE_DIR")
        return cls(root, Path(state) if state else Path())

    @property
    def compose_file(self) -> Path:
        return self.root / "docker-compose.chaos.yml"

    @property
    def env_file(self) -> Path:
        return self.state_dir / "stack.env"

    @property
    def certs_dir(self) -> Path:
        return self.state_dir / "certs"

    @property
    def config_dir(self) -> Path:
        return self.state_dir / "config"

    @property
    def images_dir(self) -> Path:
        return self.root / "stack" / "images"

    @property
    def ca_file(self) -> Path:
        return self.certs_dir / "ca.crt"
