"""The target file's schema: the deployment under test, in the field's terms.

A target is a YAML mapping (every key is described, with an example, in docs/targets.md)::

    livekit:
      url: wss://lk.example.com              # what callers use
      nodes:                                 # one entry per LiveKit node
        - {name: node-1, url: http://10.0.0.11:7880, runtime: livekit}
      api_key: {env: LIVEKIT_API_KEY}        # by reference only
      api_secret: {file: /etc/lk/keys.env, key: LIVEKIT_API_SECRET}
    domain: example.com                      # optional: the URL's host minus its first label
    redis:
      direct: {primary: 10.0.0.21:6379, replicas: [], password_ref: {env: REDIS_PASSWORD},
               username: livekit, db: 0}           # username, db: optional
      # or sentinel: {addresses: [...], master: mymaster, address_map: {...},
      #               sentinel_username: ..., sentinel_password_ref: {...}}
    tls_proxy: {kind: nginx, address: 10.0.0.10:443, names: [lk.example.com],
                reload: {signal: SIGHUP}}
    resolver: {kind: dnsmasq, address: 10.0.0.53:53, may_fault: false}     # optional
    toxiproxy: {api_url: http://10.0.0.40:8474, links: {agent_livekit: lk}} # optional
    runtime: {docker: {by: name}}            # or compose: {project: NAME}
    roles: {agent_worker: voice-agent, redis_primary: redis, tls_proxy: nginx}
    voice: {prober_url: "", agent_name: my-agent}                            # optional
    monitoring: {prometheus_url: http://10.0.0.60:9090}                      # optional
    ingress: {rtmp_url: rtmp://10.0.0.70:1935/x}                             # optional

Secrets are never written in the file: ``{env: NAME}`` or ``{file: PATH, key: NAME}``; they
are resolved only when asked (:meth:`SecretRef.resolve`) and never kept in a model. Unknown
keys are refused. :mod:`lkchaos.target.load` adds the file and line to every problem.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from lkchaos.settings import AddressError, is_ip_address, split_host_port

#: The roles a component can play; ``roles`` maps each to the user's own runtime names.
ROLES: tuple[str, ...] = (
    "livekit_node", "redis_primary", "redis_replica", "sentinel", "agent_worker",
    "speech_to_text", "tool_server", "tls_proxy", "resolver", "toxiproxy", "voice_prober",
    "webhook_receiver", "prometheus", "alertmanager", "pushgateway", "metrics_exporter",
    "ingress",
)  # fmt: skip

#: Toxiproxy links by role: the connections of the agent worker to what it calls.
LinkRole = Literal["agent_livekit", "agent_speech_to_text", "agent_tool_server",
                   "livekit_webhooks"]

INLINE_SECRET = (
    "an inline secret is refused: reference it as {env: NAME} (an environment variable) or "
    "{file: PATH, key: NAME} (a secrets file); the value was not kept"
)
KUBERNETES = "runtime kubernetes is not supported yet; see docs/targets.md for how pods would map"

_SIGNAL = re.compile(r"^SIG[A-Z0-9]+$")
#: A runtime name: what Docker and Compose accept as a container or service name, and what
#: lkchaos's own argument checks accept (:func:`lkchaos.values.check_service_name`).
_RUNTIME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
RUNTIME_NAME_RULE = ("a runtime name is letters, digits, '_', '.' and '-', starting with a letter "
                     "or digit, at most 128 characters")  # fmt: skip


class _Strict(BaseModel):
    """Unknown keys refused; inputs never echoed in pydantic's own error text."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


def _address(value: str) -> str:
    """``host:port`` as :func:`lkchaos.settings.split_host_port` reads it (an IPv6 host in
    brackets); the port is required."""
    try:
        split_host_port(value, None)
    except AddressError as exc:
        raise ValueError(str(exc).removeprefix("address ")) from None
    return value


