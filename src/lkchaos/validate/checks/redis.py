"""Checks of the Redis items: connection, AUTH, persistence, memory, key expiry, pub/sub,
replication and Sentinel quorum, and LiveKit's state in Redis.

Redis is reached as every lkchaos activity reaches it (:mod:`lkchaos.redis.client`: through
Sentinel, or direct). Scratch keys are named ``lkchaos:validate:*`` and deleted before a
check returns. LiveKit's own state is read with :mod:`lkchaos.livekit.state`; the session
data and the cleanup after a room is deleted come from the LiveKit media session
(:func:`lkchaos.validate.checks.livekit.media_session`), which reads Redis while its two
participants are in the room, and again after the room is deleted.
"""

from __future__ import annotations

import secrets as pysecrets
import time
from typing import Any

import redis as redis_lib

from lkchaos.livekit import keys
from lkchaos.redis import client as rc
from lkchaos.validate.checks.livekit import ROOM_PREFIX, guarded, media_session, nodes
from lkchaos.validate.model import Context, Finding, check

SCRATCH = "lkchaos:validate:"
#: Used memory over this share of maxmemory (or of the host's memory without one) warns.
MEMORY_WARN = 0.80


def scratch_key(kind: str) -> str:
    return f"{SCRATCH}{kind}:{pysecrets.token_hex(4)}"


def _primary(ctx: Context, decode: bool = True) -> redis_lib.Redis:
    return rc.primary(ctx.settings, min(ctx.timeout_s, 5.0), decode=decode)


#: A managed Redis renames or removes admin commands (ElastiCache and Memorystore refuse
#: CONFIG), and an ACL user may lack them (``-@admin -@dangerous``: CONFIG and INFO).
MANAGED = ("a managed Redis (ElastiCache, Memorystore...) or an ACL user without the command "
           "(-@admin, -@dangerous)")


def refused(exc: redis_lib.ResponseError) -> bool:
    """Whether Redis refused a command as unknown (renamed or removed) or not permitted."""
    text = str(exc).lower()
    return (isinstance(exc, redis_lib.exceptions.NoPermissionError)
            or "unknown command" in text or text.startswith("noperm"))  # fmt: skip


def _refusal(command: str, exc: redis_lib.ResponseError) -> str:
    return f"{command} is refused here ({str(exc)[:80]}; {MANAGED})"


def _unreadable(what: str, command: str, exc: redis_lib.ResponseError, confirm: str,
                data: dict[str, Any] | None = None) -> Finding:  # fmt: skip
    """``manual``: ``what`` cannot be read because Redis refused ``command``; ``confirm``
    says what a person must check instead."""
    return Finding("manual", f"{what} cannot be read: {_refusal(command, exc)}. {confirm}",
                   {**(data or {}), "refused": str(exc)[:200]})


def _address(ctx: Context) -> tuple[str, int]:
    return ctx.settings.map_redis_address(*rc.master_address(ctx.settings,
                                                             min(ctx.timeout_s, 5.0)))


@check("redis.redis-connection-successful")
@guarded
def connection(ctx: Context) -> Finding:
    """The primary (found through Sentinel, or given) answers PING; its role is master."""
    host, port = _address(ctx)
    r = _primary(ctx)
    try:
        started = time.monotonic()
        r.ping()
        ms = (time.monotonic() - started) * 1000
        try:
            info: dict[str, Any] = r.info("server") | r.info("replication")
        except redis_lib.ResponseError as exc:
            if not refused(exc):
                raise
            return _unreadable(f"{host}:{port} answered PING in {ms:.1f} ms; its role",
                               "INFO", exc, f"Confirm that {host}:{port} is the primary (the "
                               "service's primary endpoint)",
                               {"address": f"{host}:{port}", "ping_ms": round(ms, 2)})
    finally:
        r.close()
    data = {"address": f"{host}:{port}", "ping_ms": round(ms, 2), "role": info.get("role"),
            "version": info.get("redis_version")}  # fmt: skip
    if info.get("role") != "master":
        return Finding("fail", f"{host}:{port} answers but is a {info.get('role')}, not the "
                       "primary", data)  # fmt: skip
    return Finding("pass", f"primary {host}:{port} (Redis {data['version']}) answered PING in "
                   f"{ms:.1f} ms", data)  # fmt: skip


