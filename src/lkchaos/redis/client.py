"""The one way lkchaos reaches Redis: direct or through Sentinel, with AUTH, TLS and short
explicit timeouts.

- **Mode**: through Sentinel when :attr:`Settings.sentinel_addresses` is set; otherwise direct,
  at :attr:`Settings.redis_primary_address` (and :attr:`Settings.redis_replica_addresses`).
- **AUTH**: :attr:`Settings.redis_password`, sent to the data nodes and to the Sentinels alike
  (the target file has one ``password_ref`` for both, as a deployment whose Sentinels share the
  data nodes' password has). A Sentinel that has no password configured accepts the
  connection all the same (Redis answers that no password is set, and the client goes on).
- **TLS**: :attr:`Settings.redis_tls`, to the data nodes and the Sentinels alike; the server's
  certificate must be signed by :attr:`Settings.redis_ca_file` (the system's CAs when empty)
  and name the host connected to.
- **Timeouts**: every connect and read is bounded by ``timeout`` (2 s by default) and made
  once (no retries), so a call never waits longer than its timeout says.

Sentinel announces addresses as the deployment sees them (in the reference stack, service names
such as ``redis-primary:6379``); :meth:`Settings.map_redis_address` turns them into addresses
reachable from where lkchaos runs. A refused password raises :class:`RedisAuthError`, a
certificate that does not verify :class:`RedisTlsError` (both
:class:`~lkchaos.errors.ConfigError`), saying which setting to correct.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from lkchaos.errors import ConfigError, StackError
from lkchaos.settings import Settings

TIMEOUT = 2.0
REDIS_PORT = 6379
SENTINEL_PORT = 26379
#: Where a Redis password can be set, for error messages.
PASSWORD_PLACES = ("the target's redis password_ref, LKCHAOS_REDIS_PASSWORD, the configuration's "
                   "redis_password or the secret {\"redis\": {\"password\"}}")  # fmt: skip


class RedisAuthError(ConfigError):
    """Redis or a Sentinel refused the password (or wanted one and got none)."""


class RedisTlsError(ConfigError):
    """Redis's or a Sentinel's certificate could not be verified."""


@dataclass(frozen=True)
class Access:
    """How to authenticate and encrypt: the password, whether to use TLS, and its CA file."""

    password: str = field(default="", repr=False)
    tls: bool = False
    ca_file: str = ""
    #: Why the target's password reference did not resolve ("" when it did, or there is none).
    password_problem: str = field(default="", compare=False)

    @classmethod
    def of(cls, settings: Settings) -> Access:
        return cls(settings.redis_password, settings.redis_tls, settings.redis_ca_file,
                   settings.redis_password_problem)  # fmt: skip


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
        password=access.password or None,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode,
        retry=Retry(NoBackoff(), 0),
        **options,
    )


def auth_error(exc: redis.AuthenticationError, where: str, access: Access) -> RedisAuthError:
    """What to correct when ``where`` (``Redis at host:port``) refused AUTH."""
    if access.password_problem:
        return RedisAuthError(
            f"{where} refused the connection ({exc}): no Redis password was sent because "
            f"the target's password reference did not resolve: {access.password_problem}. "
            "Correct that reference (or set LKCHAOS_REDIS_PASSWORD)"
        )
    if not access.password:
        return RedisAuthError(
            f"{where} wants a password ({exc}) and none is set: set {PASSWORD_PLACES}"
        )
    return RedisAuthError(
        f"{where} refused the password ({exc}): correct the one that gives it, the first "
        "set of: the secret {\"redis\": {\"password\"}}, the configuration's redis_password, "
        "LKCHAOS_REDIS_PASSWORD, the target's redis password_ref"
    )


def tls_error(exc: redis.ConnectionError, where: str, access: Access) -> RedisTlsError:
    """What to correct when ``where``'s certificate did not verify."""
    signer = f"the CA in {access.ca_file}" if access.ca_file else "the system's CAs"
    return RedisTlsError(
        f"{where}: TLS failed ({exc}). Its certificate must be signed by {signer} and name the "
        "host connected to: set the target's redis tls.ca_file (LKCHAOS_REDIS_CA_FILE) to the "
        "CA that signs it, and reach Redis by a name its certificate holds (for Sentinel, "
        "through address_map)"
    )


def _ping(client: redis.Redis, where: str, access: Access) -> None:
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        client.close()
        raise auth_error(exc, where, access) from exc
    except redis.ConnectionError as exc:
        client.close()
        if access.tls and "certificate" in str(exc).lower():
            raise tls_error(exc, where, access) from exc
        raise
    except redis.RedisError:
        client.close()
        raise


def open_node(host: str, port: int, access: Access, timeout: float = TIMEOUT,
              decode: bool = False) -> redis.Redis:  # fmt: skip
    """A client for one data node, connected and AUTHenticated now (a refused password is a
    :class:`RedisAuthError`; an unreachable node a ``redis.RedisError``)."""
    client = connect(host, port, access, timeout, decode)
    _ping(client, f"Redis at {host}:{port}", access)
    return client


@contextmanager
def sentinel(address: str, access: Access, timeout: float = TIMEOUT) -> Iterator[redis.Redis]:
    """A connected client for one Sentinel (``host:port``), closed when the block ends."""
    host, port = Settings.split_address(address, SENTINEL_PORT)
    client = connect(host, port, access, timeout)
    _ping(client, f"Sentinel at {address}", access)
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


@dataclass(frozen=True)
class MasterInfo:
    """What one Sentinel says about the monitored master."""

    sentinel: str
    host: str
    port: int
    num_slaves: int
    num_other_sentinels: int
    flags: str


def ask_sentinels(settings: Settings, timeout: float = TIMEOUT) -> list[MasterInfo]:
    """Ask every reachable Sentinel about the master; unreachable ones are left out. When none
    answers and one refused the password, that is raised (:class:`RedisAuthError`)."""
    access = Access.of(settings)
    answers: list[MasterInfo] = []
    refused: RedisAuthError | None = None
    for address in settings.sentinel_addresses:
        try:
            with sentinel(address, access, timeout) as client:
                info: dict[str, Any] = client.sentinel_master(settings.sentinel_master)  # type: ignore[assignment]
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
                flags=str(info.get("flags", "")),
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
    or given directly."""
    host, port = settings.map_redis_address(*master_address(settings, timeout))
    return open_node(host, port, Access.of(settings), timeout, decode)


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
