"""The one way lkchaos reaches Redis: through Sentinel, with short explicit timeouts.

Sentinel announces addresses as the deployment sees them (in the reference stack, service
names such as ``redis-primary:6379``); :meth:`Settings.map_redis_address` turns them into
addresses reachable from where lkchaos runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from lkchaos.errors import StackError
from lkchaos.settings import Settings

TIMEOUT = 2.0


def connect(host: str, port: int, timeout: float = TIMEOUT, decode: bool = True) -> redis.Redis:
    """A client with connect and read timeouts.

    ``decode=False`` for LiveKit's own keys: their values are protobuf bytes, not text.
    """
    return redis.Redis(
        host=host,
        port=port,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        decode_responses=decode,
    )


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
    """Ask every reachable Sentinel about the master; unreachable ones are left out."""
    answers: list[MasterInfo] = []
    for address in settings.sentinel_addresses:
        host, port = Settings.split_address(address, 26379)
        client = connect(host, port, timeout)
        try:
            info: dict[str, Any] = client.sentinel_master(settings.sentinel_master)  # type: ignore[assignment]
        except redis.RedisError:
            continue
        finally:
            client.close()
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
    return answers


def master_address(settings: Settings, timeout: float = TIMEOUT) -> tuple[str, int]:
    """The master's address as Sentinel announces it (first Sentinel that answers)."""
    answers = ask_sentinels(settings, timeout)
    if not answers:
        raise StackError(
            f"no Sentinel answered at {', '.join(settings.sentinel_addresses)} about master "
            f"{settings.sentinel_master!r}: is Redis Sentinel up and the master name right?"
        )
    return answers[0].host, answers[0].port


def primary(settings: Settings, timeout: float = TIMEOUT, decode: bool = False) -> redis.Redis:
    """A client for the current primary, found through Sentinel (bytes by default)."""
    host, port = settings.map_redis_address(*master_address(settings, timeout))
    return connect(host, port, timeout, decode)


def replicas(settings: Settings, timeout: float = TIMEOUT) -> list[tuple[str, int]]:
    """The replicas' addresses as Sentinel announces them."""
    for address in settings.sentinel_addresses:
        host, port = Settings.split_address(address, 26379)
        client = connect(host, port, timeout)
        try:
            found = client.sentinel_slaves(settings.sentinel_master)
        except redis.RedisError:
            continue
        finally:
            client.close()
        return [(str(r["ip"]), int(r["port"])) for r in found if "s_down" not in str(r["flags"])]
    return []
