"""Probes on the LiveKit nodes and on the room state they keep in Redis.

``nodes_health`` returns ``{"ok": bool, "healthy": int, "reason": str, "nodes": {url:
{"status": int, "body": str}}}``. A node answers ``200 OK``, or ``406 Not Ready`` when its
stats are stale (it lost Redis); a node that does not answer has ``status`` 0. Example
tolerance::

    {"type": "jsonpath", "path": "$.healthy", "expect": 2}

``room_state`` reads LiveKit's keys in Redis (``rooms``, ``room_internal``,
``room_participants:<room>``, ``nodes``, ``room_node_map``, ``agent_dispatch:<room>``,
``agent_job:<room>``) and each node's RoomService (ListRooms, ListParticipants), and returns::

    {"ok": true, "livekit_version": "1.13.5", "rooms": 2, "participants": 3, "nodes": 2,
     "dispatches": 1, "jobs": 1,
     "api": {"http://127.0.0.1:27880": {"rooms": 2, "participants": 3}},
     "mismatches": [], "warnings": [], "attempts": 1, "waited_s": 0.0}

``ok`` means no mismatch. Each mismatch is ``{"kind", "room", "node", "detail"}``; kinds:
``room_missing_from_api``, ``room_missing_from_redis``, ``room_sid_differs``,
``participants_differ``, ``node_unreachable`` (a node's RoomService did not answer),
``room_without_node``, ``node_map_without_room``, ``room_on_unknown_node``,
``room_on_unavailable_node``, ``node_unavailable`` (not serving, or stats older than 5 s),
``orphan_participants``, ``orphan_internal``, ``orphan_dispatches``, ``orphan_jobs``,
``undecodable``. ``warnings`` lists ``num_participants_stale`` (``Room.num_participants`` is
refreshed every 5 s) and, unless ``strict_jobs``, ``orphan_jobs`` (LiveKit 1.13.5 leaves
``agent_job:<room>`` behind for good when a room is deleted with an agent job running in it);
warnings do not affect ``ok``. Participant writes lag the joins and leaves,
so the probe re-reads until consistent or ``wait`` seconds passed. Tolerances::

    {"type": "jsonpath", "path": "$.ok", "expect": true}
    {"type": "jsonpath", "path": "$.rooms", "expect": 2}
    {"type": "jsonpath", "count": 0,
     "path": "$.mismatches[*][?(@.kind != \\"node_unreachable\\")]"}

``snapshot_room_state`` saves rooms and participant identities (agents counted apart) to
``<state dir>/snapshots/<name>.json``; ``compare_room_state`` later returns ``ok`` false when a
room, a participant or an agent was lost since (tolerance ``{"type": "jsonpath", "path":
"$.ok", "expect": true}``). Snapshot as the first step of ``method`` and compare in the
hypothesis with ``chaos run --hypothesis-strategy=after-method-only``, so the comparison runs
only after the fault. ``roomservice_latency`` times ListRooms on each node.

``join_token_skew`` mints a join token as an issuer whose clock is ``skew_s`` seconds ahead
(negative: behind) would, asks a node's ``/rtc/validate`` whether it accepts it, and returns
``{"skew_s": 90, "accepted": false, "accepted_by": 0, "status": 401, "reason": "token has
invalid claims: token is not valid yet", "leeway_s": 60, "nodes": {"http://127.0.0.1:27880":
{"accepted": false, "status": 401, "reason": "..."}}}`` (tolerances ``{"type": "jsonpath",
"path": "$.accepted", "expect": true}``; every node refusing: ``{"type": "jsonpath", "path":
"$.accepted_by", "expect": 0}``).

``node_drained`` says whether a LiveKit node sent a stop signal (``stop_service`` or
``kill_service`` with SIGTERM, recorded in the fault ledger) drained and exited by itself
within ``within_s``: ``{"ok": false, "service": "livekit-1", "asked": true, "state": "exited",
"drain_s": 30.1, "within_s": 10, "exit_code": 137, "killed": true, "since_signal_s": 31.0}`` is
a node that was still draining when its grace period ran out; with no stop sent in the run,
``{"ok": true, "asked": false}``, so it holds before the fault.

Errors: Redis unreachable, missing API keys, or a missing snapshot raise ``ActivityFailed``
(nothing can be judged); a LiveKit node that does not answer gives ``ok: false`` and says so,
so that a tolerance decides.
"""

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any, List

