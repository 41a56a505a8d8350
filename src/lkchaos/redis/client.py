"""The one way lkchaos reaches Redis: direct or through Sentinel, with AUTH, TLS and short
explicit timeouts.

- **Mode**: through Sentinel when :attr:`Settings.sentinel_addresses` is set; otherwise direct,
  at :attr:`Settings.redis_primary_address` (and :attr:`Settings.redis_replica_addresses`).
- **AUTH**: the data nodes get :attr:`Settings.redis_username` (an ACL user; none: the
  default user) and :attr:`Settings.redis_password`. The Sentinels get their own
  (:attr:`Settings.sentinel_username`, :attr:`Settings.sentinel_password`, as LiveKit's
  ``redis.sentinel_username`` / ``sentinel_password``); when neither is set, they get the data
  nodes' password alone, as a deployment whose Sentinels share it has. A Sentinel that has no
  password configured accepts the connection all the same (Redis answers that no password is
  set, and the client goes on).
- **Database**: :attr:`Settings.redis_db` (LiveKit's ``redis.db``) on every connection to a
  data node; a Sentinel has no database.
- **TLS**: :attr:`Settings.redis_tls`, to the data nodes and the Sentinels alike; the server's
  certificate must be signed by :attr:`Settings.redis_ca_file` (the system's CAs when empty)
  and name the host connected to.
- **Timeouts**: every connect and read is bounded by ``timeout`` (2 s by default) and made
  once (no retries), so a call never waits longer than its timeout says.

Sentinel announces addresses as the deployment sees them (in the reference stack, service names
such as ``redis-primary:6379``); :meth:`Settings.map_redis_address` turns them into addresses
reachable from where lkchaos runs. A refused password raises :class:`RedisAuthError`, a
certificate that does not verify :class:`RedisTlsError`, TLS to a plain server or plain Redis
to a TLS-only one :class:`RedisTlsMismatch` (all :class:`~lkchaos.errors.ConfigError`),
saying which setting to correct.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings
from lkchaos.tls import sockets

TIMEOUT = 2.0
REDIS_PORT = 6379
SENTINEL_PORT = 26379
#: Where a Redis password can be set, for error messages.
PASSWORD_PLACES = ("the target's redis password_ref, LKCHAOS_REDIS_PASSWORD, the configuration's "
                   "redis_password or the secret {\"redis\": {\"password\"}}")  # fmt: skip
#: Where the Sentinels' own password can be set.
SENTINEL_PASSWORD_PLACES = ("the target's redis.sentinel.sentinel_password_ref, "
                            "LKCHAOS_SENTINEL_PASSWORD, the configuration's sentinel_password or "
                            "the secret {\"redis\": {\"sentinel_password\"}}")  # fmt: skip
#: Where the Redis ACL user can be set.
USER_PLACES = ("the user name: the target's redis username, LKCHAOS_REDIS_USERNAME or the "
               "configuration's redis_username")  # fmt: skip
SENTINEL_USER_PLACES = ("the Sentinels' user name: the target's redis.sentinel.sentinel_username, "
                        "LKCHAOS_SENTINEL_USERNAME or the configuration's sentinel_username")


class RedisAuthError(ConfigError):
    """Redis or a Sentinel refused the password (or wanted one and got none)."""


class RedisClusterUnsupported(ConfigError):
    """The Redis lkchaos was pointed at runs in cluster mode (LiveKit's
    ``redis.cluster_addresses``), which lkchaos's Redis activities and probes do not read."""


class RedisTlsError(ConfigError):
    """Redis's or a Sentinel's certificate could not be verified."""


class RedisTlsMismatch(RedisTlsError):
    """TLS to a server that speaks plain Redis, or plain Redis to one that wants TLS."""


