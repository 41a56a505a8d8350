"""Checks of the disaster-recovery items: a Redis backup taken and restored, and what the run
history says about recovery.

The backup is a logical one: every key of the primary ``DUMP``-ed with its TTL into a file
(``redis-cli --rdb`` would register lkchaos as a replica, which Sentinel then lists for good);
the restore ``RESTORE``-s it into a scratch ``redis-server`` on a free loopback port in a
temporary folder, both removed afterwards, and LiveKit's keys (and each hash's fields) that
existed both before and after the backup must be in it. The scratch server is Debian's
``redis-server``.

The history items read :mod:`lkchaos.history` (``$LKCHAOS_HISTORY_URL``, else the state
folder's SQLite file; a missing file is "no history", never created here). An experiment
"held" when its run completed without deviating; its RTO is the longest recovery its sampled
probes measured.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lkchaos.livekit import keys
from lkchaos.redis import client as rc
from lkchaos.validate.checks.livekit import ROOM_PREFIX, guarded
from lkchaos.validate.model import Context, Finding, check

#: Experiments by what they break (the experiments shipped in ``experiments/``).
SINGLE_SERVICE = ("agent-crash", "livekit-node-loss", "mcp-outage", "whisper-outage",
                  "redis-failover", "redis-outage", "redis-stall", "ingress-node-loss",
                  "cpu-pressure-agent", "memory-pressure-livekit", "disk-full-stt")  # fmt: skip
NETWORK = ("agent-livekit-partition", "dns-failure", "webhook-link-cut", "media-packet-loss",
           "ingress-rtmp-packet-loss", "livekit-node-redis-partition", "udp-blocked")  # fmt: skip
MULTIPLE = ("redis-lost-during-drain", "ingress-redis-failover")
#: Experiments that compare LiveKit's room state across the fault.
CONSISTENCY = ("redis-failover", "livekit-node-redis-partition")
LIVEKIT_FAULTS = ("livekit-node-loss", "redis-failover", "redis-outage", "redis-stall",
                  "redis-lost-during-drain", "livekit-node-redis-partition")  # fmt: skip


def current_target() -> str | None:
    """The target file in use as the history records it (its path, at most 200 characters;
    None without one): :func:`lkchaos.controls.history.target_in_use`."""
    from lkchaos.controls.history import target_in_use

    return target_in_use()


def history_runs(ctx: Context) -> list[Any] | None:
    """Recorded runs on the target in use (:func:`current_target`), newest first (at most
    500), or None when there is no history. A history shared by
    several deployments (``LKCHAOS_HISTORY_URL``) holds runs that say nothing of this one."""

    def compute() -> list[Any] | None:
        from lkchaos.history import ENV_URL, open_history

        url = os.environ.get(ENV_URL)
        if not url:
            path = Path(ctx.settings.state_dir) / "history.sqlite"
            if not path.is_file():
                return None
            url = f"sqlite:///{path}"
        with open_history(url) as history:
            return list(history.runs(limit=500, target=current_target()))

    result: list[Any] | None = ctx.fact("history.runs", compute)
    return result


def _held(run: Any) -> bool:
    return bool(run.status == "completed" and not run.deviated)


#: Runs stopped before their verdict (Ctrl-C, SIGTERM, refused before anything ran): they
#: show neither that the deployment recovers nor that it does not.
UNFINISHED = ("interrupted", "aborted")


def _listing(runs: dict[str, Any]) -> str:
    return ", ".join(f"{n} {r.verdict} {r.started_at:%Y-%m-%d %H:%M}Z"
                     + (f" (RTO {r.rto_s:.1f} s)" if r.rto_s is not None else "")
                     for n, r in sorted(runs.items()))  # fmt: skip


def from_history(ctx: Context, experiments: Iterable[str], what: str) -> Finding:
    """Pass when the latest finished run of any of ``experiments`` held; fail when finished
    runs exist and the latest of each deviated or failed; warn when every run since was
    stopped before its verdict (:data:`UNFINISHED`); manual when none ran."""
    runs = history_runs(ctx)
    if runs is None:
        return Finding("manual", f"no run history: run an experiment of {what} "
                       f"({', '.join(experiments)}) or confirm recovery by hand")  # fmt: skip
    wanted = set(experiments)
    latest: dict[str, Any] = {}
    unfinished: dict[str, Any] = {}
    for run in runs:  # newest first
        if run.experiment_name in wanted:
            if run.status in UNFINISHED:
                unfinished.setdefault(run.experiment_name, run)
            else:
                latest.setdefault(run.experiment_name, run)
    if not latest and unfinished:
        return Finding("warn", f"no run of {what} finished: each was stopped before its "
                       f"verdict ({_listing(unfinished)}); run one to the end",
                       {"unfinished": sorted(unfinished)})  # fmt: skip
    if not latest:
        return Finding("manual", f"none of {what} has run ({', '.join(sorted(wanted))}); run "
                       "one, or confirm recovery by hand")  # fmt: skip
    data = {name: {"verdict": r.verdict, "started_at": r.started_at.isoformat(),
                   "rto_s": r.rto_s} for name, r in sorted(latest.items())}  # fmt: skip
    text = _listing(latest)
    if any(_held(r) for r in latest.values()):
        return Finding("pass", f"latest runs: {text}", data)
    return Finding("fail", f"no experiment of {what} held in its latest run: {text}", data)


@check("dr.single-service-failure")
@guarded
def single_service(ctx: Context) -> Finding:
    """Single-service failures (a node, a replica, the agent, a dependency) recovered, from
    the run history."""
    return from_history(ctx, SINGLE_SERVICE, "a single service failure")


@check("dr.network-partition-handling")
@guarded
def network_partition(ctx: Context) -> Finding:
    """Network partitions and degraded links handled, from the run history."""
    return from_history(ctx, NETWORK, "a network partition or degraded link")


@check("dr.multiple-service-failure")
@guarded
def multiple_service(ctx: Context) -> Finding:
    """Two faults at once recovered, from the run history."""
    return from_history(ctx, MULTIPLE, "a multiple service failure")


def latest_rto(ctx: Context) -> dict[str, Any]:
    """The latest measured RTO per experiment (runs without sampling left out)."""
    out: dict[str, Any] = {}
    for run in history_runs(ctx) or []:
        if run.rto_s is not None and run.experiment_name not in out:
            out[run.experiment_name] = {"rto_s": round(run.rto_s, 3), "verdict": run.verdict,
                                        "started_at": run.started_at.isoformat()}  # fmt: skip
    return out


@check("dr.recovery-time-documented", "dr.rto-documented")
@guarded
def rto(ctx: Context) -> Finding:
    """The latest RTO per experiment from the run history (and the worst of them)."""
    if history_runs(ctx) is None:
        return Finding("manual", "no run history: run the experiments (they measure RTO) or "
                       "write the RTO down by hand")  # fmt: skip
    found = latest_rto(ctx)
    if not found:
        return Finding("manual", "the run history has no run with a measured RTO (sampled "
                       "probes); run an experiment with the sampling control")  # fmt: skip
    worst = max(found.items(), key=lambda kv: kv[1]["rto_s"])
    text = ", ".join(f"{n} {v['rto_s']:.1f} s" for n, v in sorted(found.items()))
    return Finding("pass", f"worst {worst[0]} {worst[1]['rto_s']:.1f} s; latest RTO per "
                   f"experiment: {text}", {"rto": found})  # fmt: skip


@check("dr.rpo-documented")
@guarded
def rpo(ctx: Context) -> Finding:
    """The RPO Redis's persistence allows: about 1 s with ``appendfsync everysec``, none
    lost with ``always``, up to the snapshot interval with RDB alone; replication to a
    replica bounds it further for a failover."""
    r = rc.primary(ctx.settings, min(ctx.timeout_s, 5.0), decode=True)
    try:
        config = {str(k): str(v) for k, v in (r.config_get("appendonly")
                  | r.config_get("appendfsync") | r.config_get("save")).items()}
        info: dict[str, Any] = r.info("replication")
        # A backup being taken (redis-cli --rdb) is listed with port 0: not a replica.
        replicas = sum(1 for k, v in info.items() if k.startswith("slave")
                       and isinstance(v, dict) and int(v.get("port", 0)))
    finally:
        r.close()
    data: dict[str, Any] = {**config, "replicas": replicas}
    failover = f"; {replicas} replica(s) take writes asynchronously (failover may lose the " \
               "last moments)" if replicas else ""
    if config.get("appendonly") == "yes":
        bound = {"always": "0 s", "everysec": "about 1 s"}.get(str(config.get("appendfsync")),
                                                               "the OS's flush interval")
        return Finding("pass", f"RPO {bound} on restart (AOF, appendfsync "
                       f"{config.get('appendfsync')}){failover}", data)  # fmt: skip
    save = str(config.get("save") or "").split()
    if save:
        interval = min(int(save[i]) for i in range(0, len(save), 2))
        return Finding("warn", f"RPO up to {interval} s on restart (RDB snapshots only, save "
                       f"{' '.join(save)}){failover}", data)  # fmt: skip
    return Finding("fail", f"no persistence: a restart loses everything{failover}", data)


# --- backup and restore -------------------------------------------------------------------


def livekit_snapshot(r: Any) -> dict[str, set[str]]:
    """LiveKit's keys -> their hash fields (an empty set for other types)."""
    names = [*keys.HASHES, keys.VERSION]
    for prefix in keys.ROOM_PREFIXES:
        names += [k.decode() if isinstance(k, bytes) else k
                  for k in r.scan_iter(match=f"{prefix}*", count=500)]  # fmt: skip
    out: dict[str, set[str]] = {}
    for name in names:
        kind = r.type(name)
        kind = kind.decode() if isinstance(kind, bytes) else kind
        if kind == "none":
            continue
        fields = r.hkeys(name) if kind == "hash" else []
        out[name] = {f.decode() if isinstance(f, bytes) else f for f in fields}
    return out