import httpx
import redis
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets
from livekit import api

from lkchaos import roles
from lkchaos.docker.client import docker_session, runtime_containers
from lkchaos.errors import LkChaosError
from lkchaos.httpclient import shared_client
from lkchaos.livekit import client as lk
from lkchaos.livekit import state, tokens
from lkchaos.safety import ledger
from lkchaos.settings import Settings
from lkchaos.values import check_number, check_service_name, check_text

__all__ = [
    "nodes_health",
    "room_state",
    "snapshot_room_state",
    "compare_room_state",
    "roomservice_latency",
    "join_token_skew",
    "node_drained",
]

#: A process's exit code after SIGKILL (128 + 9), as Docker records it.
KILLED_EXIT_CODE = 137
SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def nodes_health(
    urls: List[str] = None,  # type: ignore[assignment]
    timeout: float = 2.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """GET ``/`` on each node's HTTP port (the configured nodes by default), each within
    ``timeout`` seconds: ``reason`` names each node not ready and why (``406 Not Ready``, no
    answer within the timeout, refused), empty when all are. A sampled readiness probe
    should wait as long as the deployment's load balancer does (the reference stack's Caddy:
    1 s): a busy node answering later than a shorter timeout is not a node that is down."""
    settings = Settings.load(configuration, secrets)
    nodes: dict[str, dict[str, Any]] = {}
    reasons: list[str] = []
    for url in urls or settings.livekit_node_urls:
        try:
            response = shared_client().get(url.rstrip("/") + "/", timeout=timeout)
            nodes[url] = {"status": response.status_code, "body": response.text.strip()}
            if response.status_code != 200:
                body = " ".join(nodes[url]["body"].split())[:80]
                reasons.append(f"{url}: {response.status_code} {body}".rstrip())
        except httpx.TimeoutException as exc:
            nodes[url] = {"status": 0, "body": f"{type(exc).__name__}: {exc}"}
            reasons.append(f"{url}: no answer within {timeout:g} s ({type(exc).__name__})")
        except httpx.HTTPError as exc:
            nodes[url] = {"status": 0, "body": f"{type(exc).__name__}: {exc}"}
            reasons.append(f"{url}: {type(exc).__name__}: {exc}")
    healthy = sum(1 for n in nodes.values() if n["status"] == 200)
    return {"ok": healthy == len(nodes) and healthy > 0, "healthy": healthy,
            "reason": "; ".join(reasons), "nodes": nodes}  # fmt: skip


def _observe(settings: Settings, urls: List[str], timeout: float) -> state.Observation:
    from lkchaos.livekit.keys import UnknownLiveKitVersion

    try:
        return state.observe(settings, urls or list(settings.livekit_node_urls), timeout)
    except UnknownLiveKitVersion as exc:
        raise ActivityFailed(str(exc)) from exc
    except (LkChaosError, redis.RedisError) as exc:
        through = ("the configured Sentinels (sentinel_addresses, redis_address_map)"
                   if settings.sentinel_addresses else "its address (the target's redis.direct)")
        raise ActivityFailed(
            f"cannot read LiveKit's room state: {exc}. Check that Redis answers through "
            f"{through}, with the password and TLS the target gives, and that the LiveKit API "
            "key and secret are set."
        ) from exc


def _counts(obs: state.Observation) -> dict[str, Any]:
    store = obs.store
    answers: dict[str, Any] = {}
    for url, seen in obs.apis.items():
        answers[url] = {"error": seen} if isinstance(seen, str) else {
            "rooms": len(seen.rooms),
            "participants": sum(len(p) for p in seen.participants.values()),
        }
    return {
        "livekit_version": store.version,
        "rooms": len(store.rooms),
        "participants": sum(len(store.participants.get(r, {})) for r in store.rooms),
        "nodes": len(store.nodes),
        "dispatches": sum(len(d) for d in store.dispatches.values()),
        "jobs": sum(len(j) for j in store.jobs.values()),
        "api": answers,
    }


#: Left by LiveKit 1.13.5 itself: deleting a room while an agent job runs in it leaves
#: ``agent_job:<room>`` behind for good (no TTL). Stale data, not a broken call: reported as a
#: warning unless ``strict_jobs`` asks for it to count.
LEAKED_BY_LIVEKIT = frozenset({"orphan_jobs"})


def room_state(
    urls: List[str] = None,  # type: ignore[assignment]
    wait: float = 5.0,
    timeout: float = 2.0,
    strict_jobs: bool = False,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """LiveKit's state in Redis checked against itself and against each node's RoomService.

    Re-reads until consistent or ``wait`` seconds passed (participant writes lag); each Redis
    and API request has ``timeout`` seconds. Returns ``ok``, counts and ``mismatches``.
    ``orphan_jobs`` (agent jobs of rooms that are gone, which LiveKit leaves when a room is
    deleted with an agent in it) are ``warnings`` unless ``strict_jobs`` is true.
    """
    settings = Settings.load(configuration, secrets)
    tolerated = frozenset() if strict_jobs else LEAKED_BY_LIVEKIT

    def counted(o: state.Observation) -> list[state.Mismatch]:
        return [m for m in o.mismatches if m.kind not in tolerated]

    obs, attempts, waited = state.settle(
        lambda: _observe(settings, urls, timeout), lambda o: not counted(o), wait
    )
    mismatches = counted(obs)
    leaked = [m for m in obs.mismatches if m.kind in tolerated]
    return {
        "ok": not mismatches,
        **_counts(obs),
        "mismatches": [m.as_dict() for m in mismatches],
        "warnings": [m.as_dict() for m in [*leaked, *obs.warnings]],
        "attempts": attempts,
        "waited_s": waited,
    }


def _snapshot_file(settings: Settings, name: str) -> Path:
    if not SNAPSHOT_NAME.fullmatch(name or ""):
        raise ActivityFailed(
            f"snapshot name {name!r} is not usable as a file name: use letters, digits, '.', "
            "'_' or '-' (for example \"baseline\")"
        )
    return Path(settings.run_dir) / "snapshots" / f"{name}.json"


def snapshot_room_state(
    name: str = "baseline",
    urls: List[str] = None,  # type: ignore[assignment]
    wait: float = 5.0,
    timeout: float = 2.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Save the rooms and participants in Redis (cross-checked with RoomService) as ``name``.

    Written to ``<state dir>/snapshots/<name>.json`` and returned with ``path`` and ``ok``
    (true when Redis and the API agreed: ``consistent``). ``rooms`` maps each room to its
    ``sid``, ``node``, ``participants`` (identity to sid) and ``agents`` (identity to sid).
    """
    settings = Settings.load(configuration, secrets)
    path = _snapshot_file(settings, name)
    obs, _, _ = state.settle(
        lambda: _observe(settings, urls, timeout), lambda o: not o.mismatches, wait
    )
    taken_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    snapshot = state.snapshot_of(obs, name, taken_at)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(snapshot, indent=2, sort_keys=True) + "\n")
        tmp.replace(path)
    except OSError as exc:
        raise ActivityFailed(
            f"cannot write the snapshot to {path}: {exc}. Check the state folder's permissions "
            "(LKCHAOS_STATE_DIR)."
        ) from exc
    return {**snapshot, "ok": snapshot["consistent"], "path": str(path)}


def _load_snapshot(path: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ActivityFailed(
            f"no room-state snapshot named {name!r} ({path}): run snapshot_room_state with "
            f"name={name!r} first, before the fault"
        ) from exc
    except (OSError, ValueError) as exc:
        raise ActivityFailed(
            f"cannot read the room-state snapshot {path}: {exc}. Take it again with "
            "snapshot_room_state."
        ) from exc
    if not isinstance(data, dict) or not isinstance(data.get("rooms"), dict):
        raise ActivityFailed(
            f"{path} is not a room-state snapshot: take it again with snapshot_room_state"
        )
    return data


def _check_min_participants(min_participants: Any) -> int:
    """``min_participants``: an int (not ``2.0``, not a boolean) of 0 or more."""
    if isinstance(min_participants, bool) or not isinstance(min_participants, int) or (
            min_participants < 0):  # fmt: skip
        raise ActivityFailed(f"min_participants must be a whole number of 0 or more (written "
                             f"without a decimal point), not {min_participants!r}")  # fmt: skip
    return min_participants


def compare_room_state(
    name: str = "baseline",
    ignore_rooms_prefix: str = None,  # type: ignore[assignment]
    urls: List[str] = None,  # type: ignore[assignment]
    wait: float = 10.0,
    timeout: float = 2.0,
    missing_ok: bool = False,
    min_participants: int = 0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Compare the rooms and participants now with the snapshot ``name``.

    With ``missing_ok`` a missing snapshot is not an error but ``{"ok": true, "compared":
    false}`` while no fault is pending in the fault ledger: so the comparison can stand in a
    steady-state hypothesis, which Chaos Toolkit also runs before the method takes the
    snapshot (the safety control clears the snapshots of earlier runs when an experiment
    starts). Once a fault is pending (after the method), a missing snapshot means the
    comparison cannot compare, and that is ``ok`` false, never a pass.

    ``min_participants``: the snapshot must hold at least that many participants (outside
    ``ignore_rooms_prefix`` rooms, agents not counted), or ``ok`` is false with
    ``compared`` false: "nothing lost" proves nothing about a room nobody was in. Use it with
    ``lkchaos.livekit.actions.hold_participants``.

    ``ok`` is false when a room, a participant (by identity) or an agent (by count per room)
    was lost; re-reads until nothing is lost or ``wait`` seconds passed, so participants may
    reconnect. Also lists ``new_rooms``, ``new_participants``, ``recreated_rooms`` (new
    sid), ``rejoined_participants`` (new sid), ``moved_rooms`` (other node) and the current
    Redis/API ``mismatches``. Rooms named with ``ignore_rooms_prefix`` are left out.
    """
    _check_min_participants(min_participants)
    settings = Settings.load(configuration, secrets)
    path = _snapshot_file(settings, name)
    if missing_ok and not path.is_file():
        from lkchaos.safety import ledger

        pending = [f.describe() for f in ledger.pending(settings.state_dir)]
        if not pending:
            return {"ok": True, "compared": False, "snapshot": name,
                    "note": "no snapshot yet: nothing to compare"}
        return {"ok": False, "compared": False, "snapshot": name,
                "note": f"no snapshot {name!r} although faults are pending ({', '.join(pending)}"
                        "): the method never took it, so nothing was compared"}  # fmt: skip
    before = _load_snapshot(path, name)
    held = sum(len(r.get("participants", {})) for k, r in before["rooms"].items()
               if not (ignore_rooms_prefix and k.startswith(ignore_rooms_prefix)))
    if held < min_participants:
        return {"ok": False, "compared": False, "snapshot": name,
                "note": f"the snapshot holds {held} participants, fewer than min_participants "
                        f"({min_participants}): nothing that could be lost was there to compare"}

    def diff(obs: state.Observation) -> dict[str, Any]:
        now = state.snapshot_of(obs, name, "")
        return state.diff_snapshots(before, now, ignore_rooms_prefix or None)

    obs, attempts, waited = state.settle(
        lambda: _observe(settings, urls, timeout), lambda o: bool(diff(o)["ok"]), wait
    )
    result = diff(obs)
    counted = _counts(obs)
    return {
        **result,
        "compared": True,
        "snapshot": name,
        "taken_at": before.get("taken_at"),
        "rooms": counted["rooms"],
        "participants": counted["participants"],
        "mismatches": [m.as_dict() for m in obs.mismatches],
        "attempts": attempts,
        "waited_s": waited,
    }


def roomservice_latency(
    urls: List[str] = None,  # type: ignore[assignment]
    timeout: float = 2.0,
    max_ms: float = None,  # type: ignore[assignment]
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Time one ListRooms round trip (with connection set-up) on each node, in milliseconds.

    Returns ``{"ok", "slowest_ms", "max_ms", "nodes": {url: {"ms", "rooms", "error"}}}``;
    ``ok`` is false when a node did not answer within ``timeout`` seconds or, with ``max_ms``,
    was slower than that. Missing API keys raise ``ActivityFailed``.
    """
    settings = Settings.load(configuration, secrets)

    async def timed(c: api.LiveKitAPI) -> tuple[float, int]:
        start = time.perf_counter()
        answer = await c.room.list_rooms(api.ListRoomsRequest())
        return (time.perf_counter() - start) * 1000, len(answer.rooms)

    nodes: dict[str, dict[str, Any]] = {}
    for url in urls or settings.livekit_node_urls:
        try:
            ms, rooms = lk.call(url, settings, timed, timeout)
            nodes[url] = {"ms": round(ms, 1), "rooms": rooms, "error": None}
        except state.API_ERRORS as exc:
            nodes[url] = {"ms": None, "rooms": None, "error": f"{type(exc).__name__}: {exc}"}
        except LkChaosError as exc:
            raise ActivityFailed(f"cannot call RoomService at {url}: {exc}") from exc
    times = [n["ms"] for n in nodes.values() if n["ms"] is not None]
    slowest = max(times) if times else None
    answered = bool(nodes) and len(times) == len(nodes)
    fast = max_ms is None or (slowest is not None and slowest <= max_ms)
    return {"ok": answered and fast, "slowest_ms": slowest, "max_ms": max_ms, "nodes": nodes}


def _check_skew(skew_s: Any, node: Any, ttl_s: Any, timeout: Any) -> None:
    """The arguments of ``join_token_skew``, as its preflight checks them."""
    limit = tokens.MAX_SKEW_S
    check_number("skew_s", skew_s, "seconds", minimum=-limit, maximum=limit)
    if node is not None:
        check_number("node", node, "node index (0 is the first of livekit_node_urls)",
                     whole=True)  # fmt: skip
    check_number("ttl_s", ttl_s, "seconds", minimum=1, maximum=limit, whole=True)
    check_number("timeout", timeout, "seconds", strict=True)


def join_token_skew(
    skew_s: float = 0.0,
    node: int = None,  # type: ignore[assignment]
    ttl_s: int = 600,
    room: str = "lkchaos-clock-skew",
    timeout: float = 5.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Mint a join token for ``room`` (valid ``ttl_s`` seconds) as an issuer whose clock is
    ``skew_s`` seconds ahead of the nodes' (negative: behind), and ask every node (or node
    ``node``, an index into livekit_node_urls) whether it accepts it, with LiveKit's own
    ``/rtc/validate``. ``accepted`` is true when every node asked accepts it;
    ``accepted_by`` counts those that do; ``status`` and ``reason`` are the first refusal's
    (200 and ``success`` when none refused).

    LiveKit allows one minute of leeway on ``nbf`` and ``exp`` (livekit/protocol
    ``auth/verifier.go``, ``tokenLeeway = time.Minute``) and does not check ``iat``: ahead by
    up to 60 s is accepted, ahead by more is refused; behind is accepted while
    ``-skew_s < ttl_s + 60``. No room is created and nobody joins."""
    _check_skew(skew_s, node, ttl_s, timeout)
    check_text("room", room)
    settings = Settings.load(configuration, secrets)
    urls = list(settings.livekit_node_urls)
    if node is not None:
        if not 0 <= int(node) < len(urls):
            raise ActivityFailed(f"node must be from 0 to {len(urls) - 1}: livekit_node_urls "
                                 f"has {len(urls)} nodes ({', '.join(urls)})")  # fmt: skip
        urls = [urls[int(node)]]
    try:
        token = tokens.skewed_token(settings, float(skew_s), "lkchaos-clock-skew", room,
                                    int(ttl_s))  # fmt: skip
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    verdicts: dict[str, tokens.Verdict] = {}
    for url in urls:
        try:
            verdicts[url] = tokens.validate(url, token, timeout)
        except tokens.NoVerdict as exc:
            raise ActivityFailed(str(exc)) from exc
        except httpx.HTTPError as exc:
            raise ActivityFailed(
                f"LiveKit at {url} did not answer /rtc/validate ({type(exc).__name__}: "
                f"{exc}): nothing can be said of the token; check it with nodes_health"
            ) from exc
    refused = [v for v in verdicts.values() if not v.accepted]
    first = refused[0] if refused else tokens.Verdict(True, 200, "success")
    return {"skew_s": skew_s, "accepted": not refused and bool(verdicts),
            "accepted_by": len(verdicts) - len(refused), "status": first.status,
            "reason": first.reason, "leeway_s": tokens.LEEWAY_S,
            "nodes": {url: {"accepted": v.accepted, "status": v.status, "reason": v.reason}
                      for url, v in verdicts.items()}}


def _drain_state(settings: Settings, name: str,
                 asked: dt.datetime) -> tuple[str, float | None, int | None]:  # fmt: skip
    """``draining`` while the process that got the signal still runs, else ``exited`` (or
    ``restarted``: running again, started after the signal); the seconds from the signal to
    that process's exit (Docker's ``FinishedAt``), or None; and its exit code while the
    container has not run again, or None."""
    with docker_session() as docker:
        container = runtime_containers(docker, settings)[name]
        container.reload()
    seen = container.attrs.get("State", {})
    finished = _docker_time(seen.get("FinishedAt"))
    drain_s = round((finished - asked).total_seconds(), 1) if finished > asked else None
    if seen.get("Status") not in ("running", "paused"):
        return "exited", drain_s, int(seen.get("ExitCode") or 0)
    if _docker_time(seen.get("StartedAt")) > asked:
        return "restarted", drain_s, None
    return "draining", None, None


def _docker_time(value: Any) -> dt.datetime:
    """Docker's ``2026-11-30T07:13:45.123456789Z`` (nanoseconds, UTC) as a datetime; its
    zero time (``0001-01-01T00:00:00Z``, never) as the earliest."""
    text = str(value or "0001-01-01T00:00:00Z").removesuffix("Z")
    whole, _, fraction = text.partition(".")
    return dt.datetime.fromisoformat(f"{whole}.{(fraction + '000000')[:6]}+00:00")


def _signal_time(settings: Settings, name: str,
                 pending: dt.datetime | None) -> dt.datetime | None:  # fmt: skip
    """The time of the stop signal: the ledger's entry while it is pending, noted in the
    state folder's snapshots (cleared when a run starts) so that it is still known once
    ``start_service`` has forgotten the entry; None when this run sent none."""
    path = Path(settings.run_dir) / "snapshots" / f"drain-{name}.json"
    try:
        if pending is not None:
            noted = json.loads(path.read_text()) if path.is_file() else {}
            if noted.get("signalled_at") != pending.isoformat():  # a new signal: a new note
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps({"signalled_at": pending.isoformat()}) + "\n")
            return pending
        if not path.is_file():
            return None
        return dt.datetime.fromisoformat(json.loads(path.read_text())["signalled_at"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ActivityFailed(f"cannot note or read when {name} was signalled ({path}): {exc}. "
                             "Check the state folder (LKCHAOS_STATE_DIR)") from exc


def node_drained(
    service: str = "livekit_node:1",
    within_s: float = 60.0,
    wait_s: float = 30.0,
    configuration: Configuration = None,
    secrets: Secrets = None,
) -> dict[str, Any]:
    """Whether the LiveKit node ``service`` (a role such as ``livekit_node:1``, or a runtime
    name), sent a stop signal that the fault ledger still holds (``kill_service`` records
    one before signalling), exited within ``within_s`` seconds of the signal, waiting up to
    ``wait_s`` seconds for it to exit. Returns ``state`` (``draining``: the signalled process
    still runs; ``exited``; ``restarted``), ``drain_s`` (signal to exit, from Docker's
    ``FinishedAt``), ``exit_code`` and ``killed`` (137: the grace period of ``stop_service``
    ran out and the runtime sent SIGKILL) and ``ok``. ``ok`` false is a node stuck draining,
    killed at the end of its grace period, or whose drain took longer than ``within_s``
    (LiveKit waits for its participants to leave, then deregisters from Redis, before it
    exits). The signal's time is noted on the first call
    that sees it, with the exit code once it has exited, so a later call still judges the
    drain once ``start_service`` has started the node again; a restart whose exit no call saw
    is not ok (its exit code is gone, and a SIGKILL would pass for a drain). With no stop
    sent in this run, ``ok`` true and ``asked`` false: the probe holds before the fault."""
    check_service_name("service", service)
    check_number("within_s", within_s, "seconds")
    check_number("wait_s", wait_s, "seconds")
    settings = Settings.load(configuration, secrets)
    name = roles.resolve_one(settings, service)
    try:
        asked = [dt.datetime.fromisoformat(f.at) for f in ledger.pending(settings.state_dir)
                 if f.kind == "stopped" and f.target == name]  # fmt: skip
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    asked_at = _signal_time(settings, name, asked[-1] if asked else None)
    if asked_at is None:
        return {"ok": True, "service": name, "asked": False}
    deadline = time.monotonic() + float(wait_s)
    try:
        while (seen := _drain_state(settings, name, asked_at))[0] == "draining" and (
                time.monotonic() < deadline):  # fmt: skip
            time.sleep(0.5)
    except (LkChaosError, KeyError, ValueError) as exc:
        raise ActivityFailed(f"cannot tell whether {name} exited: {exc}") from exc
    state_now, drain_s, exit_code = seen
    if state_now == "exited":
        _note_exit(settings, name, asked_at, exit_code)
    elif state_now == "restarted":
        # The exit code is gone once the container runs again: the one noted when this
        # probe first saw it exited, or unknown (then the drain is not taken as clean).
        exit_code = _noted_exit(settings, name)
    killed = exit_code == KILLED_EXIT_CODE
    since = dt.datetime.now(dt.UTC) - asked_at
    clean = drain_s is not None and drain_s <= within_s and not killed and exit_code is not None
    return {"ok": clean, "service": name,
            "asked": True, "state": state_now, "drain_s": drain_s, "within_s": within_s,
            "exit_code": exit_code, "killed": killed,
            "since_signal_s": round(since.total_seconds(), 1)}


def _note_exit(settings: Settings, name: str, asked: dt.datetime, exit_code: int | None) -> None:
    """Keep the signalled process's exit code beside the signal's time (see
    :func:`_signal_time`), for a call that sees the node only after it ran again."""
    path = Path(settings.run_dir) / "snapshots" / f"drain-{name}.json"
    try:
        path.write_text(json.dumps({"signalled_at": asked.isoformat(),
                                    "exit_code": exit_code}) + "\n")
    except OSError as exc:
        raise ActivityFailed(f"cannot note how {name} exited ({path}): {exc}. Check the "
                             "state folder (LKCHAOS_STATE_DIR)") from exc


def _noted_exit(settings: Settings, name: str) -> int | None:
    path = Path(settings.run_dir) / "snapshots" / f"drain-{name}.json"
    try:
        code = json.loads(path.read_text()).get("exit_code")
    except (OSError, ValueError, AttributeError):
        return None
    return int(code) if isinstance(code, int) else None