def _check_url(value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.hostname:
        raise ValueError(f"{value!r} is not a {' or '.join(schemes)} URL")
    try:
        port = parts.port
    except ValueError:  # beyond 65535, or not a number
        port = 0
    if port == 0:
        raise ValueError(f"{value!r}: its port is not a port (1-65535)")
    return value


def _runtime_name(value: str) -> str:
    if not _RUNTIME_NAME.fullmatch(value):
        shown = value if len(value) <= 40 else value[:40] + "..."
        raise ValueError(f"{shown!r} is not a runtime name: {RUNTIME_NAME_RULE}")
    return value


Name = Annotated[StrictStr, Field(min_length=1)]
#: A container's name in the runtime (a compose service, a container name or a label value).
RuntimeName = Annotated[StrictStr, AfterValidator(_runtime_name)]


class SecretRef(_Strict):
    """Where a secret is: ``{env: NAME}`` or ``{file: PATH, key: NAME}``.

    A file with a ``key`` is read as ``NAME=value`` lines (an env file), or as a mapping when
    it ends in ``.yaml``, ``.yml`` or ``.json``; without a ``key`` its whole content, stripped,
    is the secret (as Docker and Kubernetes mount secrets). A relative path is relative to
    the target file's folder; ``{state_dir}`` in a path is lkchaos's state folder.
    """

    env: Name | None = None
    file: Name | None = None
    key: Name | None = None

    @model_validator(mode="after")
    def _one_source(self) -> SecretRef:
        if (self.env is None) == (self.file is None):
            raise ValueError("a secret reference is {env: NAME} or {file: PATH, key: NAME}")
        if self.env is not None and self.key is not None:
            raise ValueError("`key` goes with `file`, not with `env`")
        return self

    def describe(self) -> str:
        """``env LIVEKIT_API_KEY`` or ``file /path (key NAME)``: the reference, never a value."""
        if self.env is not None:
            return f"env {self.env}"
        return f"file {self.file}" + (f" (key {self.key})" if self.key else "")


def _refuse_inline(value: Any) -> Any:
    if isinstance(value, str | int | float | bytes) and not isinstance(value, bool):
        raise ValueError(INLINE_SECRET)
    return value


Secret = Annotated[SecretRef, BeforeValidator(_refuse_inline)]


class Node(_Strict):
    """One LiveKit node: its name in experiments and reports, its HTTP URL, its runtime name."""

    name: Name
    url: StrictStr
    runtime: RuntimeName

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))


#: A port LiveKit may also leave off: 0-65535, 0 meaning "not enabled".
PortOrOff = Annotated[StrictInt, Field(ge=0, le=65535)]


class LiveKit(_Strict):
    """LiveKit's public URL, its nodes, and its API key pair by reference; the ports of its
    ICE/TCP fallback (``rtc_tcp_port``, LiveKit's ``rtc.tcp_port``; 0: off) and of its TURN
    server over UDP (``turn_udp_port``, LiveKit's ``turn.udp_port``; 0: none)."""

    url: StrictStr
    nodes: Annotated[list[Node], Field(min_length=1)]
    api_key: Secret
    api_secret: Secret
    rtc_tcp_port: PortOrOff = 7881
    turn_udp_port: PortOrOff = 3478

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("ws", "wss", "http", "https"))


class RedisTls(_Strict):
    """TLS to Redis: the CA that signs its certificate (the system's CAs when absent)."""

    ca_file: Name | None = None


#: LiveKit's ``redis.db``: the database number its data is in.
Database = Annotated[StrictInt, Field(ge=0)]


class Sentinel(_Strict):
    """Redis behind Sentinel: the Sentinels, the master's name, and how to reach what they
    announce (``address_map``: announced ``host:port`` -> ``host:port`` reachable from here).
    ``username``, ``password_ref`` and ``db`` are the data nodes' (LiveKit's ``redis.username``,
    ``redis.password``, ``redis.db``); ``sentinel_username`` and ``sentinel_password_ref`` the
    Sentinels' own (LiveKit's ``redis.sentinel_username``, ``redis.sentinel_password``)."""

    addresses: Annotated[list[StrictStr], Field(min_length=1)]
    master: Name
    address_map: dict[StrictStr, StrictStr] = Field(default_factory=dict)
    username: Name | None = None
    password_ref: Secret | None = None
    db: Database = 0
    sentinel_username: Name | None = None
    sentinel_password_ref: Secret | None = None
    tls: RedisTls | None = None

    @field_validator("addresses")
    @classmethod
    def _addresses(cls, value: list[str]) -> list[str]:
        return [_address(item) for item in value]

    @field_validator("address_map")
    @classmethod
    def _address_map(cls, value: dict[str, str]) -> dict[str, str]:
        return {_address(key): _address(item) for key, item in value.items()}