def deployments_data(snapshot: dict[str, set[str]]) -> dict[str, set[str]]:
    """``snapshot`` (:func:`livekit_snapshot`) without this run's own rooms
    (``lkchaos-validate-*``): the run's other checks make and remove them while the backup is
    taken, some under fixed names, so the backup may hold one that the snapshots before and
    after it both list, or miss it."""
    own = tuple(f"{prefix}{ROOM_PREFIX}" for prefix in keys.ROOM_PREFIXES)
    return {key: {f for f in fields if not f.startswith(ROOM_PREFIX)}
            for key, fields in snapshot.items() if not key.startswith(own)}  # fmt: skip


def _server() -> str:
    server = shutil.which("redis-server")
    if not server:
        raise FileNotFoundError("redis-server is needed for the backup test (its scratch "
                                "server): apt-get install redis-server")  # fmt: skip
    return server


#: At most this many keys are backed up (a deployment's LiveKit keyspace is far smaller).
MAX_KEYS = 200_000
BATCH = 500


def dump_keys(r: Any, path: Path, deadline: float) -> int:
    """Every key of ``r`` (``SCAN``, then ``DUMP`` and ``PTTL`` in pipelines) written to
    ``path`` as records ``len(name) name pttl len(payload) payload``; returns how many.
    Raises TimeoutError past ``deadline`` (monotonic) and ValueError past :data:`MAX_KEYS`."""
    count = 0
    with path.open("wb") as out:
        batch: list[bytes] = []

        def flush() -> None:
            pipe = r.pipeline(transaction=False)
            for name in batch:
                pipe.dump(name)
                pipe.pttl(name)
            answers = pipe.execute()
            for name, payload, ttl in zip(batch, answers[::2], answers[1::2], strict=True):
                if payload is None:  # gone since the scan
                    continue
                out.write(struct.pack(">I", len(name)) + name + struct.pack(">q", int(ttl))
                          + struct.pack(">I", len(payload)) + payload)  # fmt: skip
            batch.clear()

        for name in r.scan_iter(count=BATCH):
            batch.append(name if isinstance(name, bytes) else str(name).encode())
            count += 1
            if count > MAX_KEYS:
                raise ValueError(f"over {MAX_KEYS} keys: too many for this check")
            if len(batch) >= BATCH:
                flush()
                if time.monotonic() > deadline:
                    raise TimeoutError("the backup did not finish in time")
        if batch:
            flush()
    return count