@check("redis.authentication-working")
@guarded
def authentication(ctx: Context) -> Finding:
    """Without the password Redis refuses commands; with it, it accepts them (n/a when the
    target sets no password)."""
    host, port = _address(ctx)
    access = rc.Access.of(ctx.settings)
    nobody = rc.Access(tls=access.tls, ca_file=access.ca_file, db=access.db)
    if not access.password:
        anonymous = rc.connect(host, port, nobody,
                               min(ctx.timeout_s, 5.0))  # fmt: skip
        try:
            anonymous.ping()
        except redis_lib.AuthenticationError:
            return Finding("error", f"{host}:{port} wants a password and the target gives none: "
                           f"set {rc.PASSWORD_PLACES}")  # fmt: skip
        finally:
            anonymous.close()
        return Finding("n/a", f"Redis at {host}:{port} has no password (AUTH is not enabled)")
    without = rc.connect(host, port, nobody,
                         min(ctx.timeout_s, 5.0))  # fmt: skip
    try:
        without.get(scratch_key("auth"))
        refused = ""
    except redis_lib.AuthenticationError as exc:
        refused = str(exc)
    except redis_lib.ResponseError as exc:  # NOAUTH arrives as a plain error on some versions
        refused = str(exc) if "NOAUTH" in str(exc).upper() or "AUTH" in str(exc).upper() else ""
    finally:
        without.close()
    r = _primary(ctx)
    try:
        r.ping()
    finally:
        r.close()
    if not refused:
        return Finding("fail", f"Redis at {host}:{port} answered a command without the "
                       "password", {"address": f"{host}:{port}"})  # fmt: skip
    return Finding("pass", f"{host}:{port} refused a client without the password "
                   f"({refused[:60]}) and accepted the target's", {"refused": refused[:200]})


@check("redis.data-persistence-configured")
@guarded
def persistence(ctx: Context) -> Finding:
    """``CONFIG GET appendonly`` / ``save``: AOF or RDB snapshots are on (a fail when
    neither is). Where CONFIG is refused (a managed Redis, an ACL user without it), ``INFO
    persistence`` shows whether AOF is on (a pass); otherwise a person confirms it (manual)."""
    r = _primary(ctx)
    try:
        try:
            raw = r.config_get("appendonly") | r.config_get("appendfsync") | r.config_get("save")
        except redis_lib.ResponseError as exc:
            if not refused(exc):
                raise
            return _persistence_without_config(r, exc)
        config: dict[str, Any] = {str(k): v for k, v in raw.items()}
    finally:
        r.close()
    aof = config.get("appendonly") == "yes"
    save = str(config.get("save") or "").strip()
    text = (f"appendonly {config.get('appendonly')} (appendfsync {config.get('appendfsync')}), "
            f"save {save or '(none)'!r}")
    if not aof and not save:
        return Finding("fail", f"no persistence: {text}; a restart loses LiveKit's state",
                       config)  # fmt: skip
    return Finding("pass", text, config)


