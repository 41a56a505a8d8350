"""What lkchaos knows about the target beyond its target file: the reference stack's facts.

The reference stack writes them, as data, into its state folder (``deployment.json``, by
``lkchaos stack up``): its services' addresses on its network, the ports it publishes, each
LiveKit node's metrics URL, what listens where. The checks read them here, never the stack's
code, so that they run the same against a user's deployment, where there are none.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lkchaos.settings import Settings

FACTS_FILE = "deployment.json"
KIND = "lkchaos-reference-stack"


def reference(settings: Settings) -> dict[str, Any] | None:
    """The reference stack's facts when the target is that stack (its Compose project and
    published TLS address match the facts in the state folder), else None."""
    path = Path(settings.state_dir) / FACTS_FILE
    try:
        facts = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(facts, dict) or facts.get("kind") != KIND:
        return None
    if settings.runtime != "compose" or settings.compose_project != facts.get("compose_project"):
        return None
    if settings.tls_address != facts.get("tls_address"):
        return None
    return facts


def address(facts: dict[str, Any], service: str) -> str:
    """A reference stack service's address on its network; KeyError names the known ones."""
    addresses: dict[str, str] = facts.get("addresses") or {}
    if service not in addresses:
        raise KeyError(f"the reference stack has no service {service!r}: {sorted(addresses)}")
    return addresses[service]
