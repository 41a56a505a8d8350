"""Where the deployment under test is, read once from Chaos Toolkit configuration and secrets.

Lookup order for each setting: the experiment's ``configuration`` key (plain values or
``{"type": "env", "key": ...}``), then the environment variable, then the target file in use
(docs/targets.md), then the built-in default, which describes the reference stack
(``docker-compose.chaos.yml``).

The target in use is chosen in one place, :func:`lkchaos.target.select_target`: ``--target
FILE`` where a command has it (``lkchaos recover``, ``check``, ``target check``), else
``$LKCHAOS_TARGET``, else the configuration key ``lkchaos_target``, else the reference stack's
own ``stack/targets/reference.yaml`` in the lkchaos checkout. It gives exactly the defaults
below. When none can be selected (an installed package outside a checkout), the built-in
defaults apply; a target that was named but is missing or invalid is a :class:`ConfigError`
naming the file and its problems. A target's file is read again only when it changes. Its API
key and secret are resolved only when no other layer gives them, and a reference that does
not resolve is reported by :meth:`Settings.require_keys`, not by :meth:`Settings.load`.

Settings (configuration key / environment variable: default for the reference stack):

- ``livekit_url`` / ``LIVEKIT_URL``: ``wss://lk.chaos.test``, the URL callers use
- ``livekit_node_urls`` / ``LKCHAOS_LIVEKIT_NODE_URLS``: each node's HTTP port on 127.0.0.1
- ``livekit_api_key`` / ``LIVEKIT_API_KEY``: the target's, else from the stack's state folder
- ``livekit_api_secret`` / ``LIVEKIT_API_SECRET``: likewise
- ``livekit_rtc_tcp_port`` / ``LKCHAOS_LIVEKIT_RTC_TCP_PORT``: ``7881``, LiveKit's
  ``rtc.tcp_port`` (its ICE/TCP fallback; ``0``: off)
- ``livekit_turn_udp_port`` / ``LKCHAOS_LIVEKIT_TURN_UDP_PORT``: ``3478``, LiveKit's
  ``turn.udp_port`` (``0``: no TURN over UDP)
- ``sentinel_addresses`` / ``LKCHAOS_SENTINELS``: the three Sentinels on 127.0.0.1
- ``sentinel_master`` / ``LKCHAOS_SENTINEL_MASTER``: ``lkchaos``
- ``redis_address_map`` / ``LKCHAOS_REDIS_ADDRESS_MAP``: stack names to published ports
- ``toxiproxy_url`` / ``LKCHAOS_TOXIPROXY_URL``: ``http://127.0.0.1:28474``
- ``dns_server`` / ``LKCHAOS_DNS_SERVER``: ``127.0.0.1:27053``
- ``tls_address`` / ``LKCHAOS_TLS_ADDRESS``: ``127.0.0.1:7443`` (Caddy)
- ``domain`` / ``LKCHAOS_DOMAIN``: ``chaos.test``
- ``ca_file`` / ``LKCHAOS_CA_FILE``: the CA clients trust (the target's ``tls_proxy.ca_file``;
  ``""`` for the system's CAs; without a target, the reference stack's CA in the state folder)
- ``compose_project`` / ``LKCHAOS_COMPOSE_PROJECT``: ``lkchaos``
- ``voice_prober_url`` / ``LKCHAOS_VOICE_PROBER_URL``: ``http://127.0.0.1:28090``, the
  stack's prober; ``""`` runs the voice probe from this machine, in a prober lkchaos
  starts as a child process (``lkchaos.voice.local_prober``)
- ``agent_name`` / ``LKCHAOS_AGENT_NAME``: ``lkchaos-agent``, the agent callers dispatch by
  name; ``""``: none by name, the agent joins by LiveKit's automatic dispatch (an agent worker
  started without an ``agent_name``, livekit-agents' default). Set in the target as
  ``voice: {agent_name: ""}``
- ``redis_password`` / ``LKCHAOS_REDIS_PASSWORD``: Redis AUTH (also the secret
  ``{"redis": {"password": ...}}`` or the target's ``password_ref``); ``""``: no AUTH
- ``redis_username`` / ``LKCHAOS_REDIS_USERNAME``: the Redis ACL user (LiveKit's
  ``redis.username``); ``""``: the default user
- ``redis_db`` / ``LKCHAOS_REDIS_DB``: ``0``, the database LiveKit uses (its ``redis.db``), on
  every connection to the data nodes (Sentinels have none)
- ``sentinel_username`` / ``LKCHAOS_SENTINEL_USERNAME`` and ``sentinel_password`` /
  ``LKCHAOS_SENTINEL_PASSWORD`` (also the secret ``{"redis": {"sentinel_password": ...}}`` or
  the target's ``sentinel_password_ref``): the Sentinels' own credentials (LiveKit's
  ``redis.sentinel_username`` / ``sentinel_password``); when neither is set, the Sentinels are
  sent ``redis_password`` alone, as before they had credentials of their own
- ``redis_tls`` / ``LKCHAOS_REDIS_TLS``: ``false``; ``redis_ca_file`` / ``LKCHAOS_REDIS_CA_FILE``
- ``prometheus_url`` / ``LKCHAOS_PROMETHEUS_URL``: ``http://127.0.0.1:29090``
- ``alertmanager_url`` / ``LKCHAOS_ALERTMANAGER_URL``: ``http://127.0.0.1:29093``
- ``pushgateway_url`` / ``LKCHAOS_PUSHGATEWAY_URL``: ``http://127.0.0.1:29091``, where fault
  marks go (:mod:`lkchaos.prometheus.marks`)
- ``receiver_url`` / ``LKCHAOS_RECEIVER_URL``: ``http://127.0.0.1:28200``, the receiver that
  records LiveKit's webhooks and Alertmanager's notifications
- ``ingress_rtmp_url`` / ``LKCHAOS_INGRESS_RTMP_URL``: ``rtmp://127.0.0.1:21935/x`` and
  ``ingress_whip_url`` / ``LKCHAOS_INGRESS_WHIP_URL``: ``http://127.0.0.1:28080/w``, where the
  Ingress probes push (``""``: the URL LiveKit's CreateIngress returns)

An empty value counts as unset (the next layer gives the setting), except for these, where
``""`` is a value: the configuration key or environment variable set to ``""`` wins over the
target and the default.

- the voice prober and the four monitoring URLs: ``""`` means "this deployment has none"
  (the target says so by leaving the URL out of its ``monitoring`` section, or the section out);
- ``agent_name``: ``""`` means automatic dispatch (see above). A target without ``voice``, or
  whose ``voice`` leaves ``agent_name`` out, does not set it: ``lkchaos-agent`` applies.

From the target only (the built-in defaults describe the reference stack):

- ``runtime``: ``compose`` (runtime names are compose service names of ``compose_project``),
  ``docker-name`` (container names) or ``docker-label`` (values of ``runtime_label``)
- ``roles``: role -> runtime names (``agent_worker`` -> ``("agent",)``), see
  :mod:`lkchaos.roles` for how activities name them
- ``toxiproxy_links``: link role -> Toxiproxy proxy name
- ``redis_primary_address``, ``redis_replica_addresses``: Redis without Sentinel
- ``tls_names``: the names the TLS proxy serves certificates for
- ``tls_proxy_kind`` and ``tls_reload`` (``{"command": (...)}``, ``{"signal": "SIGHUP"}``,
  ``{"admin_api": URL}``, or ``{}``: certificates cannot be swapped)
- ``resolver_may_fault``: whether lkchaos may fault the resolver

The state folder (run lock, fault ledger, audit log, the reference stack's keys, certificates
and rendered configs) is always an absolute path, the same from whatever folder lkchaos or
``chaos run`` is started: ``LKCHAOS_STATE_DIR`` when set; else ``.lkchaos`` in the lkchaos
checkout, when one is found (``LKCHAOS_ROOT``, or the current folder and its parents, or
the checkout lkchaos is installed from);
else ``$XDG_STATE_HOME/lkchaos`` (``~/.local/state/lkchaos`` when ``XDG_STATE_HOME`` is
unset or not absolute).

Lists are comma-separated in the environment; the address map is ``from=to`` pairs, e.g.
``redis-primary:6379=10.0.0.5:6379``. Addresses are ``host:port``, an IPv6 host in brackets
(``[fd00::5]:6379``), split by :func:`split_host_port` alone. Secrets may also be given as
Chaos Toolkit secrets ``{"livekit": {"api_key": ..., "api_secret": ...}}``.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lkchaos.checkout import find_root, read_env_file
from lkchaos.errors import ConfigError
from lkchaos.target.select import NoTargetError, Selection, reference_target, select_target

LOCAL = "127.0.0.1"
#: Setting -> the environment variable that sets it, over the target's value (see the
#: module docstring for the order).
ENV_KEYS: dict[str, str] = {
    "livekit_url": "LIVEKIT_URL", "livekit_api_key": "LIVEKIT_API_KEY",
    "livekit_api_secret": "LIVEKIT_API_SECRET", "livekit_node_urls": "LKCHAOS_LIVEKIT_NODE_URLS",
    "livekit_rtc_tcp_port": "LKCHAOS_LIVEKIT_RTC_TCP_PORT",
    "livekit_turn_udp_port": "LKCHAOS_LIVEKIT_TURN_UDP_PORT",
    "sentinel_addresses": "LKCHAOS_SENTINELS", "sentinel_master": "LKCHAOS_SENTINEL_MASTER",
    "redis_address_map": "LKCHAOS_REDIS_ADDRESS_MAP", "toxiproxy_url": "LKCHAOS_TOXIPROXY_URL",
    "dns_server": "LKCHAOS_DNS_SERVER", "tls_address": "LKCHAOS_TLS_ADDRESS",
    "domain": "LKCHAOS_DOMAIN", "ca_file": "LKCHAOS_CA_FILE",
    "compose_project": "LKCHAOS_COMPOSE_PROJECT", "agent_name": "LKCHAOS_AGENT_NAME",
    "voice_prober_url": "LKCHAOS_VOICE_PROBER_URL", "redis_password": "LKCHAOS_REDIS_PASSWORD",
    "redis_tls": "LKCHAOS_REDIS_TLS", "redis_ca_file": "LKCHAOS_REDIS_CA_FILE",
    "redis_username": "LKCHAOS_REDIS_USERNAME", "redis_db": "LKCHAOS_REDIS_DB",
    "sentinel_username": "LKCHAOS_SENTINEL_USERNAME",
    "sentinel_password": "LKCHAOS_SENTINEL_PASSWORD",
    "prometheus_url": "LKCHAOS_PROMETHEUS_URL", "alertmanager_url": "LKCHAOS_ALERTMANAGER_URL",
    "pushgateway_url": "LKCHAOS_PUSHGATEWAY_URL", "receiver_url": "LKCHAOS_RECEIVER_URL",
    "ingress_rtmp_url": "LKCHAOS_INGRESS_RTMP_URL", "ingress_whip_url": "LKCHAOS_INGRESS_WHIP_URL",
}  # fmt: skip
#: The settings where ``""`` is a value, not "unset": "none here" for the URLs, automatic
#: dispatch for ``agent_name`` (see the module docstring).
EMPTY_IS_A_VALUE = ("voice_prober_url", "prometheus_url", "alertmanager_url", "pushgateway_url",
                    "receiver_url", "ingress_rtmp_url", "ingress_whip_url", "agent_name")
#: The settings read as plain text from the layers.
_TEXT_KEYS = ("livekit_url", "livekit_api_key", "livekit_api_secret", "sentinel_master",
              "toxiproxy_url", "dns_server", "tls_address", "domain", "ca_file",
              "compose_project")  # fmt: skip
#: The reference stack's roles (stack/targets/reference.yaml).
REFERENCE_ROLES: dict[str, tuple[str, ...]] = {
    "livekit_node": ("livekit-1", "livekit-2"),
    "redis_primary": ("redis-primary",),
    "redis_replica": ("redis-replica",),
    "sentinel": ("sentinel-1", "sentinel-2", "sentinel-3"),
    "agent_worker": ("agent",),
    "speech_to_text": ("whisper",),
    "tool_server": ("mcp",),
    "tls_proxy": ("caddy",),
    "resolver": ("dns",),
    "toxiproxy": ("toxiproxy",),
    "voice_prober": ("prober",),
    "webhook_receiver": ("hooks",),
    "prometheus": ("prometheus",),
    "alertmanager": ("alertmanager",),
    "pushgateway": ("pushgateway",),
    "metrics_exporter": ("redis-exporter", "node-exporter", "blackbox"),
    "ingress": ("ingress",),
}
#: How the reference stack's Caddy reloads its certificates (run in its container).
CADDY_RELOAD = ("caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile",
                "--force")  # fmt: skip


def default_state_dir() -> Path:
    """The state folder, always absolute (see the module docstring): ``LKCHAOS_STATE_DIR``,
    else the checkout's ``.lkchaos``, else ``$XDG_STATE_HOME/lkchaos``."""
    explicit = os.environ.get("LKCHAOS_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser().resolve()
    root = find_root()
    if root is not None:
        return (root / ".lkchaos").resolve()
    xdg = os.environ.get("XDG_STATE_HOME", "")
    # The XDG spec says a relative XDG_STATE_HOME is invalid and must be ignored.
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "state"
    return (base / "lkchaos").resolve()


def _split(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _parse_map(value: str) -> dict[str, str]:
    mapping: dict[str, str] = {}
    for pair in _split(value):
        src, sep, dst = pair.partition("=")
        if not sep or not src or not dst:
            raise ConfigError(f"address map entry {pair!r} is not of the form from=to")
        mapping[src.strip()] = dst.strip()
    return mapping


def parse_flag(key: str, value: Any) -> bool:
    """A true/false setting from a layer: a bool, or ``1/true/yes/on`` and ``0/false/no/off``
    (any case; ``""`` is false). Raises ConfigError naming ``key`` for anything else."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{key} must be true or false, not {value!r}")


def _whole(key: str, value: Any, low: int, high: int) -> int:
    """A whole number in ``low..high`` from a layer (a number, or its text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ConfigError(f"{key} ({ENV_KEYS[key]}) must be a whole number from {low} to "
                          f"{high}, not {value!r}")  # fmt: skip
    if not low <= number <= high:
        raise ConfigError(f"{key} ({ENV_KEYS[key]}) must be from {low} to {high}, not {number}")
    return number


def selected_target(configuration: Mapping[str, Any] | None = None) -> Selection | None:
    """The target in use (see the module docstring), or None when none can be selected."""
    try:
        return select_target(None, configuration)
    except NoTargetError:  # nothing names one and there is no checkout: the defaults apply
        return None


def run_dir_for(state_dir: Path, selection: Selection | None) -> Path:
    """Where runs on the selected deployment keep what is theirs alone (its run lock,
    room-state snapshots, originals of replaced files): ``state_dir`` itself for the reference
    stack (no target file, or the checkout's ``stack/targets/reference.yaml`` however it was
    chosen), else ``state_dir/targets/<file name>-<8 hex digits of its path's SHA-256>``. The
    fault ledger, audit log and history stay shared: their entries name their target."""
    if selection is None or selection.source == "reference":
        return state_dir
    reference = reference_target()
    if reference == selection.path:  # both resolved
        return state_dir
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", selection.path.stem)[:40] or "target"
    digest = hashlib.sha256(str(selection.path).encode()).hexdigest()[:8]
    return state_dir / "targets" / f"{name}-{digest}"


def _stack_keys(state_dir: Path) -> dict[str, str]:
    env_file = state_dir / "stack.env"
    return read_env_file(env_file) if env_file.is_file() else {}


@dataclass(frozen=True)
class Settings:
    """Addresses and credentials of the deployment under test."""

    # The defaults describe the reference stack (stack/targets/reference.yaml; a unit test
    # holds them equal to it and to the ports src/lkchaos/stack/layout.py publishes).
    livekit_url: str = "wss://lk.chaos.test"
    livekit_node_urls: tuple[str, ...] = (f"http://{LOCAL}:27880", f"http://{LOCAL}:27890")
    livekit_api_key: str = ""
    livekit_api_secret: str = field(default="", repr=False)
    #: LiveKit's ``rtc.tcp_port`` (ICE over TCP, the fallback when UDP is blocked); 0: off.
    livekit_rtc_tcp_port: int = 7881
    #: LiveKit's ``turn.udp_port`` (its embedded TURN server over UDP); 0: none.
    livekit_turn_udp_port: int = 3478
    sentinel_addresses: tuple[str, ...] = (f"{LOCAL}:27479", f"{LOCAL}:27480", f"{LOCAL}:27481")
    sentinel_master: str = "lkchaos"
    redis_address_map: Mapping[str, str] = field(
        default_factory=lambda: {
            "redis-primary:6379": f"{LOCAL}:27379",
            "redis-replica:6379": f"{LOCAL}:27380",
        }
    )
    toxiproxy_url: str = f"http://{LOCAL}:28474"
    dns_server: str = f"{LOCAL}:27053"
    tls_address: str = f"{LOCAL}:7443"
    domain: str = "chaos.test"
    ca_file: str = ""
    compose_project: str = "lkchaos"
    voice_prober_url: str = f"http://{LOCAL}:28090"
    agent_name: str = "lkchaos-agent"
    prometheus_url: str = f"http://{LOCAL}:29090"
    alertmanager_url: str = f"http://{LOCAL}:29093"
    pushgateway_url: str = f"http://{LOCAL}:29091"
    receiver_url: str = f"http://{LOCAL}:28200"
    ingress_rtmp_url: str = f"rtmp://{LOCAL}:21935/x"
    ingress_whip_url: str = f"http://{LOCAL}:28080/w"
    runtime: str = "compose"
    runtime_label: str = ""
    roles: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(REFERENCE_ROLES))
    toxiproxy_links: Mapping[str, str] = field(
        default_factory=lambda: {"agent_livekit": "agent_livekit",
                                 "agent_speech_to_text": "agent_whisper",
                                 "agent_tool_server": "agent_mcp",
                                 "livekit_webhooks": "livekit_hooks"}  # fmt: skip
    )
    redis_primary_address: str = ""
    redis_replica_addresses: tuple[str, ...] = ()
    redis_password: str = field(default="", repr=False)
    redis_username: str = ""
    redis_db: int = 0
    sentinel_username: str = ""
    sentinel_password: str = field(default="", repr=False)
    redis_tls: bool = False
    redis_ca_file: str = ""
    tls_proxy_kind: str = "caddy"
    tls_names: tuple[str, ...] = ("lk.chaos.test", "turn.chaos.test", "whip.chaos.test")
    tls_reload: Mapping[str, Any] = field(default_factory=lambda: {"command": CADDY_RELOAD})
    resolver_may_fault: bool = True
    state_dir: str = ""
    #: The deployment's own folder for its runs when not the state folder (see ``run_dir``).
    target_dir: str = ""
    #: Why the target's API key or secret did not resolve (names the reference, not a value).
    keys_problem: str = field(default="", repr=False, compare=False)
    #: Why the target's Redis password did not resolve (names the reference, not a value).
    redis_password_problem: str = field(default="", repr=False, compare=False)
    #: Where the Redis password came from (``LKCHAOS_REDIS_PASSWORD``, the target's
    #: ``redis.direct.password_ref (env NAME)``...), for a refusal's message.
    redis_password_source: str = field(default="", repr=False, compare=False)
    #: The same two for the Sentinels' own password.
    sentinel_password_problem: str = field(default="", repr=False, compare=False)
    sentinel_password_source: str = field(default="", repr=False, compare=False)

    @classmethod
    def load(
        cls,
        configuration: Mapping[str, Any] | None = None,
        secrets: Mapping[str, Any] | None = None,
    ) -> Settings:
        """Build settings from Chaos Toolkit configuration/secrets, the environment, the
        target in use and the defaults (see the module docstring)."""
        conf = dict(configuration or {})
        env = os.environ
        values: dict[str, Any] = {}
        state_dir = default_state_dir()
        selection = selected_target(conf)
        target: dict[str, Any] = {}
        loaded = None
        if selection is not None:
            from lkchaos.target.layer import layer

            target, loaded = layer(selection, state_dir)
        from lkchaos.safety import ledger

        ledger.note_deployment(str(selection.path) if selection is not None else "")

        def pick(key: str, env_key: str) -> Any:
            if key in conf and conf[key] not in (None, ""):
                return conf[key]
            return env.get(env_key) or target.get(key)

        for key in _TEXT_KEYS:
            value = pick(key, ENV_KEYS[key])
            if value is not None:
                values[key] = str(value)
        # An empty prober URL is meaningful (run in process), an empty monitoring URL too
        # (none here), an empty agent name too (automatic dispatch): "" is not "unset" here.
        for key in EMPTY_IS_A_VALUE:
            if key in conf and conf[key] is not None:
                values[key] = str(conf[key])
            elif ENV_KEYS[key] in env:
                values[key] = env[ENV_KEYS[key]]
            elif key in target:
                values[key] = target[key]
        for key in ("livekit_node_urls", "sentinel_addresses"):
            value = pick(key, ENV_KEYS[key])
            if value is not None:
                values[key] = _split(value) if isinstance(value, str) else tuple(value)
        for key in ("runtime", "runtime_label", "roles", "toxiproxy_links",
                    "redis_primary_address", "redis_replica_addresses", "tls_proxy_kind",
                    "tls_names", "tls_reload", "resolver_may_fault"):  # fmt: skip
            if key in target:
                values[key] = target[key]
        for key in ("redis_ca_file", "redis_username", "sentinel_username"):
            value = pick(key, ENV_KEYS[key])
            if value is not None:
                values[key] = str(value)
        for key in ("redis_password", "sentinel_password"):
            if key in conf and conf[key] not in (None, ""):
                values[key], values[f"{key}_source"] = str(conf[key]), f"the configuration's {key}"
            elif env.get(ENV_KEYS[key]):
                values[key], values[f"{key}_source"] = env[ENV_KEYS[key]], ENV_KEYS[key]
        redis_db = pick("redis_db", ENV_KEYS["redis_db"])
        if redis_db is not None:
            values["redis_db"] = _whole("redis_db", redis_db, 0, 2**31 - 1)
        for key in ("livekit_rtc_tcp_port", "livekit_turn_udp_port"):
            port = pick(key, ENV_KEYS[key])
            if port is not None:
                values[key] = _whole(key, port, 0, 65535)
        redis_tls = pick("redis_tls", ENV_KEYS["redis_tls"])
        if redis_tls is not None:
            values["redis_tls"] = parse_flag("redis_tls", redis_tls)
        amap = pick("redis_address_map", ENV_KEYS["redis_address_map"])
        if amap is not None:
            values["redis_address_map"] = _parse_map(amap) if isinstance(amap, str) else dict(amap)
            for pair in values["redis_address_map"].items():  # refused now, not when used
                for address in pair:
                    split_host_port(str(address), None)

        lk_secrets = (secrets or {}).get("livekit", {}) if secrets else {}
        for key in ("api_key", "api_secret"):
            if lk_secrets.get(key):
                values[f"livekit_{key}"] = str(lk_secrets[key])

        redis_secrets = (secrets or {}).get("redis", {}) if secrets else {}
        for key, secret in (("redis_password", "password"),
                            ("sentinel_password", "sentinel_password")):  # fmt: skip
            if redis_secrets.get(secret):
                values[key] = str(redis_secrets[secret])
                values[f"{key}_source"] = f'the secret {{"redis": {{"{secret}"}}}}'
            if not values.get(key) and loaded is not None:
                from lkchaos.target.layer import redis_secret

                values[key], values[f"{key}_problem"], values[f"{key}_source"] = redis_secret(
                    loaded, state_dir, sentinel=key == "sentinel_password")
        values["state_dir"] = str(state_dir)
        run_dir = run_dir_for(state_dir, selection)
        if run_dir != state_dir:
            values["target_dir"] = str(run_dir)
        if not values.get("livekit_api_key") or not values.get("livekit_api_secret"):
            if loaded is not None:
                from lkchaos.target.layer import api_keys

                key, secret, problem = api_keys(loaded, state_dir)
                values["keys_problem"] = problem
            else:
                stack = _stack_keys(state_dir)
                key = stack.get("LIVEKIT_API_KEY", "")
                secret = stack.get("LIVEKIT_API_SECRET", "")
            values.setdefault("livekit_api_key", key)
            values.setdefault("livekit_api_secret", secret)
        if loaded is None:  # the built-in defaults: the reference stack's own CA
            values.setdefault("ca_file", str(state_dir / "certs" / "ca.crt"))
        settings = cls(**values)
        from lkchaos.prometheus import marks

        marks.note_pushgateway(settings.pushgateway_url)
        return settings

    @property
    def run_dir(self) -> str:
        """Where runs on this deployment keep their run lock, room-state snapshots and the
        originals of files a fault replaced (see :func:`run_dir_for`)."""
        return self.target_dir or self.state_dir

    @property
    def livekit_host(self) -> str:
        """The host callers reach LiveKit at (``lk.chaos.test`` of ``wss://lk.chaos.test``)."""
        from urllib.parse import urlsplit

        return urlsplit(self.livekit_url).hostname or ""

    def require_keys(self) -> tuple[str, str]:
        """The API key pair, or a ConfigError saying where to set it."""
        if not self.livekit_api_key or not self.livekit_api_secret:
            why = f" ({self.keys_problem})" if self.keys_problem else ""
            raise ConfigError(
                f"no LiveKit API key/secret{why}: set LIVEKIT_API_KEY and LIVEKIT_API_SECRET "
                "(or the experiment's secrets), correct the target file's api_key/api_secret, "
                "or start the reference stack with `lkchaos stack up`, which generates them"
            )
        return self.livekit_api_key, self.livekit_api_secret

    def map_redis_address(self, host: str, port: int) -> tuple[str, int]:
        """Translate an address Sentinel announces into one reachable from here (the map's
        keys and values are ``host:port``, an IPv6 host in brackets: ``[fd00::5]:6379``)."""
        wanted = (_host_key(host), port)
        for source, target in self.redis_address_map.items():
            shost, sport = split_host_port(source, None)
            if (_host_key(shost), sport) == wanted:
                return split_host_port(target, None)
        return host.strip("[]"), port

    @staticmethod
    def split_address(address: str, default_port: int) -> tuple[str, int]:
        """``host:port`` -> ``(host, port)``, the port ``default_port`` when none is given
        (see :func:`split_host_port`)."""
        return split_host_port(address, default_port)


class AddressError(ConfigError, ValueError):
    """An address that is not ``host:port`` (a ValueError too, for the target's schema)."""


def _ipv6(text: str) -> bool:
    try:
        ipaddress.IPv6Address(text.split("%", 1)[0])
    except ValueError:
        return False
    return True


def is_ip_address(host: str) -> bool:
    """Whether ``host`` is an IP address (v4, or v6 with or without brackets) rather than a
    name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _host_key(host: str) -> str:
    """A host as compared with another: an IP address in its one spelling, a name in lower
    case."""
    text = host.strip("[]")
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text.lower()


def _port(address: str, text: str) -> int:
    if not text.isdigit():
        raise AddressError(f"address {address!r} has a port that is not a number")
    if not 0 < int(text) <= 65535:
        raise AddressError(f"address {address!r}: port {int(text)} is not a port (1-65535)")
    return int(text)


def split_host_port(address: str, default_port: int | None) -> tuple[str, int]:
    """The one way lkchaos splits an address: ``host:port`` -> ``(host, port)``.

    An IPv6 host is written in brackets, ``[fd00::5]:6379`` (or ``[fd00::5]`` for the default
    port), and comes back without them, as sockets and clients want it. A bare IPv6 address
    is accepted only where it cannot be read two ways: ``::1`` or ``2001:db8:0:0:0:0:0:1``
    (no port), ``2001:db8:0:0:0:0:0:1:6379`` (the port after a full address); ``fd00::5:6379``
    could be either and is refused. Without a port, ``default_port`` (None: a port is
    required). Raises :class:`AddressError` saying what to write."""
    text = address.strip()
    if not text:
        raise AddressError("an empty address: write host:port")
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or not _ipv6(host):
            raise AddressError(f"address {address!r}: brackets hold an IPv6 address, as in "
                               "[fd00::5]:6379")  # fmt: skip
        if rest == "" and default_port is not None:
            return host, default_port
        if not rest.startswith(":"):
            raise AddressError(f"address {address!r}: write [IPv6]:port, as in [fd00::5]:6379")
        return host, _port(address, rest[1:])
    if text.count(":") > 1:  # a bare IPv6 address, with or without a port
        head, _, tail = text.rpartition(":")
        whole, split = _ipv6(text), _ipv6(head) and tail.isdigit()
        if whole and split:
            raise AddressError(
                f"address {address!r} is ambiguous: write [{head}]:{tail} for port {tail} of "
                f"{head}, or [{text}]" + (":PORT for that address" if default_port is None
                                           else f" for that address on port {default_port}"))
        if whole and default_port is not None:
            return text, default_port
        if split:
            return head, _port(address, tail)
        if whole:
            raise AddressError(f"address {address!r} is not a host:port address (no port): "
                               f"write [{text}]:PORT")
        raise AddressError(f"address {address!r} is not host:port (an IPv6 host goes in "
                           "brackets: [fd00::5]:6379)")  # fmt: skip
    host, sep, port = text.rpartition(":")
    if not sep:
        if default_port is None:
            raise AddressError(f"address {address!r} is not a host:port address (no port): "
                               f"write {text}:PORT")
        return text, default_port
    if not host:
        raise AddressError(f"address {address!r} has no host: write HOST{text}")
    return host, _port(address, port)


def join_host_port(host: str, port: int) -> str:
    """``host:port``, an IPv6 host in brackets (what :func:`split_host_port` reads back)."""
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"