def _persistence_without_config(r: redis_lib.Redis, exc: redis_lib.ResponseError) -> Finding:
    """What ``INFO persistence`` says when CONFIG is refused: AOF on is a pass; RDB snapshots'
    schedule is not in INFO, so anything else is for a person to confirm."""
    why = _refusal("CONFIG", exc)
    data: dict[str, Any] = {"refused": str(exc)[:200]}
    try:
        info: dict[str, Any] = r.info("persistence")
    except redis_lib.ResponseError as info_exc:
        if not refused(info_exc):
            raise
        seen = f"; INFO is refused too ({str(info_exc)[:60]})"
    else:
        data |= {k: info.get(k) for k in ("aof_enabled", "rdb_last_save_time",
                                          "rdb_changes_since_last_save", "rdb_saves")}
        if int(info.get("aof_enabled") or 0):
            return Finding("pass", f"AOF is on (INFO persistence; {why})", data)
        last = int(info.get("rdb_last_save_time") or 0)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(last)) if last else "never"
        seen = f"; INFO persistence: AOF off, last RDB snapshot {when}"
    return Finding("manual", f"persistence cannot be read: {why}{seen}. Confirm that RDB "
                   "snapshots or AOF are on (the provider's backup or persistence settings, "
                   "or redis.conf's save / appendonly): without them a restart loses "
                   "LiveKit's state", data)  # fmt: skip


@check("redis.memory-usage-reasonable")
@guarded
def memory(ctx: Context) -> Finding:
    """Used memory against ``maxmemory`` (or the host's memory when unlimited): a warning
    over 80 %; a note when no maxmemory is set."""
    r = _primary(ctx)
    try:
        info: dict[str, Any] = r.info("memory")
    except redis_lib.ResponseError as exc:
        if not refused(exc):
            raise
        return _unreadable("memory use", "INFO", exc, "Confirm in the provider's metrics "
                           f"that used memory stays under {MEMORY_WARN:.0%} of the instance's "
                           "maxmemory")
    finally:
        r.close()
    used = int(info["used_memory"])
    limit = int(info.get("maxmemory") or 0)
    total = int(info.get("total_system_memory") or 0)
    ceiling, what = (limit, "maxmemory") if limit else (total, "the host's memory")
    share = used / ceiling if ceiling else 0.0
    data = {"used": used, "maxmemory": limit, "host": total, "share": round(share, 4),
            "policy": info.get("maxmemory_policy")}  # fmt: skip
    if not ceiling:
        return Finding("manual", f"{used / 2**20:.1f} MiB used; Redis reports neither "
                       "maxmemory nor the host's memory: confirm that used memory stays under "
                       f"{MEMORY_WARN:.0%} of what the instance has", data)  # fmt: skip
    text = f"{used / 2**20:.1f} MiB used, {share:.1%} of {what} ({ceiling / 2**20:.0f} MiB)"
    if share > MEMORY_WARN:
        return Finding("warn", f"{text}: over {MEMORY_WARN:.0%}", data)
    note = "" if limit else "; no maxmemory set"
    return Finding("pass", text + note, data)


@check("redis.key-expiration-working")
@guarded
def key_expiration(ctx: Context) -> Finding:
    """A scratch key set with a 1 s TTL is gone shortly after (deleted in any case)."""
    key = scratch_key("ttl")
    r = _primary(ctx)
    try:
        r.set(key, "1", px=1000)
        ttl = r.pttl(key)
        started = time.monotonic()
        while r.exists(key) and time.monotonic() - started < min(ctx.timeout_s, 5.0):
            time.sleep(0.1)
        gone = not r.exists(key)
        waited = time.monotonic() - started
    finally:
        r.delete(key)
        r.close()
    data = {"key": key, "ttl_ms": ttl, "gone_after_s": round(waited, 2)}
    if ttl <= 0 or not gone:
        return Finding("fail", f"key {key} with a 1 s TTL: pttl {ttl}, still there after "
                       f"{waited:.1f} s", data)  # fmt: skip
    return Finding("pass", f"key with a 1 s TTL (pttl {ttl} ms) expired within "
                   f"{waited + 0.0:.1f} s after it was read", data)  # fmt: skip