#: What a TLS handshake with a plain server ends in: OpenSSL's record errors or an EOF, or
#: (Redis 7 waits for a newline that a ClientHello never sends) the handshake's timeout.
_TLS_TO_PLAIN = ("wrong version number", "unexpected eof", "eof occurred in violation",
                 "record layer failure", "packet length too long", "http request")
_HANDSHAKE_TIMEOUT = "handshake operation timed out"
#: What plain commands to a TLS-only server end in: it drops the connection at once.
_PLAIN_TO_TLS = ("connection reset", "connection closed by server", "broken pipe",
                 "errno 104", "errno 32", "(104,", "(32,")


@dataclass(frozen=True)
class Access:
    """How to reach a data node: the password, whether to use TLS and its CA file, the ACL
    user and the database; and the Sentinels' own credentials (see :meth:`sentinels`)."""

    password: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    #: Why the target's password reference did not resolve ("" when it did, or there is none).
    password_problem: str = field(default="", compare=False)
    username: str = ""
    db: int = 0
    #: Where the password came from (``LKCHAOS_REDIS_PASSWORD``...; "" when not known).
    password_source: str = field(default="", compare=False)
    sentinel_username: str = ""
    sentinel_password: str = field(default="", repr=False)
    sentinel_password_problem: str = field(default="", compare=False)
    sentinel_password_source: str = field(default="", compare=False)
    #: The access to the Sentinels (:meth:`sentinels`): ``"own"`` with their own credentials,
    #: ``"shared"`` with the data nodes' password; ``""`` to a data node. For messages.
    for_sentinels: str = ""

    @classmethod
    def of(cls, settings: Settings) -> Access:
        return cls(settings.redis_password, settings.redis_tls, settings.redis_ca_file,
                   settings.redis_password_problem, settings.redis_username, settings.redis_db,
                   settings.redis_password_source, settings.sentinel_username,
                   settings.sentinel_password, settings.sentinel_password_problem,
                   settings.sentinel_password_source)  # fmt: skip

    def sentinels(self) -> Access:
        """The access to the Sentinels: their own user and password when either is set, else
        the data nodes' password alone (no user); never a database."""
        if self.for_sentinels:
            return self
        own = self.sentinel_username or self.sentinel_password or self.sentinel_password_problem
        if own:
            return Access(self.sentinel_password, self.tls, self.ca_file,
                          self.sentinel_password_problem, self.sentinel_username, 0,
                          self.sentinel_password_source, for_sentinels="own")  # fmt: skip
        return Access(self.password, self.tls, self.ca_file, self.password_problem, "", 0,
                      self.password_source, for_sentinels="shared")  # fmt: skip

    def user(self) -> str:
        """``user 'livekit'`` or ``the default user``."""
        return f"user {self.username!r}" if self.username else "the default user"


