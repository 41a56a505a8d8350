"""lkchaos: chaos engineering for self-hosted LiveKit voice-agent deployments.

A Chaos Toolkit extension: probes and actions live in ``lkchaos.<target>.probes`` and
``lkchaos.<target>.actions``; ``discover`` lists them for ``chaos discover lkchaos``.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "discover"]


def discover(discover_system: bool = True) -> dict[str, object]:
    """Chaos Toolkit's discovery entry point: the extension's activities."""
    from lkchaos.discovery import discover as _discover

    return _discover(discover_system)