@check("redis.pub-sub-functionality")
@guarded
def pub_sub(ctx: Context) -> Finding:
    """A message published on a scratch channel reaches a subscriber."""
    channel = scratch_key("channel")
    token = pysecrets.token_hex(8)
    sub_client, pub_client = _primary(ctx), _primary(ctx)
    pubsub = sub_client.pubsub()
    try:
        pubsub.subscribe(channel)
        pubsub.get_message(timeout=1.0)  # the subscribe confirmation
        started = time.monotonic()
        receivers = pub_client.publish(channel, token)
        got = None
        while got is None and time.monotonic() - started < min(ctx.timeout_s, 5.0):
            message = pubsub.get_message(timeout=0.5)
            if message and message.get("type") == "message":
                got = message.get("data")
        ms = (time.monotonic() - started) * 1000
    finally:
        pubsub.close()
        sub_client.close()
        pub_client.close()
    if got != token:
        return Finding("fail", f"published on {channel} ({receivers} receiver(s)); the "
                       "subscriber got nothing", {"channel": channel})  # fmt: skip
    return Finding("pass", f"a message published on {channel} arrived in {ms:.1f} ms",
                   {"channel": channel, "ms": round(ms, 2)})  # fmt: skip


#: Seconds at most the clustering item waits for connected replicas still syncing (a
#: replica restarted or re-attached after a failover goes through ``wait_bgsave`` and
#: ``send_bulk`` before ``online``); bounded by the check's own timeout.
SYNC_WAIT_S = 20.0


def _replicas_in_sync(ctx: Context) -> tuple[list[dict[str, Any]], float]:
    """The primary's connected replicas (``INFO replication``'s ``slaveN`` fields) once every
    one is ``online``, or as they are when ``min(SYNC_WAIT_S, ctx.timeout_s - 3)`` seconds
    have passed; and the seconds waited. A backup being taken (``redis-cli --rdb``) is
    listed as a replica with port 0: it is left out."""
    started = time.monotonic()
    limit = max(0.0, min(SYNC_WAIT_S, ctx.timeout_s - 3.0))
    while True:
        r = _primary(ctx)
        try:
            info: dict[str, Any] = r.info("replication")
        finally:
            r.close()
        replicas = [v for k, v in info.items() if k.startswith("slave")
                    and isinstance(v, dict) and int(v.get("port", 0))]  # fmt: skip
        waited = time.monotonic() - started
        if all(v.get("state") == "online" for v in replicas) or waited >= limit:
            return replicas, waited
        time.sleep(0.5)


@check("redis.clustering-working")
@guarded
def clustering(ctx: Context) -> Finding:
    """Replication (the primary's connected replicas, each in sync, waiting up to
    ``SYNC_WAIT_S`` for one still syncing) and, with Sentinel, ``SENTINEL CKQUORUM`` on every
    Sentinel; n/a for a single Redis without replicas."""
    settings = ctx.settings
    try:
        replicas, waited = _replicas_in_sync(ctx)
    except redis_lib.ResponseError as exc:
        if not refused(exc):
            raise
        return _unreadable("replication", "INFO", exc, "Confirm in the provider's console that "
                           "the replicas are connected and in sync")
    online = [v for v in replicas if v.get("state") == "online"]
    syncing = [v for v in replicas if v.get("state") != "online"]
    data: dict[str, Any] = {"replicas": replicas, "sentinels": {}, "waited_s": round(waited, 1)}
    problems = []
    if not rc.is_direct(settings):
        access = rc.Access.of(settings)
        for address in settings.sentinel_addresses:
            try:
                with rc.sentinel(address, access, min(ctx.timeout_s, 3.0)) as client:
                    answer = str(client.execute_command(  # type: ignore[no-untyped-call]
                        "SENTINEL", "CKQUORUM", settings.sentinel_master))
            except redis_lib.RedisError as exc:
                answer = f"ERROR {exc}"
            data["sentinels"][address] = answer
            if not answer.startswith("OK"):
                problems.append(f"Sentinel {address}: {answer[:100]}")
    elif not settings.redis_replica_addresses and not replicas:
        return Finding("n/a", "a single Redis without replicas or Sentinel (not clustered)",
                       data)  # fmt: skip
    expected = len(settings.redis_replica_addresses) if rc.is_direct(settings) else 1
    if len(online) < max(expected, 1):
        problems.append(f"{len(online)} replica(s) online of {len(replicas)} connected "
                        f"(expected at least {max(expected, 1)})")  # fmt: skip
    if syncing:
        problems.append("not in sync after " + f"{waited:.0f} s: " + ", ".join(
            f"{v.get('ip')}:{v.get('port')} {v.get('state')}" for v in syncing)
            + " (a full sync still under way: run again once it ends, or look at the "
            "replica's log)")  # fmt: skip
    lag = [int(v.get("lag", 0)) for v in online]
    quorum = (f"; {len(data['sentinels'])} Sentinels: " + ", ".join(
        f"{a} {v[:40]}" for a, v in data["sentinels"].items())) if data["sentinels"] else ""
    after = f", in sync after {waited:.0f} s" if waited >= 0.5 and not syncing else ""
    text = f"{len(online)} replica(s) online (lag {max(lag, default=0)} s{after}){quorum}"
    if problems:
        return Finding("fail", "; ".join(problems) + f" ({text})", data)
    return Finding("pass", text, data)