def connect(host: str, port: int, access: Access | None = None, timeout: float = TIMEOUT,
            decode: bool = True) -> redis.Redis:  # fmt: skip
    """A client with connect and read timeouts, AUTH and TLS as ``access`` says, no retries.

    ``decode=False`` for LiveKit's own keys: their values are protobuf bytes, not text. The
    connection is made by the first command (see :func:`open_node` to make it at once)."""
    access = access or Access()
    options: dict[str, Any] = {}
    if access.tls:
        options = {"ssl": True, "ssl_cert_reqs": "required", "ssl_check_hostname": True,
                   "ssl_ca_certs": access.ca_file or None}  # fmt: skip
    return redis.Redis(
        host=host,
        port=port,
        username=access.username or None,
        password=access.password or None,
        db=access.db,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


def connect_unix(path: str, timeout: float = TIMEOUT, decode: bool = True) -> redis.Redis:
    """A client of a server lkchaos started itself on the Unix socket ``path`` (no AUTH, no
    TLS), with connect and read timeouts and no retries."""
    return redis.Redis(
        unix_socket_path=path,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode,
        retry=Retry(NoBackoff(), 0),
    )


def auth_error(exc: redis.AuthenticationError, where: str, access: Access) -> RedisAuthError:
    """What to correct when ``where`` (``Redis at host:port``) refused AUTH: names the user
    sent (or the default user) and where the password came from, and which may be wrong."""
    if access.for_sentinels == "own":
        places, env, key = (SENTINEL_PASSWORD_PLACES, "LKCHAOS_SENTINEL_PASSWORD",
                            "sentinel_password_ref")  # fmt: skip
    else:
        places, env, key = PASSWORD_PLACES, "LKCHAOS_REDIS_PASSWORD", "password_ref"
    user_places = SENTINEL_USER_PLACES if access.for_sentinels else USER_PLACES
    if access.password_problem:
        return RedisAuthError(
            f"{where} refused the connection ({exc}): no password was sent for "
            f"{access.user()} because the target's {key} did not resolve: "
            f"{access.password_problem}. Correct that reference (or set {env})"
        )
    if not access.password:
        user = ("" if not access.username else f" for {access.user()}")
        return RedisAuthError(
            f"{where} wants a password{user} ({exc}) and none is set: set {places}"
            + ("" if access.username else
               f"; if it wants an ACL user (`user default off`), set {user_places} too")
        )
    source = access.password_source or f"the first set of: {places}"
    if access.username:
        return RedisAuthError(
            f"{where} refused {access.user()} with the password from {source} ({exc}): "
            f"either the user name (set by {user_places}) or the password is wrong, or the "
            "user is disabled (`user ... on` in Redis's ACL); correct the one that is"
        )
    return RedisAuthError(
        f"{where} refused the default user (no user name set) with the password from "
        f"{source} ({exc}): either that password is wrong, or the server wants an ACL user "
        f"(`user default off`; LiveKit's redis.username): correct the password, or set "
        f"{user_places}" + (
            "; a Sentinel is sent the data nodes' password unless it has its own: set "
            f"{SENTINEL_PASSWORD_PLACES}" if access.for_sentinels == "shared" else "")
    )


def tls_error(exc: redis.RedisError, where: str, access: Access) -> RedisTlsError:
    """What to correct when ``where``'s certificate did not verify."""
    signer = f"the CA in {access.ca_file}" if access.ca_file else "the system's CAs"
    return RedisTlsError(
        f"{where}: TLS failed ({exc}). Its certificate must be signed by {signer} and name the "
        "host connected to: set the target's redis tls.ca_file (LKCHAOS_REDIS_CA_FILE) to the "
        "CA that signs it, and reach Redis by a name its certificate holds (for Sentinel, "
        "through address_map)"
    )


def _answers_plain(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` answers a plain ``PING`` as Redis does (``+PONG``, or an error
    such as ``-NOAUTH``)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64)[:1] in (b"+", b"-")
    except OSError:
        return False


def _answers_tls(host: str, port: int, timeout: float) -> bool:
    """Whether ``host:port`` completes a TLS handshake (its certificate is not checked here:
    only whether it speaks TLS at all)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock, \
                sockets.wrap(context, sock, server_hostname=host):  # fmt: skip
            return True
    except (OSError, ssl.SSLError):
        return False


def tls_mismatch(exc: redis.RedisError, where: str, host: str, port: int, access: Access,
                 timeout: float) -> RedisTlsMismatch | None:  # fmt: skip
    """A :class:`RedisTlsMismatch` saying what to set when ``exc`` is what TLS to a plain
    server, or plain commands to a TLS one, end in; None otherwise. The server is asked
    again the other way to be sure; a handshake that only timed out is claimed only then."""
    text = " ".join(str(e) for e in (exc, exc.__cause__, exc.__context__) if e).lower()
    address = f"{host}:{port}"
    if access.tls:
        signal = any(s in text for s in _TLS_TO_PLAIN)
        if not signal and _HANDSHAKE_TIMEOUT not in text:
            return None
        plain = _answers_plain(host, port, timeout)
        if not plain and not signal:
            return None
        seen = "it answers plain Redis" if plain else "its answer was not TLS"
        return RedisTlsMismatch(
            f"{where}: the server at {address} does not speak TLS: set tls off ({seen}; the "
            f"TLS handshake failed: {exc}). Remove tls from the target's redis section (or "
            "set LKCHAOS_REDIS_TLS=false), or give the address of the server's TLS port"
        )
    if isinstance(exc, redis.TimeoutError) or not any(s in text for s in _PLAIN_TO_TLS):
        return None
    sure = _answers_tls(host, port, timeout)
    seen = "it completed a TLS handshake" if sure else "it closed the connection at once"
    return RedisTlsMismatch(
        f"{where}: the server at {address} {'requires' if sure else 'may require'} TLS: set "
        f"tls: {{}} ({seen}; plain Redis failed: {exc}). Add tls: {{}} to the target's redis "
        "section (tls: {ca_file: ...} for a private CA; or LKCHAOS_REDIS_TLS=true)"
    )


def _ping(client: redis.Redis, where: str, access: Access, timeout: float = TIMEOUT) -> None:
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        raise auth_error(exc, where, access) from exc
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        client.close()
        if access.tls and "certificate" in str(exc).lower():
            raise tls_error(exc, where, access) from exc
        kwargs = client.connection_pool.connection_kwargs
        mismatch = tls_mismatch(exc, where, str(kwargs["host"]), int(kwargs["port"]), access,
                                timeout)  # fmt: skip
        if mismatch is not None:
            raise mismatch from exc
        raise
    except redis.RedisError:
        client.close()
        raise


def open_node(host: str, port: int, access: Access, timeout: float = TIMEOUT,
              decode: bool = False) -> redis.Redis:  # fmt: skip
    """A client for one data node, connected and AUTHenticated now (a refused password is a
    :class:`RedisAuthError`; an unreachable node a ``redis.RedisError``)."""
    client = connect(host, port, access, timeout, decode)
    _ping(client, f"Redis at {host}:{port}", access, timeout)
    return client


@contextmanager
def sentinel(address: str, access: Access, timeout: float = TIMEOUT) -> Iterator[redis.Redis]:
    """A connected client for one Sentinel (``host:port``), closed when the block ends."""
    host, port = Settings.split_address(address, SENTINEL_PORT)
    access = access.sentinels()
    client = connect(host, port, access, timeout)
    _ping(client, f"Sentinel at {address}", access, timeout)
    try:
        yield client
    finally:
        client.close()


def is_direct(settings: Settings) -> bool:
    """Whether Redis is reached without Sentinel; a ConfigError when neither is configured."""
    if settings.sentinel_addresses:
        return False
    if settings.redis_primary_address:
        return True
    raise ConfigError("no Redis is configured: the target needs redis.sentinel (addresses) or "
                      "redis.direct (primary); or set LKCHAOS_SENTINELS")  # fmt: skip


#: The flags Sentinel gives a replica or another Sentinel it does not see up.
DOWN_FLAGS = ("s_down", "o_down", "disconnected")


def _flags(value: Any) -> tuple[str, ...]:
    """Sentinel's ``flags`` as a tuple: a comma-separated string (RESP2) or a set (RESP3)."""
    items = value.split(",") if isinstance(value, str) else sorted(str(v) for v in value or ())
    return tuple(f for f in items if f)


@dataclass(frozen=True)
class NodeState:
    """How one Sentinel sees a replica of the master or another Sentinel: the address as
    announced (``host:port``), its flags, and why it does not count as up (empty: it does)."""

    address: str
    flags: tuple[str, ...]
    problems: tuple[str, ...] = ()

    @property
    def up(self) -> bool:
        return not self.problems

    def described(self) -> str:
        """``172.18.0.5:6379 s_down,disconnected``: the address and its problems."""
        return " ".join([self.address, *self.problems])


def replica_state(info: dict[str, Any]) -> NodeState:
    """One entry of ``SENTINEL REPLICAS``: up and in sync only when Sentinel flags it neither
    down nor disconnected, it reports the replica role and its link to the master is ``ok``
    (Sentinel keeps a stopped replica's last ``INFO``, so the flags are read first)."""
    flags = _flags(info.get("flags", ""))
    problems = []
    down = [f for f in flags if f in DOWN_FLAGS]
    if down:
        problems.append(",".join(down))
    role = str(info.get("role-reported", "slave"))
    if role != "slave":
        problems.append(f"reports role {role}")
    link = str(info.get("master-link-status", ""))
    if link != "ok":
        since = int(info.get("master-link-down-time", 0) or 0) // 1000
        problems.append(f"master link {link or 'unknown'}"
                        + (f" (down {since} s)" if since else ""))  # fmt: skip
    address = f"{info.get('ip', '?')}:{info.get('port', '?')}"
    return NodeState(address, flags, tuple(problems))


def sentinel_state(info: dict[str, Any]) -> NodeState:
    """One entry of ``SENTINEL SENTINELS``: up unless flagged down or disconnected."""
    flags = _flags(info.get("flags", ""))
    down = [f for f in flags if f in DOWN_FLAGS]
    address = f"{info.get('ip', '?')}:{info.get('port', '?')}"
    return NodeState(address, flags, (",".join(down),) if down else ())


@dataclass(frozen=True)
class MasterInfo:
    """What one Sentinel says about the monitored master.

    ``num_slaves`` and ``num_other_sentinels`` count every replica and Sentinel it knows of,
    up or down: count the ``up`` ones of ``replicas`` and ``peers`` instead. Those two are
    read only when :func:`ask_sentinels` is asked for ``views``, and are None otherwise or
    when the Sentinel refused the command (``view_problem`` says why)."""

    sentinel: str
    host: str
    port: int
    num_slaves: int
    num_other_sentinels: int
    flags: str
    replicas: tuple[NodeState, ...] | None = None
    peers: tuple[NodeState, ...] | None = None
    view_problem: str = ""


def ask_sentinels(settings: Settings, timeout: float = TIMEOUT,
                  views: bool = False) -> list[MasterInfo]:  # fmt: skip
    """Ask every reachable Sentinel about the master; unreachable ones are left out. With
    ``views``, also ``SENTINEL REPLICAS`` and ``SENTINEL SENTINELS`` on the same connection
    (each call bounded by ``timeout``). When none answers and one refused the password, that
    is raised (:class:`RedisAuthError`)."""
    access = Access.of(settings)
    answers: list[MasterInfo] = []
    refused: RedisAuthError | None = None
    for address in settings.sentinel_addresses:
        replicas: tuple[NodeState, ...] | None = None
        peers: tuple[NodeState, ...] | None = None
        problem = ""
        try:
            with sentinel(address, access, timeout) as client:
                info: dict[str, Any] = client.sentinel_master(settings.sentinel_master)  # type: ignore[assignment]
                if views:
                    try:
                        listed: list[dict[str, Any]] = client.sentinel_slaves(
                            settings.sentinel_master)
                        others: list[dict[str, Any]] = client.sentinel_sentinels(  # type: ignore[assignment]
                            settings.sentinel_master)
                        replicas = tuple(replica_state(r) for r in listed)
                        peers = tuple(sentinel_state(s) for s in others)
                    except redis.ResponseError as exc:
                        problem = str(exc)
        except RedisAuthError as exc:
            refused = exc
            continue
        except redis.RedisError:
            continue
        answers.append(
            MasterInfo(
                sentinel=address,
                host=str(info["ip"]),
                port=int(info["port"]),
                num_slaves=int(info.get("num-slaves", 0)),
                num_other_sentinels=int(info.get("num-other-sentinels", 0)),
                flags=",".join(_flags(info.get("flags", ""))),
                replicas=replicas,
                peers=peers,
                view_problem=problem,
            )
        )
    if not answers and refused is not None:
        raise refused
    return answers


def master_address(settings: Settings, timeout: float = TIMEOUT) -> tuple[str, int]:
    """The primary's address: as the first Sentinel that answers announces it, or the direct
    primary's address (then already reachable from here)."""
    if is_direct(settings):
        return Settings.split_address(settings.redis_primary_address, REDIS_PORT)
    answers = ask_sentinels(settings, timeout)
    if not answers:
        raise StackError(
            f"no Sentinel answered at {', '.join(settings.sentinel_addresses)} about master "
            f"{settings.sentinel_master!r}: is Redis Sentinel up and the master name right?"
        )
    return answers[0].host, answers[0].port


def primary(settings: Settings, timeout: float = TIMEOUT, decode: bool = False) -> redis.Redis:
    """A connected client for the current primary (bytes by default), found through Sentinel
    or given directly. A direct node in cluster mode is refused
    (:class:`RedisClusterUnsupported`): LiveKit's keys are spread over the cluster's nodes,
    and one node's view would be taken for the whole."""
    host, port = settings.map_redis_address(*master_address(settings, timeout))
    client = open_node(host, port, Access.of(settings), timeout, decode)
    if is_direct(settings):
        refuse_cluster(client, f"{host}:{port}")
    return client


def refuse_cluster(client: redis.Redis, where: str) -> None:
    """Raise :class:`RedisClusterUnsupported` (closing ``client``) when the node runs in
    cluster mode; a node that will not say (``INFO`` refused to an ACL user, a managed
    Redis) is taken as it is."""
    try:
        enabled = int(client.info("cluster").get("cluster_enabled", 0) or 0)
    except (redis.ResponseError, ValueError, TypeError):
        return
    if enabled:
        client.close()
        raise RedisClusterUnsupported(
            f"Redis at {where} runs in cluster mode (LiveKit's redis.cluster_addresses): "
            "lkchaos reads LiveKit's room state and faults Redis through one primary (direct "
            "or found through Sentinel) and does not support Redis Cluster; one node's keys "
            "would be taken for the whole deployment's. Leave the Redis experiments and "
            "checks out for this deployment (lkchaos check lists what needs Redis)"
        )


def node(settings: Settings, host: str, port: int, timeout: float = TIMEOUT,
         decode: bool = True) -> redis.Redis:  # fmt: skip
    """A connected client for the data node at an announced address (mapped to one reachable
    from here)."""
    mhost, mport = settings.map_redis_address(host, port)
    return open_node(mhost, mport, Access.of(settings), timeout, decode)


def sentinel_replicas(settings: Settings, timeout: float = TIMEOUT) -> list[dict[str, Any]]:
    """``SENTINEL REPLICAS`` of the first Sentinel that answers, down replicas included (each
    has ``ip``, ``port`` and ``flags``); ``[]`` when none answers."""
    access = Access.of(settings)
    refused: RedisAuthError | None = None
    for address in settings.sentinel_addresses:
        try:
            with sentinel(address, access, timeout) as client:
                found: list[dict[str, Any]] = client.sentinel_slaves(settings.sentinel_master)
        except RedisAuthError as exc:
            refused = exc
            continue
        except redis.RedisError:
            continue
        return found
    if refused is not None:
        raise refused
    return []


def replicas(settings: Settings, timeout: float = TIMEOUT) -> list[tuple[str, int]]:
    """The replicas' addresses: those Sentinel announces and does not see down, or the direct
    replicas' addresses."""
    if is_direct(settings):
        return [Settings.split_address(a, REDIS_PORT) for a in settings.redis_replica_addresses]
    return [(str(r["ip"]), int(r["port"])) for r in sentinel_replicas(settings, timeout)
            if "s_down" not in str(r.get("flags", ""))]  # fmt: skip
