"""Probes on Redis and Sentinel, reached through the configured Sentinels (or directly, for
``replication``, when the target's Redis has no Sentinel), with the target's AUTH and TLS.

``sentinel_master`` returns::

    {"ok": true, "master": "redis-primary:6379", "agree": true, "sentinels": 3,
     "replicas": 1}

``ok`` means at least two Sentinels answered, they name the same master, and it has at least
one replica. Tolerance example: ``{"type": "jsonpath", "path": "$.ok", "expect": true}``.
``replication`` returns the primary's ``INFO replication`` as a dict (``role``,
``connected_slaves``, ...).
"""

from typing import Any

import redis
from chaoslib.exceptions import ActivityFailed
from chaoslib.types import Configuration, Secrets

from lkchaos.errors import LkChaosError
from lkchaos.redis import client
from lkchaos.settings import Settings

__all__ = ["sentinel_master", "replication"]


def sentinel_master(configuration: Configuration = None, secrets: Secrets = None) -> dict[str, Any]:
    """Which master the Sentinels name, whether they agree, how many replicas it has."""
    settings = Settings.load(configuration, secrets)
    if not settings.sentinel_addresses:
        raise ActivityFailed("sentinel_master needs Redis Sentinel, and the target's Redis is "
                             "direct: use the replication probe instead")  # fmt: skip
    try:
        answers = client.ask_sentinels(settings)
    except LkChaosError as exc:
        raise ActivityFailed(str(exc)) from exc
    masters = sorted({f"{a.host}:{a.port}" for a in answers})
    replicas = answers[0].num_slaves if answers else 0
    return {
        "ok": len(answers) >= 2 and len(masters) == 1 and replicas >= 1,
        "master": masters[0] if len(masters) == 1 else None,
        "masters": masters,
        "agree": len(masters) == 1,
        "sentinels": len(answers),
        "replicas": replicas,
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