def restore_keys(r: Any, path: Path) -> int:
    """Load the records of :func:`dump_keys` into ``r`` (``RESTORE`` with each key's TTL);
    returns how many."""
    data, offset, count = path.read_bytes(), 0, 0
    pipe = r.pipeline(transaction=False)
    while offset < len(data):
        (size,) = struct.unpack_from(">I", data, offset)
        name = data[offset + 4:offset + 4 + size]
        offset += 4 + size
        (ttl,) = struct.unpack_from(">q", data, offset)
        (length,) = struct.unpack_from(">I", data, offset + 8)
        payload = data[offset + 12:offset + 12 + length]
        offset += 12 + length
        pipe.restore(name, max(int(ttl), 0), payload, replace=True)
        count += 1
        if count % BATCH == 0:
            pipe.execute()
    pipe.execute()
    return count


def backup_and_restore(ctx: Context) -> dict[str, Any]:
    """Take the backup, restore it into a scratch server, compare LiveKit's keys."""
    server = _server()
    settings = ctx.settings
    timeout = max(ctx.timeout_s, 5.0)
    host, port = settings.map_redis_address(*rc.master_address(settings, min(timeout, 5.0)))
    source = rc.primary(settings, min(timeout, 5.0))
    with tempfile.TemporaryDirectory(prefix="lkchaos-validate-backup-") as folder:
        dump = Path(folder) / "keys.dump"
        try:
            before = livekit_snapshot(source)
            started = time.monotonic()
            try:
                taken = dump_keys(source, dump, started + timeout)
            except (TimeoutError, ValueError, OSError) as exc:
                return {"backup": False, "reason": str(exc)}
            except Exception as exc:  # the server refused DUMP (a renamed command, an ACL)
                return {"backup": False, "reason": f"{type(exc).__name__}: {exc}"}
            backup_s = time.monotonic() - started
            after = livekit_snapshot(source)
        finally:
            source.close()
        size = dump.stat().st_size
        # On a Unix socket in the backup's private folder, no TCP port: a port chosen free
        # could be taken before the server binds it, and the backup restored into whatever
        # took it.
        scratch = str(Path(folder) / "scratch.sock")
        restore_started = time.monotonic()
        process = subprocess.Popen(
            [server, "--port", "0", "--unixsocket", scratch, "--unixsocketperm", "700",
             "--dir", folder, "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        try:
            restored = _wait_loaded(scratch, process, timeout)
            try:
                restore_keys(restored, dump)
            except Exception as exc:  # e.g. a DUMP format newer than the local redis-server
                return {"backup": True, "restored": False, "bytes": size, "keys_taken": taken,
                        "backup_s": round(backup_s, 3), "source": f"{host}:{port}",
                        "reason": f"RESTORE into the scratch redis-server failed: {exc}"}
            restore_s = time.monotonic() - restore_started
            got = livekit_snapshot(restored)
            restored.close()
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
    before, after = deployments_data(before), deployments_data(after)
    expected = {k: before[k] & after[k] for k in before.keys() & after.keys()}
    missing = sorted(k for k in expected if k not in got)
    missing_fields = sorted(f"{k}[{f}]" for k, fs in expected.items() if k in got
                            for f in fs - got[k])  # fmt: skip
    return {"backup": True, "restored": True, "bytes": size, "keys_taken": taken,
            "backup_s": round(backup_s, 3), "restore_s": round(restore_s, 3),
            "keys": len(expected), "fields": sum(len(v) for v in expected.values()),
            "missing": missing, "missing_fields": missing_fields[:20],
            "source": f"{host}:{port}"}  # fmt: skip


def _wait_loaded(path: str, process: subprocess.Popen[bytes], timeout: float) -> Any:
    """A client of the scratch server on the Unix socket ``path`` once it answers; raises
    TimeoutError past ``timeout`` s, RuntimeError if the server exited."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"the scratch redis-server exited (status {process.returncode}) "
                               "before it answered")  # fmt: skip
        client = rc.connect_unix(path, timeout=1.0, decode=False)
        try:
            if client.ping() and int(client.info("persistence").get("loading", 0)) == 0:
                return client
        except Exception:  # not up yet
            pass
        client.close()
        if time.monotonic() > deadline:
            raise TimeoutError(f"the scratch redis-server on {path} did not answer within "
                               f"{timeout:.0f} s")  # fmt: skip
        time.sleep(0.05)


def _backup(ctx: Context) -> dict[str, Any]:
    result: dict[str, Any] = ctx.fact("dr.backup", lambda: backup_and_restore(ctx))
    return result


@check("dr.redis-data-backup")
@guarded
def redis_backup(ctx: Context) -> Finding:
    """A backup of the primary is taken (every key ``DUMP``-ed with its TTL)."""
    seen = _backup(ctx)
    if not seen["backup"]:
        return Finding("fail", f"the backup (DUMP of every key) failed: {seen['reason']}", seen)
    return Finding("pass", f"backup of {seen['source']} taken in {seen['backup_s']:.2f} s "
                   f"({seen['keys_taken']} keys DUMP-ed with their TTLs, {seen['bytes']} "
                   "bytes)", seen)  # fmt: skip


@check("dr.backup-restoration-tested")
@guarded
def restore(ctx: Context) -> Finding:
    """The backup loads into a scratch redis-server with LiveKit's keys and fields intact."""
    seen = _backup(ctx)
    if not seen["backup"]:
        return Finding("fail", f"no backup to restore: {seen['reason']}", seen)
    if not seen["restored"]:
        return Finding("fail", seen["reason"], seen)
    if seen["missing"] or seen["missing_fields"]:
        return Finding("fail", f"restored, but missing keys {seen['missing'][:5]} and fields "
                       f"{seen['missing_fields'][:5]}", seen)  # fmt: skip
    total = seen["backup_s"] + seen["restore_s"]
    return Finding("pass", f"restored into a scratch redis-server in {seen['restore_s']:.2f} s "
                   f"(backup and restore {total:.2f} s): {seen['keys']} LiveKit keys, "
                   f"{seen['fields']} hash fields intact", seen)  # fmt: skip


@check("dr.data-consistency-maintained")
@guarded
def consistency(ctx: Context) -> Finding:
    """Room state consistent through a failover (the experiments that compare LiveKit's
    state in Redis with the API before and after), from the run history."""
    return from_history(ctx, CONSISTENCY, "a failure that checks room state")