# --- LiveKit's state ----------------------------------------------------------------------


#: Seconds the room state may take to agree (participant reads lag: livekit/livekit#4373).
SETTLE_S = 5.0


def _theirs(mismatches: list[Any]) -> list[Any]:
    """Mismatches of the deployment's rooms: this run's own rooms (``lkchaos-validate-*``),
    joined and left while the state is read, are left out."""
    return [m for m in mismatches if not (m.room or "").startswith(ROOM_PREFIX)]


def observation(ctx: Context) -> Any:
    """LiveKit's state in Redis and every node's answers, re-read (for at most
    :data:`SETTLE_S`) until no mismatch of the deployment's rooms is left."""
    from lkchaos.livekit import state

    def compute() -> Any:
        timeout = min(ctx.timeout_s, 5.0)
        obs, _, _ = state.settle(lambda: state.observe(ctx.settings, nodes(ctx), timeout),
                                 lambda o: not _theirs(o.mismatches),
                                 min(SETTLE_S, ctx.timeout_s / 2))  # fmt: skip
        return obs

    return ctx.fact("livekit.state", compute)


@check("redis.room-state-synchronized")
@guarded
def room_state(ctx: Context) -> Finding:
    """LiveKit's rooms and participants in Redis match what every node's RoomService lists."""
    obs = observation(ctx)
    wrong = [m for m in _theirs(obs.mismatches) if m.kind not in _STALE]
    data = {"rooms": len(obs.store.rooms), "nodes": len(obs.store.nodes),
            "mismatches": [m.as_dict() for m in wrong]}  # fmt: skip
    if wrong:
        return Finding("fail", "; ".join(f"{m.kind} {m.room or m.node or ''}: {m.detail}"
                                         for m in wrong[:4]), data)  # fmt: skip
    return Finding("pass", f"{len(obs.store.rooms)} room(s) and {len(obs.store.nodes)} node(s) "
                   f"in Redis agree with {len(obs.apis)} node(s)' RoomService", data)


#: Mismatch kinds that are data left behind rather than disagreement.
_STALE = ("node_map_without_room", "orphan_internal", "orphan_participants",
          "orphan_dispatches", "orphan_jobs")  # fmt: skip


@check("redis.stale-data-accumulation")
@guarded
def stale_data(ctx: Context) -> Finding:
    """No room data in Redis outliving its room (orphaned participants, dispatches, jobs,
    node map entries), and a deleted room's keys are gone."""
    obs = observation(ctx)
    stale = [m for m in _theirs(obs.mismatches) if m.kind in _STALE]
    after = media_session(ctx).get("redis_after") or {}
    left = after.get("left") or []
    data = {"stale": [m.as_dict() for m in stale], "after_delete": after}
    if stale or left:
        parts = [f"{m.kind} {m.room}" for m in stale[:5]]
        if left:
            parts.append(f"a deleted room's keys still there: {', '.join(left[:5])}")
        return Finding("fail", "; ".join(parts), data)
    if "error" in after:
        return Finding("error", f"no orphaned room data; the deleted room could not be "
                       f"checked: {after['error']}", data)  # fmt: skip
    return Finding("pass", f"no orphaned room data across {len(obs.store.rooms)} room(s); a "
                   f"deleted room left nothing (gone within {after.get('waited_s', 0)} s)", data)


