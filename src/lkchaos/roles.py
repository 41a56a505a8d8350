"""Roles: how experiments name the deployment's components, whatever the user calls them.

Every activity argument that names a component (``service``, ``one_of``, ``peers``,
``services``) takes one of:

- a role (:data:`ROLES`, e.g. ``agent_worker``, ``redis_primary``, ``livekit_node``): every
  runtime name the target maps to it (``roles.agent_worker: voice-agent``);
- a role and a position, ``livekit_node:2``: the second of the role's runtime names, in the
  order the target lists them (1-based), e.g. the second LiveKit node;
- a runtime name (a compose service, container name or label value, as the target's
  ``runtime`` says), used as it is.

The shipped catalogue names roles only, so it runs on any target that maps them; a role the
target does not map, or a position past its last member, is refused with what to add to the
target file. The mapping comes from :attr:`lkchaos.settings.Settings.roles` (the target in
use, else the reference stack's roles).
"""

from __future__ import annotations

import re

from chaoslib.exceptions import ActivityFailed

from lkchaos.settings import Settings
from lkchaos.target.model import ROLES

__all__ = ["ROLES", "harness", "is_reference", "parse", "resolve", "resolve_one", "role_of",
           "targets"]
#: Roles that are lkchaos's own test harness on a target, never a fault's target.
HARNESS_ROLES = ("voice_prober",)

_POSITION = re.compile(r"(?P<role>[a-z_]+):(?P<n>[0-9]{1,3})")


def parse(value: str) -> tuple[str, int | None] | None:
    """``(role, position)`` for ``role`` or ``role:N`` (position 1-based, None for the whole
    role); None when ``value`` is not a role reference (a runtime name)."""
    if value in ROLES:
        return value, None
    found = _POSITION.fullmatch(value)
    if found and found["role"] in ROLES:
        return found["role"], int(found["n"])
    return None


def is_reference(value: object) -> bool:
    """Whether ``value`` names a role (``agent_worker``) or a role's member (``livekit_node:2``)."""
    return isinstance(value, str) and parse(value) is not None


def resolve(settings: Settings, value: str, label: str = "service") -> list[str]:
    """The runtime names ``value`` stands for: a role's members, one member, or ``[value]``.

    Raises ActivityFailed when the target maps no such role, or has fewer members than the
    position asks for, saying what to add to the target file."""
    parsed = parse(value)
    if parsed is None:
        return [value]
    role, position = parsed
    members = list(settings.roles.get(role, ()))
    if not members:
        raise ActivityFailed(
            f"{label} {value!r}: the target maps no {role}; add `roles: {{{role}: NAME}}` to "
            "the target file (see `lkchaos target show` and docs/targets.md)"
        )
    if position is None:
        return members
    if not 1 <= position <= len(members):
        raise ActivityFailed(
            f"{label} {value!r}: the target has {len(members)} {role} "
            f"({', '.join(members)}), so {role}:{position} does not exist"
        )
    return [members[position - 1]]


def resolve_one(settings: Settings, value: str, label: str = "service") -> str:
    """The one runtime name ``value`` stands for; a role with several members is refused,
    naming the positions to choose from (unless ``value`` is also one of those members' own
    runtime name: then it is that container)."""
    names = resolve(settings, value, label)
    if len(names) != 1 and value in names:
        # A runtime name that is also the name of a role it plays (a container called
        # "sentinel" among roles.sentinel): that one container, as a fault's undo needs.
        return value
    if len(names) != 1:
        role = value
        choices = ", ".join(f"{role}:{i}" for i in range(1, len(names) + 1))
        raise ActivityFailed(
            f"{label} {value!r} stands for {len(names)} components ({', '.join(names)}): "
            f"name one of {choices}"
        )
    return names[0]


def targets(settings: Settings, values: list[str], label: str = "service",
            single: bool = False) -> list[str]:  # fmt: skip
    """The runtime names ``values`` stand for, in order and each once, none of them lkchaos's
    test harness: what a fault may act on. ``single``: each value must stand for one
    container (:func:`resolve_one`), as a rollback undoing one fault needs. Raises
    ActivityFailed saying which value is wrong."""
    names: list[str] = []
    for value in values:
        found = [resolve_one(settings, value, label)] if single else resolve(settings, value,
                                                                             label)  # fmt: skip
        names += [name for name in found if name not in names]
    own = harness(settings)
    for name in names:
        if name in own:
            raise ActivityFailed(f"{name!r} is lkchaos's own test harness, not a target")
    return names


def harness(settings: Settings) -> frozenset[str]:
    """Runtime names of lkchaos's own test harness on the target (never a fault's target)."""
    return frozenset(name for role in HARNESS_ROLES for name in settings.roles.get(role, ()))


def role_of(settings: Settings, name: str) -> str | None:
    """The role a runtime name plays on the target, or None."""
    for role, members in settings.roles.items():
        if name in members:
            return role
    return None


def did_you_mean(name: str) -> str:
    """`` (did you mean the role agent_worker?)`` when ``name`` is a role misspelt (it was
    then read as a runtime name), else ``""``."""
    import difflib

    from lkchaos.target.model import ROLES

    close = difflib.get_close_matches(name, ROLES, n=1, cutoff=0.75)
    return f" (did you mean the role {close[0]}?)" if close else ""
