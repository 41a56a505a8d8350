"""Probes on Redis and Sentinel, reached through the configured Sentinels (or directly, for
``replication``, when the target's Redis has no Sentinel), with the target's AUTH and TLS.

``sentinel_master`` returns::

    {"ok": false, "master": "redis-primary:6379", "masters": ["redis-primary:6379"],
     "agree": true, "sentinels": 3, "sentinels_down": [], "sentinel_peers_down": [],
     "replicas": 0, "replicas_known": 1,
     "replicas_down": ["172.18.0.5:6379 s_down,disconnected"],
     "reason": "1 replica known, 0 up: 172.18.0.5:6379 s_down,disconnected"}

``ok`` means at least two Sentinels answered, they name the same master, Sentinel does not
see that master down, and at least one replica is up and in sync as Sentinel sees it
(``SENTINEL REPLICAS``: not flagged ``s_down``, ``o_down`` or ``disconnected``, reporting the
replica role, its link to the master ``ok``). ``replicas`` counts those; ``replicas_known``
every replica Sentinel knows of, up or down; ``replicas_down`` names the others and why.
``sentinels`` counts the Sentinels that answered, ``sentinels_down`` names the configured ones
that did not, ``sentinel_peers_down`` the Sentinels the first one that answered sees down or
disconnected (``SENTINEL SENTINELS``; addresses as announced). ``reason`` says why ``ok`` is
false ("" when true). Tolerance example:
``{"type": "jsonpath", "path": "$.ok", "expect": true}``.
``replication`` returns the primary's ``INFO replication`` as a dict (``role``,
``connected_slaves``, ...).

``remember_primary`` notes the primary Sentinel names and its ``config-epoch`` (which every
failover raises) in ``<state dir>/snapshots/redis-primary-<name>.json``; ``primary_kept``
later returns ``{"ok": true, "master_before": ..., "master_now": ..., "epoch_before": 3,
"epoch_now": 3}``, ``ok`` false when the primary or the epoch changed since: a failover
happened. Remember in the method before the fault, check in the hypothesis with
``missing_ok`` (the safety control clears earlier runs' snapshots). Tolerance:
``{"type": "jsonpath", "path": "$.ok", "expect": true}``.
"""

import json
import re
from pathlib import Path
from typing import Any

import redis
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import LkChaosError
from lkchaos.redis import client
from lkchaos.settings import Settings, join_host_port