@check("redis.session-data-stored")
@guarded
def session_data(ctx: Context) -> Finding:
    """While two participants are in a room, Redis holds the room and both participants."""
    seen = media_session(ctx)
    if not seen["joined"]:
        return Finding("error", f"no session to look for: participants could not join "
                       f"({seen['reason']})")  # fmt: skip
    stored = seen.get("redis_participants") or {}
    if "error" in stored:
        return Finding("error", f"Redis could not be read: {stored['error']}", stored)
    wanted = {"lkchaos-validate-listener", "lkchaos-validate-speaker"}
    missing = sorted(wanted - set(stored.get("identities") or []))
    if missing or not stored.get("room_listed"):
        return Finding("fail", f"room {seen['room']} in rooms: {stored.get('room_listed')}; "
                       f"participants missing from Redis: {missing}", stored)  # fmt: skip
    return Finding("pass", f"room {seen['room']} and both participants stored in Redis "
                   f"({keys.PARTICIPANTS_PREFIX}{seen['room']})", stored)  # fmt: skip


@check("redis.data-cleanup-disconnect")
@guarded
def cleanup(ctx: Context) -> Finding:
    """After the participants leave and the room is deleted, Redis holds nothing of it."""
    seen = media_session(ctx)
    after = seen.get("redis_after") or {}
    if "error" in after:
        return Finding("error", f"Redis could not be read after the room: {after['error']}",
                       after)  # fmt: skip
    if after.get("left"):
        return Finding("fail", f"{seen['room']} deleted after its participants left; still in "
                       f"Redis after {after['waited_s']} s: {', '.join(after['left'][:5])}",
                       after)  # fmt: skip
    return Finding("pass", f"{seen['room']}: participants left, room deleted, its keys gone "
                   f"within {after.get('waited_s', 0)} s", after)  # fmt: skip


@check("redis.events-published-subscribed")
@guarded
def events(ctx: Context) -> Finding:
    """LiveKit's message bus runs over Redis pub/sub: its nodes are subscribed to channels
    (``PUBSUB CHANNELS`` with subscribers), and a message published on one is received."""
    r = _primary(ctx)
    try:
        channels = sorted(str(c) for c in r.pubsub_channels())
        counts = dict(r.pubsub_numsub(*channels[:200])) if channels else {}
    finally:
        r.close()
    subscribed = [str(c) for c, n in counts.items() if int(n) > 0]
    data = {"channels": len(channels), "subscribed": len(subscribed), "sample": subscribed[:5]}
    if not subscribed:
        return Finding("fail", f"no channel with a subscriber in Redis ({len(channels)} "
                       "channels): LiveKit's nodes are not on the bus", data)  # fmt: skip
    heard = _heard(ctx)
    data["round_trip"] = heard
    if not heard:
        return Finding("fail", f"{len(subscribed)} channels subscribed, but a test message "
                       "published was not received", data)  # fmt: skip
    return Finding("pass", f"{len(subscribed)} channel(s) with subscribers (LiveKit's bus, e.g. "
                   f"{subscribed[0][:40]}); a published message was received", data)


def _heard(ctx: Context) -> bool:
    """One message over a scratch channel, published and received (the pub/sub check's, run
    once)."""
    result = ctx.fact("redis.pubsub", lambda: pub_sub(ctx).status == "pass")
    return bool(result)


__all__ = ["SCRATCH", "scratch_key"]

