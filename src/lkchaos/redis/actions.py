"""Redis faults: lose the primary, force a failover, bring the old primary back, stall it.

The primary is the node Sentinel names now (with Sentinel), or the container of the role
``redis_primary`` (direct Redis). Its container is the one among the roles ``redis_primary``
and ``redis_replica`` that answers to the host Sentinel announces, by runtime name, container
name, hostname, network alias or IP address (:mod:`lkchaos.redis.nodes`); no naming
convention is assumed. The kill goes through :func:`lkchaos.docker.actions.kill_service`, so it
is recorded in the fault ledger and undone by ``restore_old_primary`` (or ``lkchaos
recover``). Each action returns what it did and what Sentinel said::

    {"action": "kill_primary", "killed": "redis-primary", "role": "redis_primary",
     "matched_by": "runtime name", "signal": "SIGKILL", "master_before": "redis-primary:6379"}

``stall_primary`` stalls the primary without killing it: ``CLIENT PAUSE`` again and again,
each pause shorter than Sentinel's ``down-after-milliseconds``, so the Sentinels should never
see it down. Every pause expires by itself; the stall is recorded in the fault ledger while it
runs (``unstall_primary`` is its undo), so a runner killed mid-stall leaves at most one pause,
which ``lkchaos recover`` or the pause's own end clears.
"""

import time
from typing import Any, Dict

import redis
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos import roles
from lkchaos.docker import actions as docker_actions
from lkchaos.docker.client import docker_session, runtime_containers
from lkchaos.errors import LkChaosError
from lkchaos.redis import client, nodes
from lkchaos.safety import ledger
from lkchaos.settings import Settings, join_host_port
from lkchaos.values import check_flag, check_number, check_text

__all__ = ["kill_primary", "sentinel_failover", "restore_old_primary", "stall_primary",
           "unstall_primary"]


def _check_wait(wait_s: Any) -> float:
    return check_number("wait_s", wait_s, "seconds", strict=True)