class Direct(_Strict):
    """Redis without Sentinel: the primary's address and its replicas', the ACL user, the
    password and the database (LiveKit's ``redis.username``, ``redis.password``, ``redis.db``)."""

    primary: StrictStr
    replicas: list[StrictStr] = Field(default_factory=list)
    username: Name | None = None
    password_ref: Secret | None = None
    db: Database = 0
    tls: RedisTls | None = None

    @field_validator("primary")
    @classmethod
    def _primary(cls, value: str) -> str:
        return _address(value)

    @field_validator("replicas")
    @classmethod
    def _replicas(cls, value: list[str]) -> list[str]:
        return [_address(item) for item in value]


class Redis(_Strict):
    """Exactly one of ``sentinel`` or ``direct``."""

    sentinel: Sentinel | None = None
    direct: Direct | None = None

    @model_validator(mode="after")
    def _one(self) -> Redis:
        if (self.sentinel is None) == (self.direct is None):
            raise ValueError("redis needs exactly one of `sentinel:` or `direct:`")
        return self


class Reload(_Strict):
    """How the TLS proxy reloads its certificates: exactly one of ``signal`` (sent to its
    process), ``command`` (run inside its container) or ``admin_api`` (a URL)."""

    signal: StrictStr | None = None
    command: Annotated[list[StrictStr], Field(min_length=1)] | None = None
    admin_api: StrictStr | None = None

    @field_validator("signal")
    @classmethod
    def _signal(cls, value: str | None) -> str | None:
        if value is not None and not _SIGNAL.match(value):
            raise ValueError(f"{value!r} is not a signal name such as SIGHUP")
        return value

    @field_validator("admin_api")
    @classmethod
    def _api(cls, value: str | None) -> str | None:
        return value if value is None else _check_url(value, ("http", "https"))

    @model_validator(mode="after")
    def _one(self) -> Reload:
        given = [v for v in (self.signal, self.command, self.admin_api) if v is not None]
        if len(given) != 1:
            raise ValueError("reload is one of {signal: SIGHUP}, {command: [...]}, "
                             "{admin_api: URL} or none")  # fmt: skip
        return self

    def describe(self) -> str:
        """``signal SIGHUP``, ``command caddy reload ...`` or ``admin API URL``."""
        if self.signal is not None:
            return f"signal {self.signal}"
        if self.command is not None:
            return "command " + " ".join(self.command)
        return f"admin API {self.admin_api}"


def _reload_none(value: Any) -> Any:
    return None if value == "none" else value


class TlsProxy(_Strict):
    """The TLS proxy in front of LiveKit: its kind, address, names and certificate reload.
    ``ca_file``: the CA that signs what it serves, for the TLS probes (``{state_dir}`` allowed;
    the system's CAs when absent)."""

    kind: Literal["caddy", "nginx", "traefik", "other"]
    address: StrictStr
    names: Annotated[list[Name], Field(min_length=1)]
    reload: Annotated[Reload | None, BeforeValidator(_reload_none)] = None
    ca_file: Name | None = None

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _address(value)


