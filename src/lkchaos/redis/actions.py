"""Redis faults through Sentinel: lose the primary, force a failover, bring the old one back.

The primary is whatever Sentinel names now. In the reference stack Sentinel announces compose
service names (``redis-primary``, ``redis-replica``), so the primary's container is found by
that name; the kill is recorded in the fault ledger and undone by ``restore_old_primary`` (or
``lkchaos recover``). Each action returns what it did and what Sentinel said::

    {"action": "kill_primary", "killed": "redis-primary", "signal": "SIGKILL",
     "master_before": "redis-primary:6379"}
"""

import time
from typing import Any, Dict

import redis
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.docker import actions as docker_actions
from lkchaos.errors import LkChaosError
from lkchaos.redis import client
from lkchaos.settings import Settings
from lkchaos.values import check_number

__all__ = ["kill_primary", "sentinel_failover", "restore_old_primary"]


def _check_wait(wait_s: Any) -> float:
    return check_number("wait_s", wait_s, "seconds", strict=True)


def _master(settings: Settings) -> tuple[str, int]:
    try:
        return client.master_address(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc


def kill_primary(
    signal: str = "SIGKILL", configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Kill the container of the Redis primary Sentinel names now (SIGKILL: no clean
    shutdown, no last write to disk; or SIGTERM, SIGINT, SIGQUIT). Sentinel should promote
    the replica."""
    docker_actions._signal_name(signal)
    settings = Settings.load(configuration, secrets)
    host, port = _master(settings)
    result = docker_actions.kill_service(
        service=host, signal=signal, configuration=configuration, secrets=secrets
    )
    return {"action": "kill_primary", "killed": host, "signal": result["signal"],
            "master_before": f"{host}:{port}"}


def sentinel_failover(
    wait_s: float = 30.0, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Ask Sentinel for a failover (``SENTINEL FAILOVER``) and wait until it names a new
    primary, at most ``wait_s`` seconds. A switchover: nothing is lost, no rollback needed."""
    _check_wait(wait_s)
    settings = Settings.load(configuration, secrets)
    before = _master(settings)
    started = time.monotonic()
    last_error = ""
    for address in settings.sentinel_addresses:
        host, port = Settings.split_address(address, 26379)
        sentinel = client.connect(host, port)
        try:
            sentinel.sentinel_failover(settings.sentinel_master)
            break
        except redis.RedisError as exc:
            last_error = f"{address}: {exc}"
        finally:
            sentinel.close()
    else:
        raise ActivityFailed(f"no Sentinel accepted the failover ({last_error})")
    while time.monotonic() - started < wait_s:
        try:
            now = client.master_address(settings)
        except LkChaosError:
            now = before
        if now != before:
            return {"action": "sentinel_failover", "master_before": f"{before[0]}:{before[1]}",
                    "master_after": f"{now[0]}:{now[1]}",
                    "took_s": round(time.monotonic() - started, 2)}
        time.sleep(0.2)
    raise ActivityFailed(
        f"Sentinel still names {before[0]}:{before[1]} after {wait_s:g} s: the failover did "
        "not happen (is a replica in sync and reachable by the Sentinels?)"
    )


def restore_old_primary(
    service: str = "redis-primary",
    wait_s: float = 30.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Start the killed primary again and wait until it replicates from the current one
    (Sentinel turns it into a replica). A rollback: a running service is left as it is."""
    docker_actions._check_target(service, None)
    _check_wait(wait_s)
    settings = Settings.load(configuration, secrets)
    started = docker_actions.start_service(service, configuration, secrets)
    deadline = time.monotonic() + wait_s
    role = "unknown"
    while time.monotonic() < deadline:
        host, port = settings.map_redis_address(service, 6379)
        try:
            with client.connect(host, port) as node:
                info = node.info("replication")
            role = str(info.get("role"))
            master = _master(settings)
            replicating = role == "slave" and info.get("master_link_status") == "up"
            if master[0] == service or replicating:
                return {"action": "restore_old_primary", "service": service, "role": role,
                        "master": f"{master[0]}:{master[1]}", "was": started["before"]}
        except (redis.RedisError, ActivityFailed):
            pass
        time.sleep(0.5)
    raise ActivityFailed(
        f"{service} is running but not replicating after {wait_s:g} s (role {role}); "
        "check `lkchaos stack logs sentinel-1 " + service + "`"
    )