def _master(settings: Settings) -> tuple[str, int]:
    try:
        return client.master_address(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc


def _redis_containers(settings: Settings) -> dict[str, Any]:
    """The containers of the roles redis_primary and redis_replica that exist, by runtime
    name (attributes as the engine reports them now)."""
    wanted = nodes.candidates(settings)
    if not wanted:
        raise ActivityFailed("the target maps no redis_primary or redis_replica: add `roles: "
                             "{redis_primary: NAME, redis_replica: [NAME]}` to the target file")
    try:
        with docker_session() as docker:
            found = runtime_containers(docker, settings)
            chosen = {name: found[name] for name in wanted if name in found}
            for container in chosen.values():
                container.reload()
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    return chosen


def container_of(host: str, port: int, containers: Dict[str, Any]) -> tuple[str, str]:
    """The runtime name of the one container that answers to ``host`` and how it matched;
    ActivityFailed, saying what was announced and looked at, when none or several do."""
    found = nodes.find(host, containers)
    if len(found) == 1:
        return found[0]
    looked = nodes.describe(containers)
    if not found:
        raise ActivityFailed(
            f"Sentinel announces the primary at {host}:{port}, and no container of the roles "
            f"redis_primary and redis_replica answers to {host!r} (looked at: {looked}). Map "
            "the container that holds it to one of these roles in the target file, or make "
            "Sentinel announce one of its names (replica-announce-ip)"
        )
    raise ActivityFailed(
        f"Sentinel announces the primary at {host}:{port}, and several containers answer to "
        f"{host!r}: {', '.join(f'{n} ({k})' for n, k in found)}; lkchaos cannot tell which "
        "one to kill. Make Sentinel announce a name or address only one of them has"
    )


def kill_primary(
    signal: str = "SIGKILL", configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Kill the container of the Redis primary (the one Sentinel names now, or the role
    redis_primary without Sentinel) with SIGKILL (no clean shutdown, no last write to disk),
    SIGTERM, SIGINT or SIGQUIT. With Sentinel, the replica should be promoted."""
    docker_actions._signal_name(signal)
    settings = Settings.load(configuration, secrets)
    try:
        direct = client.is_direct(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    if direct:
        name = roles.resolve_one(settings, "redis_primary")
        host, port = client.master_address(settings)
        how = "role redis_primary (Redis without Sentinel)"
    else:
        host, port = _master(settings)
        name, how = container_of(host, port, _redis_containers(settings))
    result = docker_actions.kill_service(
        service=name, signal=signal, configuration=configuration, secrets=secrets
    )
    return {"action": "kill_primary", "killed": name, "role": roles.role_of(settings, name),
            "matched_by": how, "signal": result["signal"],
            "master_before": join_host_port(host, port)}


def sentinel_failover(
    wait_s: float = 30.0, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """Ask Sentinel for a failover (``SENTINEL FAILOVER``) and wait until it names a new
    primary, at most ``wait_s`` seconds. A switchover: nothing is lost, no rollback needed."""
    _check_wait(wait_s)
    settings = Settings.load(configuration, secrets)
    if not settings.sentinel_addresses:
        raise ActivityFailed("sentinel_failover needs Redis Sentinel, and the target's Redis is "
                             "direct (no Sentinel to ask for a failover)")  # fmt: skip
    before = _master(settings)
    started = time.monotonic()
    last_error = ""
    access = client.Access.of(settings)
    for address in settings.sentinel_addresses:
        try:
            with client.sentinel(address, access) as sentinel:
                sentinel.sentinel_failover(settings.sentinel_master)
            break
        except (redis.RedisError, LkChaosError) as exc:
            last_error = f"{address}: {exc}"
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


def last_killed(settings: Settings) -> str | None:
    """The Redis node stopped most recently and not yet restarted, from the fault ledger
    (this run's faults first), or None."""
    redis_nodes = set(nodes.candidates(settings))
    stopped = [f for f in ledger.pending(settings.state_dir)
               if f.kind == "stopped" and f.target in redis_nodes]  # fmt: skip
    run = ledger.current_run_id()
    mine = [f for f in stopped if run and f.run_id == run]
    chosen = mine or stopped
    return chosen[-1].target if chosen else None


def _announced(settings: Settings) -> list[tuple[str, int]]:
    """Every data node's address as announced: the primary's first, then the replicas'
    (down ones included, as Sentinel still lists them), or the direct addresses."""
    if client.is_direct(settings):
        primary = client.master_address(settings)
        return [primary, *client.replicas(settings)]
    master = client.master_address(settings)
    listed = [(str(r["ip"]), int(r["port"])) for r in client.sentinel_replicas(settings)]
    return [master, *listed]


def _address_of(settings: Settings, name: str, container: Any) -> tuple[tuple[str, int], bool]:
    """The announced address of the node in ``container`` and whether it is the primary's.

    Direct Redis: an address whose host the container answers to, else by role position
    (redis_primary is the primary's address, redis_replica:N the N-th replica's)."""
    announced = _announced(settings)
    for index, (host, port) in enumerate(announced):
        if nodes.matches(host, name, container):
            return (host, port), index == 0
    if client.is_direct(settings):
        if name in settings.roles.get("redis_primary", ()):
            return announced[0], True
        replicas = list(settings.roles.get("redis_replica", ()))
        if name in replicas and replicas.index(name) + 1 < len(announced):
            return announced[replicas.index(name) + 1], False
    shown = ", ".join(join_host_port(h, p) for h, p in announced) or "none"
    raise LookupError(f"none of the addresses announced ({shown}) is {name}'s")


def _state(settings: Settings, name: str) -> dict[str, Any]:
    """Where the restarted node is now: its address, role, and whether it is back."""
    with docker_session() as docker:
        container = runtime_containers(docker, settings)[name]
        container.reload()
    (host, port), is_master = _address_of(settings, name, container)
    with client.node(settings, host, port) as node:
        info = node.info("replication")
    role = str(info.get("role"))
    replicating = role == "slave" and info.get("master_link_status") == "up"
    return {"address": join_host_port(host, port), "host": host, "port": port, "role": role,
            "primary": is_master, "back": (is_master and role == "master") or replicating}


def _replicate_from(settings: Settings, host: str, port: int, master: tuple[str, int]) -> None:
    """``REPLICAOF`` the current primary, sent to the node at ``host:port`` (announced)."""
    with client.node(settings, host, port) as node:
        node.execute_command("REPLICAOF", master[0], str(master[1]))


def restore_old_primary(
    service: str = None,  # type: ignore[assignment]
    wait_s: float = 30.0,
    reconfigure: bool = True,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Start the killed Redis node again and wait until it replicates from the current
    primary, or, without Sentinel, until it serves again. ``service`` (a role or runtime
    name) defaults to the Redis node the last kill stopped (from the fault ledger), else the
    role redis_primary. A rollback: a running node is left as it is.

    A node that comes back as a primary while Sentinel names another one (the old primary:
    its own configuration says nothing of the failover) is a second primary until Sentinel
    turns it into a replica, which Sentinel does only after it has read the node's ``INFO``
    (every 10 s) and then waited 8 s more (about 17 s on the reference stack). With
    ``reconfigure`` (the default) the rollback sends it ``REPLICAOF`` the primary Sentinel
    names at once, as Sentinel would, and waits for the link (about 6 s there: Redis's
    diskless sync delay); a node that refuses the command (renamed, or not allowed to this
    user) is left to Sentinel. Returns ``{"action", "service", "role", "address", "master",
    "was", "replicaof"}``: ``replicaof`` is the primary it was pointed at, or None when it
    was not (it came back a replica, or Sentinel was left to do it).
    Raises ActivityFailed when the node does not replicate (or serve) within ``wait_s``."""
    if service is not None:
        docker_actions._check_target(service, None)
    _check_wait(wait_s)
    check_flag("reconfigure", reconfigure)
    settings = Settings.load(configuration, secrets)
    try:
        chosen = service or last_killed(settings) or "redis_primary"
        sentinel = not client.is_direct(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    name = roles.resolve_one(settings, chosen)
    started = docker_actions.start_service(name, configuration, secrets)
    deadline = time.monotonic() + wait_s
    last: dict[str, Any] = {"role": "unknown", "address": "not found"}
    problem = ""
    pointed: str | None = None
    refused = not (reconfigure and sentinel)
    while True:
        try:
            last = _state(settings, name)
            if last["back"]:
                master = client.master_address(settings)
                return {"action": "restore_old_primary", "service": name,
                        "role": last["role"], "address": last["address"],
                        "master": join_host_port(*master), "was": started["before"],
                        "replicaof": pointed}  # fmt: skip
            if not refused and pointed is None and last["role"] == "master" \
                    and not last["primary"]:
                master = client.master_address(settings)
                try:
                    _replicate_from(settings, last["host"], last["port"], master)
                    pointed = join_host_port(*master)
                except redis.ResponseError as exc:
                    refused = True
                    problem = f"REPLICAOF refused ({exc}): left to Sentinel"
        except client.RedisAuthError as exc:
            raise ActivityFailed(str(exc)) from exc
        except (redis.RedisError, LkChaosError, LookupError, KeyError) as exc:
            problem = f"{type(exc).__name__}: {exc}"
        if time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    raise ActivityFailed(
        f"{name} is running but not replicating after {wait_s:g} s (role {last['role']}, "
        f"address {last['address']}{'; last error ' + problem if problem else ''}); check "
        f"the logs of {name} and of the Sentinels"
    )


# --- a stalling primary, below Sentinel's failover threshold ------------------------------

PAUSE_MODES = ("ALL", "WRITE")
STALL_KIND = "client_pause"
#: The longest stall one action runs for, in seconds.
MAX_STALL_S = 3600.0


def _check_stall(pause_ms: Any, every_s: Any, duration_s: Any, mode: Any) -> str:
    """The stall's arguments, as its preflight checks them; returns the mode in capitals."""
    check_number("pause_ms", pause_ms, "milliseconds", minimum=1, whole=True)
    check_number("every_s", every_s, "seconds", strict=True)
    check_number("duration_s", duration_s, "seconds", strict=True, maximum=MAX_STALL_S)
    if pause_ms >= every_s * 1000:
        raise ActivityFailed(
            f"pause_ms ({pause_ms:g}) must be shorter than every_s ({every_s:g} s = "
            f"{every_s * 1000:g} ms): pauses issued closer than they last run into one "
            "long pause")
    upper = check_text("mode", mode).upper()
    if upper not in PAUSE_MODES:
        raise ActivityFailed(f"mode must be ALL (every command waits) or WRITE (writes wait, "
                             f"reads go on), not {mode!r}")  # fmt: skip
    return upper


def down_after_ms(settings: Settings) -> int:
    """Sentinel's ``down-after-milliseconds`` for the master: the smallest any Sentinel that
    answers has (the first to reach it starts the failover)."""
    access = client.Access.of(settings)
    found: list[int] = []
    problems: list[str] = []
    for address in settings.sentinel_addresses:
        try:
            with client.sentinel(address, access) as sentinel:
                info: dict[str, Any] = sentinel.sentinel_master(  # type: ignore[assignment]
                    settings.sentinel_master)
            found.append(int(info["down-after-milliseconds"]))
        except client.RedisAuthError as exc:
            raise ActivityFailed(str(exc)) from exc
        except (redis.RedisError, LkChaosError, KeyError, ValueError) as exc:
            problems.append(f"{address}: {exc}")
    if not found:
        raise ActivityFailed(
            f"no Sentinel said its down-after-milliseconds for {settings.sentinel_master!r} "
            f"({'; '.join(problems) or 'no Sentinel configured'}): without the failover "
            "threshold no stall can be kept below it")
    return min(found)


def _pause(node: redis.Redis, ms: int, mode: str) -> None:
    node.client_pause(ms, all=mode == "ALL")


def stall_primary(
    pause_ms: int = 1500,
    every_s: float = 2.0,
    duration_s: float = 30.0,
    mode: str = "ALL",
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> Dict[str, Any]:
    """Stall the Redis primary for ``duration_s`` seconds: ``CLIENT PAUSE pause_ms mode`` on
    it every ``every_s`` seconds (``ALL``: every command waits, Sentinel's pings too;
    ``WRITE``: writes wait), then ``CLIENT UNPAUSE``. With Sentinel, a pause as long as its
    ``down-after-milliseconds`` is refused: the fault is a primary slow enough to hurt, and
    too short-lived for Sentinel to fail over. Returns once the stall is over, with ``pauses``
    issued, ``paused_ms`` in all, ``threshold_ms`` (Sentinel's; None for direct Redis), the
    primary before and after and ``same_primary``: a failover during a stall below the
    threshold (``same_primary`` false) is a finding. Each pause expires by itself."""
    upper = _check_stall(pause_ms, every_s, duration_s, mode)
    settings = Settings.load(configuration, secrets)
    try:
        direct = client.is_direct(settings)
        threshold = None if direct else down_after_ms(settings)
        if threshold is not None and pause_ms >= threshold:
            raise ActivityFailed(
                f"pause_ms {pause_ms:g} would reach Sentinel's failover threshold: its "
                f"down-after-milliseconds for {settings.sentinel_master!r} is {threshold} ms. "
                f"A stall below the threshold needs pause_ms under {threshold}; to fail the "
                "primary over, use kill_primary or sentinel_failover")
        before = client.master_address(settings)
        node = client.node(settings, *before, timeout=pause_ms / 1000 + client.TIMEOUT)
    except (LkChaosError, redis.RedisError) as exc:
        raise ActivityFailed(f"cannot reach the Redis primary to stall it: {exc}") from exc
    where = join_host_port(*before)
    try:
        ledger.record(settings.state_dir, ledger.Fault(STALL_KIND, where, __name__,
                                                       "unstall_primary", {}))  # fmt: skip
    except LkChaosError:
        node.close()
        raise
    pauses, paused_ms, failed = 0, 0, []
    started = time.monotonic()
    end = started + float(duration_s)
    try:
        tick = started
        while tick < end:
            ms = max(1, min(int(pause_ms), round((end - time.monotonic()) * 1000)))
            try:
                _pause(node, ms, upper)
                pauses, paused_ms = pauses + 1, paused_ms + ms
            except redis.RedisError as exc:
                failed.append(f"{round(time.monotonic() - started, 1)} s: {exc}")
            tick += float(every_s)
            time.sleep(max(0.0, min(tick, end) - time.monotonic()))
    finally:
        unpaused = _unpause(node)
        node.close()
        ledger.forget(settings.state_dir, STALL_KIND, where)
    try:
        after = client.master_address(settings)
    except LkChaosError as exc:
        raise ActivityFailed(f"the stall is over, and no Sentinel names a primary: {exc}"
                             ) from exc  # fmt: skip
    return {"action": "stall_primary", "primary": where, "mode": upper, "pause_ms": pause_ms,
            "every_s": every_s, "pauses": pauses, "paused_ms": paused_ms,
            "failed_pauses": failed[:10], "unpaused": unpaused, "threshold_ms": threshold,
            "master_before": where, "master_after": f"{after[0]}:{after[1]}",
            "same_primary": after == before, "took_s": round(time.monotonic() - started, 2)}


def _unpause(node: redis.Redis) -> bool | str:
    """``CLIENT UNPAUSE`` on ``node``: True, or why not. Under ``CLIENT PAUSE ALL``, Redis
    holds the unpause itself until the pause ends: it returns then."""
    try:
        node.client_unpause()
        return True
    except redis.RedisError as exc:
        return f"{type(exc).__name__}: {exc} (a pause ends by itself)"


def unstall_primary(
    wait_s: float = 30.0, configuration: Configuration = None, secrets: Secrets = None
) -> Dict[str, Any]:
    """``CLIENT UNPAUSE`` on every Redis data node (the primary and the replicas, as announced,
    so a node paused before a failover is reached too); waits at most ``wait_s`` seconds on
    each (a ``CLIENT PAUSE ALL`` holds the unpause until the pause ends). A rollback, and the
    undo of ``stall_primary`` in the fault ledger: a node that does not answer is reported,
    not an error, since a pause expires by itself."""
    _check_wait(wait_s)
    settings = Settings.load(configuration, secrets)
    try:
        addresses = _announced(settings)
    except client.RedisAuthError as exc:
        raise ActivityFailed(str(exc)) from exc
    except (LkChaosError, redis.RedisError) as exc:
        addresses, problem = [], f"{type(exc).__name__}: {exc}"
    else:
        problem = ""
    done: dict[str, Any] = {}
    for host, port in dict.fromkeys(addresses):
        try:
            with client.node(settings, host, port, timeout=float(wait_s)) as node:
                done[join_host_port(host, port)] = _unpause(node)
        except client.RedisAuthError as exc:
            raise ActivityFailed(str(exc)) from exc
        except (LkChaosError, redis.RedisError) as exc:
            done[join_host_port(host, port)] = (f"{type(exc).__name__}: {exc} (a pause ends by "
                                                "itself)")
    for where in {f.target for f in ledger.pending(settings.state_dir) if f.kind == STALL_KIND}:
        ledger.forget(settings.state_dir, STALL_KIND, where)
    return {"action": "unstall_primary", "nodes": done,
            **({"problem": problem} if problem else {})}