class Resolver(_Strict):
    """The deployment's own resolver; ``may_fault`` lets lkchaos change its answers."""

    kind: Literal["dnsmasq"]
    address: StrictStr
    may_fault: StrictBool = False

    @field_validator("address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _address(value)


class Toxiproxy(_Strict):
    """Toxiproxy's API and its proxies by link role (``agent_livekit: my_proxy``)."""

    api_url: StrictStr
    links: dict[LinkRole, Name] = Field(default_factory=dict)

    @field_validator("api_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_url(value, ("http", "https"))


class Compose(_Strict):
    """Containers of a Docker Compose project; runtime names are its service names."""

    project: Name


class Docker(_Strict):
    """Plain Docker containers, by container name or by the value of one label."""

    by: Literal["name", "label"]
    label: Name | None = None

    @model_validator(mode="after")
    def _label(self) -> Docker:
        if (self.by == "label") != (self.label is not None):
            raise ValueError("`label: KEY` is given exactly when `by: label`")
        return self


class Runtime(_Strict):
    """How containers are reached: exactly one of ``compose`` or ``docker``."""

    compose: Compose | None = None
    docker: Docker | None = None
    kubernetes: Any = None

    @field_validator("kubernetes")
    @classmethod
    def _refuse(cls, value: Any) -> Any:
        if value is not None:
            raise ValueError(KUBERNETES)
        return value

    @model_validator(mode="after")
    def _one(self) -> Runtime:
        if (self.compose is None) == (self.docker is None):
            raise ValueError("runtime needs exactly one of `compose:` or `docker:`")
        return self

    def describe(self) -> str:
        """``compose project lkchaos``, ``docker containers by name`` or ``... by label K``."""
        if self.compose is not None:
            return f"compose project {self.compose.project}"
        assert self.docker is not None
        if self.docker.by == "label":
            return f"docker containers by label {self.docker.label}"
        return "docker containers by name"


def _as_list(value: Any) -> Any:
    return [value] if isinstance(value, str) else value


RuntimeNames = Annotated[list[RuntimeName], BeforeValidator(_as_list)]


class Roles(_Strict):
    """Role -> the user's runtime name (a compose service, a container name or label value).
    ``livekit_node``, ``redis_replica``, ``sentinel`` and ``metrics_exporter`` take a list (or
    one name)."""

    livekit_node: RuntimeNames = Field(default_factory=list)
    redis_primary: RuntimeName | None = None
    redis_replica: RuntimeNames = Field(default_factory=list)
    sentinel: RuntimeNames = Field(default_factory=list)
    agent_worker: RuntimeName | None = None
    speech_to_text: RuntimeName | None = None
    tool_server: RuntimeName | None = None
    tls_proxy: RuntimeName | None = None
    resolver: RuntimeName | None = None
    toxiproxy: RuntimeName | None = None
    voice_prober: RuntimeName | None = None
    webhook_receiver: RuntimeName | None = None
    prometheus: RuntimeName | None = None
    alertmanager: RuntimeName | None = None
    pushgateway: RuntimeName | None = None
    metrics_exporter: RuntimeNames = Field(default_factory=list)
    ingress: RuntimeName | None = None

    def names(self) -> dict[str, list[str]]:
        """Every mapped role -> its runtime names (roles left out are absent)."""
        found: dict[str, list[str]] = {}
        for role in ROLES:
            value = getattr(self, role)
            names = list(value) if isinstance(value, list) else [value] if value else []
            if names:
                found[role] = names
        return found


class Voice(_Strict):
    """The voice round trip: the prober's URL (``""``: run it from this machine, in a prober
    lkchaos starts as a child process) and the agent name callers dispatch (``""``: none by
    name, the agent joins by LiveKit's automatic dispatch, as an agent worker started without
    an ``agent_name`` does; left out: ``lkchaos-agent``)."""

    prober_url: StrictStr = ""
    agent_name: StrictStr | None = None

    @field_validator("prober_url")
    @classmethod
    def _prober(cls, value: str) -> str:
        return value if value == "" else _check_url(value, ("http", "https"))


def _check_service_url(value: str, schemes: tuple[str, ...]) -> str:
    """A URL lkchaos may write into journals and logs: no user or password in it (an inline
    secret), no query or fragment (where tokens travel)."""
    _check_url(value, schemes)
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError(f"{INLINE_SECRET.split(':')[0]}: a user or password in a URL is one "
                         "(the URL is not repeated here); put the service behind a proxy that "
                         "authenticates lkchaos, or leave the credentials out")
    if parts.query or parts.fragment:
        raise ValueError("the URL carries a query or fragment: give the service's base URL "
                         "(tokens and keys do not belong in a target file)")
    return value


class Monitoring(_Strict):
    """Where the deployment's monitoring answers: Prometheus's HTTP API, Alertmanager's, a
    Pushgateway for lkchaos's fault marks, and a receiver that records LiveKit's webhooks and
    Alertmanager's notifications. Each is optional: a URL left out (or ``""``) means the
    deployment has none, and what needs it does not apply."""

    prometheus_url: StrictStr = ""
    alertmanager_url: StrictStr = ""
    pushgateway_url: StrictStr = ""
    receiver_url: StrictStr = ""

    @field_validator("prometheus_url", "alertmanager_url", "pushgateway_url", "receiver_url")
    @classmethod
    def _url(cls, value: str) -> str:
        return value if value == "" else _check_service_url(value, ("http", "https"))


class Ingress(_Strict):
    """LiveKit Ingress as lkchaos's publishers reach it: the RTMP and WHIP URLs to push to.
    A URL left out (``""``) means the one LiveKit's CreateIngress returns."""

    rtmp_url: StrictStr = ""
    whip_url: StrictStr = ""

    @field_validator("rtmp_url")
    @classmethod
    def _rtmp(cls, value: str) -> str:
        if value == "":
            return value
        _check_service_url(value, ("rtmp", "rtmps"))
        if len([part for part in urlsplit(value).path.split("/") if part]) > 1:
            raise ValueError("give the RTMP base URL (rtmp://HOST:PORT/APP), without a stream "
                             "key: lkchaos appends the key of the ingress it creates")
        return value

    @field_validator("whip_url")
    @classmethod
    def _whip(cls, value: str) -> str:
        return value if value == "" else _check_service_url(value, ("http", "https"))


class Target(_Strict):
    """A whole target file. ``domain`` defaults to LiveKit's URL host minus its first label
    (``wss://lk.example.com`` -> ``example.com``); ``roles.livekit_node`` defaults to the
    nodes' runtime names."""

    livekit: LiveKit
    domain: Name | None = None
    redis: Redis
    tls_proxy: TlsProxy
    resolver: Resolver | None = None
    toxiproxy: Toxiproxy | None = None
    runtime: Runtime
    roles: Roles = Field(default_factory=Roles)
    voice: Voice | None = None
    monitoring: Monitoring | None = None
    ingress: Ingress | None = None

    @property
    def test_domain(self) -> str:
        """The domain under test: ``domain``, else the LiveKit URL's host minus a label; where
        LiveKit's URL is an IP address (nothing to take a label off), the first TLS name's."""
        if self.domain:
            return self.domain
        host = urlsplit(self.livekit.url).hostname or ""
        if is_ip_address(host):
            host = self.tls_proxy.names[0] if self.tls_proxy.names else ""
        return host.split(".", 1)[1] if "." in host else host

    @property
    def livekit_nodes(self) -> list[str]:
        """The runtime names of the LiveKit nodes (``roles.livekit_node`` or the nodes')."""
        return list(self.roles.livekit_node) or [node.runtime for node in self.livekit.nodes]

    def role_names(self) -> dict[str, list[str]]:
        """Every role this target maps -> runtime names, LiveKit nodes included."""
        found = self.roles.names()
        found["livekit_node"] = self.livekit_nodes
        return found

    def secret_refs(self) -> dict[str, SecretRef]:
        """Every secret reference by its dotted key (``livekit.api_key``...)."""
        refs = {"livekit.api_key": self.livekit.api_key,
                "livekit.api_secret": self.livekit.api_secret}  # fmt: skip
        for mode in ("sentinel", "direct"):
            found = getattr(self.redis, mode)
            for key in ("password_ref", "sentinel_password_ref"):
                ref = getattr(found, key, None)
                if ref is not None:
                    refs[f"redis.{mode}.{key}"] = ref
        return refs


def field_names(model: type[BaseModel]) -> list[str]:
    """The keys a mapping of this model accepts."""
    return list(model.model_fields)