__all__ = ["sentinel_master", "replication", "remember_primary", "primary_kept"]

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def sentinel_master(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Which master the Sentinels name, whether they agree, how many of its replicas are up
    and in sync (the shape in this module's docstring). ActivityFailed when the target's
    Redis has no Sentinel, or when no Sentinel answered and one refused the password."""
    settings = Settings.load(configuration, secrets)
    if not settings.sentinel_addresses:
        raise ActivityFailed("sentinel_master needs Redis Sentinel, and the target's Redis is "
                             "direct: use the replication probe instead")  # fmt: skip
    try:
        return assess(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def assess(settings: Settings, timeout: float = client.TIMEOUT) -> dict[str, Any]:
    """What ``sentinel_master`` returns, from every configured Sentinel (each call bounded by
    ``timeout``). The replicas and the other Sentinels are as the first Sentinel that
    answered sees them. Raises :class:`~lkchaos.redis.client.RedisAuthError` when no
    Sentinel answered and one refused the password."""
    answers = client.ask_sentinels(settings, timeout, views=True)
    masters = sorted({join_host_port(a.host, a.port) for a in answers})
    answered = {a.sentinel for a in answers}
    silent = [a for a in settings.sentinel_addresses if a not in answered]
    first = answers[0] if answers else None
    replicas = list(first.replicas or ()) if first else []
    up = [r for r in replicas if r.up]
    down = [r.described() for r in replicas if not r.up]
    peers_down = [p.described() for p in (first.peers or ()) if not p.up] if first else []
    master_down = ([f for f in first.flags.split(",") if f in client.DOWN_FLAGS]
                   if first else [])  # fmt: skip
    # Replicas not listed: the Sentinel's count of every replica it knows of, up or down.
    known = (len(replicas) if first.replicas is not None else first.num_slaves) if first else 0
    problems = []
    if not answers:
        problems.append(f"no Sentinel answered ({', '.join(silent)})")
    elif len(answers) < 2:
        problems.append(f"{_plural(len(answers), 'Sentinel')} answered, at least 2 needed"
                        + (f" ({', '.join(silent)} did not)" if silent else ""))  # fmt: skip
    if len(masters) > 1:
        problems.append(f"the Sentinels name different masters: {', '.join(masters)}")
    if first and master_down:
        problems.append(f"Sentinel {first.sentinel} sees the master "
                        f"{join_host_port(first.host, first.port)} {','.join(master_down)}")
    if first and first.replicas is None:
        problems.append(f"Sentinel {first.sentinel} did not list the replicas "
                        f"({first.view_problem or 'no answer'})")  # fmt: skip
    elif first and not up:
        problems.append(f"{_plural(known, 'replica')} known, 0 up"
                        + (f": {'; '.join(down)}" if down else ""))  # fmt: skip
    return {
        "ok": not problems,
        "master": masters[0] if len(masters) == 1 else None,
        "masters": masters,
        "agree": len(masters) == 1,
        "sentinels": len(answers),
        "sentinels_down": silent,
        "sentinel_peers_down": peers_down,
        "replicas": len(up),
        "replicas_known": known,
        "replicas_down": down,
        "reason": "; ".join(problems),
    }


def replication(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """``INFO replication`` of the current primary (found through Sentinel, or direct)."""
    settings = Settings.load(configuration, secrets)
    try:
        with client.primary(settings, decode=True) as primary:
            info: dict[str, Any] = primary.info("replication")
    except (LkChaosError, redis.RedisError) as exc:
        raise ActivityFailed(
            f"cannot read replication info from the Redis primary: {exc}. Check the target's "
            "redis section (Sentinel addresses and address_map, or the direct primary), its "
            "password and TLS settings."
        ) from exc
    return info


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ActivityFailed(f"name must be letters, digits, '.', '_' or '-' (not first), at "
                             f"most 100, not {name!r}")  # fmt: skip
    return name


def _epoch(settings: Settings) -> tuple[str, int]:
    """The primary at the highest config-epoch any Sentinel reports, and that epoch: a
    Sentinel that has not heard of a failover yet still names the old primary at the old
    epoch, so the first answer alone could hide one."""
    if not settings.sentinel_addresses:
        raise ActivityFailed("remember_primary and primary_kept need Redis Sentinel, and the "
                             "target's Redis is direct (it never fails over)")  # fmt: skip
    access = client.Access.of(settings)
    problems = []
    seen: list[tuple[int, str]] = []
    for address in settings.sentinel_addresses:
        try:
            with client.sentinel(address, access) as sentinel:
                info: dict[str, Any] = sentinel.sentinel_master(  # type: ignore[assignment]
                    settings.sentinel_master)
            master = join_host_port(str(info["ip"]), int(info["port"]))
            seen.append((int(info["config-epoch"]), master))
        except client.RedisAuthError as exc:
            raise ActivityFailed(str(exc)) from exc
        except (redis.RedisError, LkChaosError, KeyError, ValueError) as exc:
            problems.append(f"{address}: {exc}")
    if seen:
        epoch, master = max(seen)
        return master, epoch
    raise ActivityFailed(f"no Sentinel named the primary of {settings.sentinel_master!r} "
                         f"({'; '.join(problems)}): is Redis Sentinel up?")  # fmt: skip


def _snapshot(settings: Settings, name: str) -> Path:
    return Path(settings.run_dir) / "snapshots" / f"redis-primary-{name}.json"


def remember_primary(name: str = "primary", configuration: Configuration = None,
                     secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Note the primary Sentinel names now and its config-epoch, for ``primary_kept``."""
    _check_name(name)
    settings = Settings.load(configuration, secrets)
    master, epoch = _epoch(settings)
    path = _snapshot(settings, name)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"master": master, "epoch": epoch}) + "\n")
    except OSError as exc:
        raise ActivityFailed(f"cannot write {path}: {exc}. Check the state folder's "
                             "permissions (LKCHAOS_STATE_DIR)") from exc  # fmt: skip
    return {"master": master, "epoch": epoch, "path": str(path)}


def primary_kept(name: str = "primary", missing_ok: bool = False,
                 configuration: Configuration = None,
                 secrets: Secrets = None) -> dict[str, Any]:  # fmt: skip
    """Whether Sentinel names the same primary, at the same config-epoch, as when
    ``remember_primary`` ran: ``ok`` false means a failover happened in between. With
    ``missing_ok``, nothing remembered yet is ``{"ok": true, "compared": false}``."""
    _check_name(name)
    settings = Settings.load(configuration, secrets)
    path = _snapshot(settings, name)
    if missing_ok and not path.is_file():
        return {"ok": True, "compared": False}
    try:
        before = json.loads(path.read_text())
        master_before, epoch_before = str(before["master"]), int(before["epoch"])
    except FileNotFoundError as exc:
        raise ActivityFailed(f"nothing remembered as {name!r} ({path}): run remember_primary "
                             f"with name={name!r} before the fault") from exc  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ActivityFailed(f"cannot read {path}: {exc}. Run remember_primary again") from exc
    master, epoch = _epoch(settings)
    return {"ok": master == master_before and epoch == epoch_before, "compared": True,
            "master_before": master_before, "master_now": master,
            "epoch_before": epoch_before, "epoch_now": epoch}
