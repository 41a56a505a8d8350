"""The selected target as the layer :meth:`lkchaos.settings.Settings.load` reads below the
experiment's configuration and the environment.

:func:`selected` says which target is in use (:func:`lkchaos.target.select.select_target`),
or None when none can be selected: an installed package outside a checkout, or the prober's
image. :func:`layer` reads it: a parsed file is kept per (path, modification time, size), so
the many loads of one run read its YAML once. A target that is missing or invalid is a
:class:`ConfigError` naming the file and every problem. Secrets are resolved by
:func:`api_keys` when no other layer gives the keys; a reference that does not resolve is
reported by ``Settings.require_keys``, never when loading, and its value is never shown.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lkchaos.errors import ConfigError
from lkchaos.target import secrets
from lkchaos.target.convert import settings_values
from lkchaos.target.load import LoadedTarget, check_target
from lkchaos.target.select import Selection
from lkchaos.yamlcheck import Problem

#: path -> ((mtime_ns, size), the target or None, its problems).
_parsed: dict[Path, tuple[tuple[int, int], LoadedTarget | None, list[Problem]]] = {}


def load_cached(selection: Selection) -> LoadedTarget:
    """The selected target, parsed again only when its file changed; a ConfigError naming the
    file and its problems when it is missing or invalid."""
    path = selection.path
    try:
        stat = path.stat()
    except OSError as exc:
        raise ConfigError(f"target {selection.describe()} cannot be read ({exc.strerror}): "
                          "check the path (see docs/targets.md)") from None  # fmt: skip
    stamp = (stat.st_mtime_ns, stat.st_size)
    found = _parsed.get(path)
    if found is None or found[0] != stamp:
        loaded, problems = check_target(path)
        found = (stamp, loaded, problems)
        _parsed[path] = found
    _, loaded, problems = found
    if loaded is None:
        listed = "\n".join(f"  {problem}" for problem in problems)
        raise ConfigError(f"target {selection.describe()} is invalid:\n{listed}")
    return loaded


def layer(selection: Selection, state: Path) -> tuple[dict[str, Any], LoadedTarget]:
    """The Settings values of the selected target (without its secrets) and the target."""
    loaded = load_cached(selection)
    return settings_values(loaded, resolve_secrets=False, state=state), loaded


def api_keys(loaded: LoadedTarget, state: Path,
             environ: Mapping[str, str] | None = None) -> tuple[str, str, str]:  # fmt: skip
    """The target's API key and secret (``""`` where one does not resolve) and why not
    (``""`` when both resolve). The reason names the reference, never a value."""
    values: list[str] = []
    reasons: list[str] = []
    for ref in (loaded.target.livekit.api_key, loaded.target.livekit.api_secret):
        try:
            values.append(secrets.resolve(ref, loaded.folder, state=state, environ=environ))
        except secrets.SecretUnavailable as exc:
            values.append("")
            reasons.append(str(exc))
    return values[0], values[1], "; ".join(reasons)


def redis_secret(loaded: LoadedTarget, state: Path, environ: Mapping[str, str] | None = None,
                 *, sentinel: bool = False) -> tuple[str, str, str]:  # fmt: skip
    """The target's Redis password (``password_ref``; with ``sentinel``, the Sentinels' own
    ``sentinel_password_ref``): its value (``""`` without a reference, or when it does not
    resolve), why not, and where it is (``the target's redis.direct.password_ref (env
    NAME)``). The reason and the place name the reference, never a value."""
    redis = loaded.target.redis
    mode = "sentinel" if redis.sentinel is not None else "direct"
    found = redis.sentinel or redis.direct
    key = "sentinel_password_ref" if sentinel else "password_ref"
    ref = getattr(found, key, None) if found is not None else None
    if ref is None:
        return "", "", ""
    where = f"the target's redis.{mode}.{key} ({ref.describe()})"
    try:
        return secrets.resolve(ref, loaded.folder, state=state, environ=environ), "", where
    except secrets.SecretUnavailable as exc:
        return "", str(exc), where

