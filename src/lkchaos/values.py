"""Pure checks of argument values, shared by the activities and ``lkchaos.preflight``.

Each check returns the value it accepted (normalised where said) or raises Chaos Toolkit's
``ActivityFailed`` with a message that starts with the argument's label and says what would
be valid. None of them touches the deployment.
"""

from __future__ import annotations

import math
import re
from typing import Any

from chaoslib.exceptions import ActivityFailed

#: A compose service name (Compose's own rule): no leading '-', no shell metacharacters.
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")
#: A role's member, ``livekit_node:2`` (lkchaos.roles checks the role).
_MEMBER = re.compile(r"[a-z_]{1,40}:[0-9]{1,3}")
#: One DNS label (RFC 1123): letters, digits and inner hyphens, at most 63 characters.
_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
#: Control characters (NUL, newline, carriage return, escape, ...).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_text(label: str, value: Any, *, option_safe: bool = False) -> str:
    """A non-empty string without control characters (NUL, newlines); with ``option_safe``,
    one that cannot be read as a command-line option either (no leading '-')."""
    if not isinstance(value, str) or not value:
        raise ActivityFailed(f"{label} must be a non-empty string, not {value!r}")
    if _CONTROL.search(value):
        raise ActivityFailed(
            f"{label} must not hold control characters (NUL, newline, ...), not {value!r}"
        )
    if option_safe and value.startswith("-"):
        raise ActivityFailed(f"{label} must not start with '-' (read as an option), not {value!r}")
    return value


def check_service_name(label: str, value: Any) -> str:
    """A component's name: a role (``agent_worker``), a role's member (``livekit_node:2``), or
    a runtime name (letters, digits, '_', '.', '-', not starting with '-' or '.'); see
    :mod:`lkchaos.roles`."""
    if isinstance(value, str) and _MEMBER.fullmatch(value):
        return _check_member(label, value)
    if isinstance(value, str) and _SERVICE.fullmatch(value):
        return value
    raise ActivityFailed(
        f"{label} must name a role (agent_worker, livekit_node:2, ...) or a service (letters, "
        f"digits, '_', '.' and '-', starting with a letter or digit), not {value!r}"
    )


def _check_member(label: str, value: str) -> str:
    """``role:N``: a known role and a position from 1."""
    import difflib

    from lkchaos.target.model import ROLES

    role, _, position = value.partition(":")
    if role not in ROLES:
        close = difflib.get_close_matches(role, ROLES, n=1)
        hint = f" (did you mean {close[0]}:{position}?)" if close else ""
        raise ActivityFailed(f"{label} {value!r} names an unknown role {role!r}{hint}; roles: "
                             f"{', '.join(ROLES)}")  # fmt: skip
    if int(position) < 1:
        raise ActivityFailed(f"{label} {value!r}: positions start at 1 ({role}:1 is the first "
                             "in the order the target lists them)")  # fmt: skip
    return value


def check_dns_name(label: str, value: Any) -> str:
    """A host name (RFC 1123: dot-separated labels of letters, digits and inner hyphens, at
    most 253 characters, no trailing dot), lower-cased."""
    ok = isinstance(value, str) and 0 < len(value) <= 253
    if ok and all(_LABEL.fullmatch(part) for part in str(value).split(".")):
        return str(value).lower()
    raise ActivityFailed(
        f"{label} must be a host name such as lk.chaos.test (labels of letters, digits and "
        f"inner hyphens, separated by dots), not {value!r}"
    )


def check_flag(label: str, value: Any) -> bool:
    """A JSON boolean (``true``/``false``), not a string or a number."""
    if not isinstance(value, bool):
        raise ActivityFailed(f"{label} must be true or false, not {value!r}")
    return value


def check_number(
    label: str, value: Any, unit: str, *, minimum: float = 0.0, strict: bool = False,
    maximum: float | None = None, whole: bool = False,
) -> float:  # fmt: skip
    """A finite number (not a boolean) of ``unit``, at least (``strict``: above) ``minimum``,
    at most ``maximum``; with ``whole``, a whole number."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    kind = "a whole number" if whole else "a number"
    if not number or not math.isfinite(value) or (whole and value != int(value)):
        raise ActivityFailed(f"{label} must be {kind} of {unit}, not {value!r}")
    low = value > minimum if strict else value >= minimum
    if not low or (maximum is not None and value > maximum):
        bound = f"above {minimum:g}" if strict else f"at least {minimum:g}"
        if maximum is not None:
            bound += f" and at most {maximum:g}"
        raise ActivityFailed(f"{label} must be {kind} of {unit} {bound}, not {value!r}")
    return float(value)


def check_int(
    label: str, value: Any, unit: str, *, minimum: int = 0, maximum: int | None = None,
) -> int:  # fmt: skip
    """An integer (a JSON number without a fraction part: ``2``, not ``2.0`` nor ``true``) of
    ``unit``, from ``minimum`` to ``maximum``; for arguments whose activity needs a true int."""
    bound = f"from {minimum} to {maximum}" if maximum is not None else f"of {minimum} or more"
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):  # fmt: skip
        raise ActivityFailed(f"{label} must be a whole number of {unit} {bound} (written "
                             f"without a decimal point), not {value!r}")  # fmt: skip
    return value


def check_address(label: str, value: Any) -> str:
    """``host:port`` as lkchaos reads every address (:func:`lkchaos.settings.split_host_port`:
    an IPv6 host in brackets, ``[fd00::5]:8474``), returned as given."""
    from lkchaos.settings import AddressError, split_host_port

    if not isinstance(value, str):
        raise ActivityFailed(f"{label} must be host:port, not {value!r}")
    try:
        split_host_port(value, None)
    except AddressError as exc:
        raise ActivityFailed(f"{label} must be host:port, not {value!r}: {exc}") from exc
    return value
