"""The lkchaos checkout (when lkchaos runs from one) and the ``KEY=VALUE`` files it keeps.

The checkout is the folder holding ``docker-compose.chaos.yml`` (the reference stack):
``LKCHAOS_ROOT`` when set, else the current folder or one of its parents, else the checkout
lkchaos itself runs from (an editable install, as ``scripts/bootstrap.sh`` makes), so that a
run started from any other folder finds the same checkout, state folder and run lock. A
package installed from an index and used outside a checkout has none, and everything that
needs one (the reference stack, its target file) says so.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from lkchaos.errors import ConfigError

COMPOSE_FILE = "docker-compose.chaos.yml"


def package_checkout() -> Path | None:
    """The checkout lkchaos's own code is in (``src/lkchaos/checkout.py`` -> the folder
    holding ``src/``) when it holds the compose file, else None (an installed package)."""
    root = Path(__file__).resolve().parents[2]
    return root if (root / COMPOSE_FILE).is_file() else None


def find_root(start: Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The checkout's folder, or None: ``LKCHAOS_ROOT`` when it holds the compose file, else
    ``start`` (the current folder by default) or its nearest parent that holds it, else (with
    no ``start``) :func:`package_checkout`."""
    env = os.environ if environ is None else environ
    candidates = [Path(env["LKCHAOS_ROOT"])] if env.get("LKCHAOS_ROOT") else []
    here = (start or Path.cwd()).resolve()
    candidates += [here, *here.parents]
    if start is None:
        candidates += [root for root in [package_checkout()] if root is not None]
    for candidate in candidates:
        if (candidate / COMPOSE_FILE).is_file():
            return candidate
    return None


def require_root(start: Path | None = None) -> Path:
    """:func:`find_root`, or a ConfigError saying how to point lkchaos at its checkout."""
    root = find_root(start)
    if root is None:
        raise ConfigError(
            f"{COMPOSE_FILE} not found in this folder or its parents, nor where lkchaos is "
            "installed from: run lkchaos from the lkchaos checkout, or set LKCHAOS_ROOT to it"
        )
    return root


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (blank lines and ``#`` comments skipped); a ConfigError with the
    file and line for any other line."""
    values: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ConfigError(f"{path}:{number}: expected KEY=VALUE, got {line!r}")
        values[key.strip()] = value.strip()
    return values
